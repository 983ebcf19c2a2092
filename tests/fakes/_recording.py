"""What the secret-store fakes (Vault, GitHub, the AWS proxy) share: every request recorded as an
``HTTPCall``, scripted faults answered before the fake serves it, and a port kept across ``stop``/``start``.

Public API (on every subclass)::

    .url                 "http://127.0.0.1:PORT"  (the same port after .stop() and .start() again)
    .stop()              unreachable: connections are refused until .start()

  recording
    .calls(method=None, path_contains=None) -> list[HTTPCall]
        HTTPCall(method, path, query, headers, body, json, at, status, fault)
        ``status`` is filled once answered (None: dropped); ``fault`` names the scripted fault that
        answered it (None: served normally); ``at`` is time.monotonic() at arrival
    .wait_for(predicate=None, timeout=10, count=1) -> list[HTTPCall]   (AssertionError with a dump)
    .internal_errors     tracebacks of bugs inside the fake (answered 500); keep empty

  faults: each serves the next ``count`` matching requests (None: every one until .clear_faults());
  a request matches when its method is ``method`` (any if None), its path contains ``path_contains``
  and ``where(call)`` is true; the oldest matching fault wins
    .fail_next(count=1, status=500, *, body=None, headers=None, ...)   answer without doing anything
                                         (body: the fake's own error shape unless given)
    .drop_next(count=1, ...)             close the connection unanswered, without doing anything
    .apply_then_drop(count=1, *, hang=0.0, ...)   do the request for real, wait ``hang`` seconds (so the
                                         client's read timeout can fire first), then close unanswered:
                                         the client cannot know its write happened
    .delay_next(seconds, count=1, ...)   wait, then serve normally
    .clear_faults()
  Waits sleep on an event that .stop() sets, so stopping never waits for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes._server import LoopbackHandler, LoopbackHTTPFake, LoopbackHTTPServer, Reply

__all__ = ["HTTPCall", "RecordingHTTPFake", "json_reply"]

Matcher = Callable[["HTTPCall"], bool]


@dataclass
class HTTPCall:
    """One request a fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    json: Any
    at: float
    status: int | None = None
    fault: str | None = None


@dataclass
class _Fault:
    kind: str  # fail | drop | apply_then_drop | delay
    matches: Matcher
    remaining: int | None
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON answer; 204 and 304 carry no body at all."""
    body = b"" if status in (204, 304) or payload is None else json.dumps(payload).encode()
    return Reply(status, body, headers=dict(headers or {}))


class _AllVerbsHandler(LoopbackHandler):
    """Vault uses PUT, DELETE and its own LIST verb; GitHub PUT and DELETE; AWS only POST."""

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_LIST(self) -> None:
        self._handle()


class RecordingHTTPFake(LoopbackHTTPFake[HTTPCall]):
    """Subclasses implement ``_serve(call) -> Reply`` and ``_error_body(status)`` (their error JSON)."""

    _handler = _AllVerbsHandler

    def __init__(self) -> None:
        super().__init__()
        self._faults: list[_Fault] = []
        self._last_port = 0

    # ------------------------------------------------------------------ address

    def _listen(self) -> LoopbackHTTPServer:
        # Rebind the port of the previous start, so a client configured with .url finds the fake again
        # after an outage (http.server sets SO_REUSEADDR).
        server = LoopbackHTTPServer(("127.0.0.1", self._last_port), self._handler)
        server.fake = self
        self._last_port = int(server.server_address[1])
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ faults

    def _add_fault(
        self,
        kind: str,
        count: int | None,
        method: str | None,
        path_contains: str | None,
        where: Matcher | None,
        **details: Any,
    ) -> None:
        def matches(call: HTTPCall) -> bool:
            return (
                (method is None or call.method == method.upper())
                and (path_contains is None or path_contains in call.path)
                and (where is None or where(call))
            )

        with self._lock:
            self._faults.append(_Fault(kind, matches, count, **details))

    def fail_next(
        self,
        count: int | None = 1,
        status: int = 500,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        where: Matcher | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer ``status`` (with ``body``, default the fake's error shape) without doing the request."""
        payload = self._error_body(status) if body is None else body
        self._add_fault(
            "fail",
            count,
            method,
            path_contains,
            where,
            status=status,
            body=payload,
            headers=dict(headers or {}),
        )

    def drop_next(
        self,
        count: int | None = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        where: Matcher | None = None,
    ) -> None:
        """Close the connection without an answer and without doing the request."""
        self._add_fault("drop", count, method, path_contains, where)

    def apply_then_drop(
        self,
        count: int | None = 1,
        *,
        hang: float = 0.0,
        method: str | None = None,
        path_contains: str | None = None,
        where: Matcher | None = None,
    ) -> None:
        """Do the request for real, wait ``hang`` seconds, then close the connection unanswered."""
        self._add_fault("apply_then_drop", count, method, path_contains, where, seconds=hang)

    def delay_next(
        self,
        seconds: float,
        count: int | None = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        where: Matcher | None = None,
    ) -> None:
        """Wait ``seconds`` (or until .stop()), then serve normally."""
        self._add_fault("delay", count, method, path_contains, where, seconds=seconds)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, call: HTTPCall) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(call):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False means the fake is stopping and the request should be dropped."""
        return not (seconds > 0 and self._stopping.wait(seconds)) and not self._stopping.is_set()

    # ------------------------------------------------------------------ recording

    def calls(self, method: str | None = None, path_contains: str | None = None) -> list[HTTPCall]:
        """Recorded requests in arrival order, optionally filtered by HTTP method and path."""
        return self._calls_where(
            lambda c: (
                (method is None or c.method == method.upper())
                and (path_contains is None or path_contains in c.path)
            )
        )

    def wait_for(
        self, predicate: Matcher | None = None, timeout: float = 10, count: int = 1
    ) -> list[HTTPCall]:
        """Block until ``count`` requests match; return all matching requests."""
        return self._wait_for_calls(predicate, "path", timeout, count)

    def _timeout_report(self) -> str:
        dump = "\n".join(
            f"  {c.method} {c.path} -> {c.status} fault={c.fault} body={c.body[:200]!r}" for c in self.calls()
        )
        return f"Recorded requests:\n{dump or '  (none)'}"

    # ------------------------------------------------------------------ dispatch

    def _error_body(self, status: int) -> Any:
        raise NotImplementedError

    def _serve(self, call: HTTPCall) -> Reply:
        raise NotImplementedError

    def _dispatch(self, verb: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply | None:
        parts = urlsplit(raw_path)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        call = HTTPCall(
            method=verb,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            json=parsed,
            at=time.monotonic(),
        )
        self._record(call)
        reply = self._answer(call)
        with self._changed:
            call.status = None if reply is None else reply.status
            self._changed.notify_all()
        return reply

    def _answer(self, call: HTTPCall) -> Reply | None:
        fault = self._take_fault(call)
        if fault is None:
            return self._serve(call)
        call.fault = fault.kind
        if fault.kind == "fail":
            return json_reply(fault.status, fault.body, fault.headers)
        if fault.kind == "drop":
            return None
        if fault.kind == "delay":
            return self._serve(call) if self._sleep(fault.seconds) else None
        self._serve(call)  # apply_then_drop: the effect happens, the answer never arrives
        self._sleep(fault.seconds)
        return None
