"""What the loopback fakes share: serving on 127.0.0.1 in a daemon thread, and waiting on what they record.

``LoopbackFake`` is the lifecycle (``start``/``stop``/context manager/``port``) and a deadline-bounded wait
on the fake's condition; ``LoopbackHTTPFake`` adds an ``http.server`` that hands every request to the
fake's ``_dispatch`` and a log of recorded calls that ``wait_for`` can block on.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

from requests.structures import CaseInsensitiveDict

__all__ = ["LoopbackFake", "LoopbackHTTPFake", "LoopbackHTTPServer", "LoopbackHandler", "Reply"]

CallT = TypeVar("CallT")


@dataclass
class Reply:
    """What a fake's ``_dispatch`` answers; it returns None instead to drop the connection unanswered."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # http.server listens with a backlog of 5: in a burst of 50 people the kernel drops SYNs, and the
    # client retries only after 1 s, a delay of the fake and not of the app under test.
    request_queue_size = 1024
    fake: LoopbackHTTPFake[Any]

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        # stop() waits until this loop notices the shutdown: poll often, so stopping a fake is quick.
        super().serve_forever(poll_interval)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out and hang up are expected in fault tests; keep stderr clean of those."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class LoopbackHandler(BaseHTTPRequestHandler):
    """Hands GET and POST to ``server.fake._dispatch``; a fake that serves more verbs adds ``do_<VERB>``."""

    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = CaseInsensitiveDict(dict(self.headers.items()))
        fake = self.server.fake
        try:
            reply = fake._dispatch(self.command, self.path, headers, body)
        except Exception:  # a bug in the fake or in a test's callable: answer 500 and keep it visible
            fake.internal_errors.append(traceback.format_exc())
            reply = Reply(500, b"fake internal error (see .internal_errors)", "text/plain; charset=utf-8")
        if reply is None:  # drop (or stopping): no status line at all
            self.close_connection = True
            return
        with contextlib.suppress(OSError):  # the client may have given up (timeout) meanwhile
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(reply.body)


class LoopbackFake:
    """A server on 127.0.0.1 (a free port) served by a daemon thread; a context manager.

    Subclasses say how to listen (``_listen``: an object with ``serve_forever()`` and ``shutdown()``),
    where it is bound (``_bound_port``) and, if more than ``shutdown()``, how to close it (``_close``).
    Notify ``_changed`` whenever something is recorded, so ``_wait_until`` wakes up at once.
    """

    _thread_name: str | None = None  # default: the class name

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()  # set by stop(), so requests sleeping in a fault wake up
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _listen(self) -> Any:
        raise NotImplementedError

    def _bound_port(self, server: Any) -> int:
        raise NotImplementedError

    def _close(self, server: Any) -> None:
        server.shutdown()

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread (a started fake stays as it is)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = self._listen()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=self._thread_name or type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes requests sleeping in an injected delay or hang, which are then dropped."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            self._close(server)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._bound_port(self._server)

    def _wait_until(self, ready: Callable[[], Any], timeout: float) -> bool:
        """Hold ``_changed`` until ``ready()`` is truthy (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
            return True


class LoopbackHTTPFake(LoopbackFake, Generic[CallT]):
    """A ``LoopbackFake`` over ``http.server`` whose ``_dispatch`` answers and records every request.

    Subclasses implement ``_dispatch`` (``_record`` each call as it arrives) and ``_timeout_report`` (what
    ``wait_for``'s AssertionError shows), and may set ``_handler`` to serve more verbs.
    """

    _handler: type[LoopbackHandler] = LoopbackHandler

    def __init__(self) -> None:
        super().__init__()
        self._calls: list[CallT] = []
        self.internal_errors: list[str] = []  # tracebacks of bugs in the fake or a test's callable

    def _listen(self) -> LoopbackHTTPServer:
        server = LoopbackHTTPServer(("127.0.0.1", 0), self._handler)
        server.fake = self
        return server

    def _bound_port(self, server: LoopbackHTTPServer) -> int:
        return int(server.server_address[1])

    def _close(self, server: LoopbackHTTPServer) -> None:
        server.shutdown()
        server.server_close()

    def _dispatch(self, verb: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply | None:
        raise NotImplementedError

    def _timeout_report(self) -> str:
        raise NotImplementedError

    def _record(self, call: CallT) -> None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    def _calls_where(self, match: Callable[[CallT], bool]) -> list[CallT]:
        with self._lock:
            return [c for c in self._calls if match(c)]

    def _wait_for_calls(
        self, wanted: str | Callable[[CallT], bool] | None, attribute: str, timeout: float, count: int
    ) -> list[CallT]:
        """Block until ``count`` calls match; return all of them. A str ``wanted`` names ``attribute``."""
        if isinstance(wanted, str):
            name = wanted

            def match(c: CallT) -> bool:
                return getattr(c, attribute) == name
        elif wanted is None:

            def match(c: CallT) -> bool:
                return True
        else:
            match = wanted
        found: list[CallT] = []

        def enough() -> bool:
            nonlocal found
            found = [c for c in self._calls if match(c)]
            return len(found) >= count

        if self._wait_until(enough, timeout):
            return found
        raise AssertionError(
            f"{type(self).__name__}.wait_for({wanted!r}, count={count}) timed out after {timeout}s: "
            f"{len(found)} matching.\n{self._timeout_report()}"
        )
