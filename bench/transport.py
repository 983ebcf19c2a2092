"""How a person's requests reach the app: signed HTTP requests, or Socket Mode envelopes.

Both answer with an ``Ack``: how long the app took to acknowledge, and the ack's JSON body (HTTP) or
payload (Socket Mode). The Socket Mode ack latency is measured at the fake server: from handing the
envelope to the WebSocket connection until the client's ack arrives, as Slack would see it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import requests

from bench.config import SIGNING_SECRET
from bench.fakes import TimedSocketMode
from tests.slack_requests import (
    SlackSender,
    build_payload_slash_command,
    build_payload_view_submission,
)


@dataclass
class Ack:
    elapsed: float  # seconds
    body: Any = None  # JSON body / ack payload; None if there was none
    error: str | None = None  # the request failed: no ack (or not HTTP 200)


class HttpTransport:
    def __init__(self, url: str, timeout: float) -> None:
        self.sender = SlackSender(url, SIGNING_SECRET, timeout=timeout)

    def command(
        self, user_id: str, *, response_url: str, trigger_id: str | None = None, text: str = ""
    ) -> Ack:
        return self._send(
            lambda: self.sender.slash_command(
                user_id, response_url=response_url, trigger_id=trigger_id, text=text
            )
        )

    def submission(self, view: dict[str, Any], *, user_id: str, values: dict[str, Any]) -> Ack:
        return self._send(lambda: self.sender.view_submission(view, user_id=user_id, values=values))

    @staticmethod
    def _send(request) -> Ack:
        started = time.perf_counter()
        try:
            result = request()
        except requests.RequestException as error:
            return Ack(time.perf_counter() - started, error=describe(error))
        if result.status != 200:
            return Ack(result.elapsed, error=f"HTTP {result.status}")
        return Ack(result.elapsed, result.json())


class SocketTransport:
    def __init__(self, server: TimedSocketMode, timeout: float) -> None:
        self.server = server
        self.timeout = timeout

    def command(
        self, user_id: str, *, response_url: str, trigger_id: str | None = None, text: str = ""
    ) -> Ack:
        payload = build_payload_slash_command(
            user_id, response_url=response_url, trigger_id=trigger_id, text=text
        )
        return self._send("slash_commands", payload)

    def submission(self, view: dict[str, Any], *, user_id: str, values: dict[str, Any]) -> Ack:
        return self._send("interactive", build_payload_view_submission(view, user_id=user_id, values=values))

    def _send(self, type_: str, payload: dict[str, Any]) -> Ack:
        started = time.monotonic()
        try:
            envelope_id = self.server.send_envelope_nowait(type_, payload, self.timeout)
            ack = self.server.wait_ack(envelope_id, self.timeout)
        except AssertionError:
            return Ack(time.monotonic() - started, error=f"no ack within {self.timeout:.0f}s")
        except Exception as error:  # the connection dropped mid-send
            return Ack(time.monotonic() - started, error=type(error).__name__)
        elapsed = self.server.acked_at[envelope_id] - self.server.sent_at[envelope_id]
        return Ack(elapsed, ack.get("payload") or {})


def describe(error: requests.RequestException) -> str:
    reason = re.search(r"(\[Errno \d+\] [^'\")]+|RemoteDisconnected|Read timed out|timed out)", str(error))
    return type(error).__name__ + (f" ({reason.group(1).strip()})" if reason else "")
