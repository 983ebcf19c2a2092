"""Loopback fake of Slack's Socket Mode WebSocket endpoint, for driving a real Bolt ``SocketModeHandler``.

slack_sdk's builtin client connects without TLS when the port is not 443, so a plain ``ws://`` URL works:
give ``.url`` to ``FakeSlack.socket_mode_url`` (what ``apps.connections.open`` returns).

Public API::

    FakeSocketModeServer(ticket="abc", app_id="A1", send_hello=True, ping_interval=0.2)
        .start() -> FakeSocketModeServer / .stop() / context manager
        .url                "ws://127.0.0.1:PORT/link?ticket=abc"
        .wait_for_connection(timeout=5, count=1) -> None   at least `count` live connections
                                                        (AssertionError on timeout)
        .connection_count   live client connections
        .send_envelope(type_, payload, timeout=5, *, retry_attempt=0, retry_reason="",
                       accepts_response_payload=None) -> dict
            type_: "slash_commands" | "interactive" | "events_api"; waits for a client, sends the envelope
            to one live connection (round-robin in the order they opened, as Slack spreads envelopes over
            an app's connections; with one connection, always that one) and returns the client's ack
            ({"envelope_id", maybe "payload"}).
            accepts_response_payload defaults to True, except False for "events_api" (as Slack does).
        .send_envelope_nowait(...same...) -> str       the envelope_id; pair with .wait_ack(...)
        .wait_ack(envelope_id, timeout=5) -> dict      (AssertionError on timeout: e.g. Bolt sends no ack
                                                        when no listener matched)
        .acked_on(envelope_id) -> int | None           which connection acked it: 1 for the first
                                                        handshake, 2 for the second… (None: no ack yet)
        .send_disconnect(reason="refresh_requested")   ask clients to reconnect, like Slack does
        .received -> list[dict]                        every JSON message clients sent, in order
        .request_paths -> list[str]                    the path+query of every WebSocket handshake

Each connection first gets ``{"type": "hello", "num_connections": 1, "debug_info": {...},
"connection_info": {"app_id": ...}}``. Pings are answered by the websockets library.

Why the server pings every 0.2 s: slack_sdk's builtin client holds its receive lock across a blocking
``recv`` with a 3 s socket timeout, and ``close()``/reconnects need that lock; any incoming frame frees it,
so frequent pings turn a 3 s ``SocketModeHandler.close()`` into a ~0.2 s one.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakes._server import LoopbackFake

__all__ = ["FakeSocketModeServer"]


class FakeSocketModeServer(LoopbackFake):
    """A WebSocket server speaking just enough of Slack's Socket Mode protocol; thread-safe."""

    _thread_name = "FakeSocketMode"

    def __init__(
        self,
        ticket: str = "abc",
        app_id: str = "A1",
        send_hello: bool = True,
        ping_interval: float | None = 0.2,
    ) -> None:
        super().__init__()
        self.ticket = ticket
        self.ping_interval = ping_interval
        self.app_id = app_id
        self.send_hello = send_hello
        self.received: list[dict[str, Any]] = []
        self.request_paths: list[str] = []
        self._send_lock = threading.Lock()
        self._connections: list[ServerConnection] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self._acked_on: dict[str, int] = {}
        self._serials: dict[ServerConnection, int] = {}
        self._next_target = 0

    # ------------------------------------------------------------------ serving (start/stop: LoopbackFake)

    def _listen(self) -> Server:
        # The builtin client never answers a close frame, so keep the closing handshake short.
        return serve(
            self._handle,
            "127.0.0.1",
            0,
            ping_interval=self.ping_interval,
            ping_timeout=10,
            close_timeout=0.5,
            compression=None,
            max_size=None,
        )

    def _bound_port(self, server: Server) -> int:
        return int(server.socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link?ticket={self.ticket}"

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._live())

    # ------------------------------------------------------------------ connection handling

    def _live(self) -> list[ServerConnection]:
        return [c for c in self._connections if c.protocol.state is State.OPEN]

    def _handle(self, ws: ServerConnection) -> None:
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        try:
            if self.send_hello:
                ws.send(json.dumps(hello))
            with self._changed:
                self.request_paths.append(ws.request.path if ws.request else "")
                self._connections.append(ws)
                self._serials[ws] = len(self.request_paths)
                self._changed.notify_all()
            for message in ws:
                self._on_message(message, self._serials[ws])
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                if ws in self._connections:
                    self._connections.remove(ws)
                self._changed.notify_all()

    def _on_message(self, message: str | bytes, connection: int = 0) -> None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        try:
            data = json.loads(text)
        except ValueError:
            data = {"_raw": text}
        if not isinstance(data, dict):
            data = {"_raw": data}
        with self._changed:
            self.received.append(data)
            envelope_id = data.get("envelope_id")
            if isinstance(envelope_id, str):
                self._acks[envelope_id] = data
                self._acked_on.setdefault(envelope_id, connection)
            self._changed.notify_all()

    def wait_for_connection(self, timeout: float = 5, count: int = 1) -> None:
        """Block until at least `count` clients are connected."""
        if self._wait_until(lambda: len(self._live()) >= count, timeout):
            return
        raise AssertionError(f"fewer than {count} Socket Mode connection(s) within {timeout}s")

    # ------------------------------------------------------------------ sending

    def _send(self, message: dict[str, Any], timeout: float) -> None:
        self.wait_for_connection(timeout)
        with self._lock:
            live = self._live()
            target = live[self._next_target % len(live)]
            self._next_target += 1
        with self._send_lock:
            target.send(json.dumps(message))

    def send_envelope_nowait(
        self,
        type_: str,
        payload: dict[str, Any],
        timeout: float = 5,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        accepts_response_payload: bool | None = None,
    ) -> str:
        """Send one envelope to the next live connection; return its envelope_id."""
        envelope_id = str(uuid.uuid4())
        if accepts_response_payload is None:
            accepts_response_payload = type_ != "events_api"
        envelope = {
            "envelope_id": envelope_id,
            "type": type_,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        self._send(envelope, timeout)
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 5) -> dict[str, Any]:
        """The client's ack for ``envelope_id``."""
        with self._changed:
            if self._wait_until(lambda: envelope_id in self._acks, timeout):
                return self._acks[envelope_id]
            received = list(self.received)
        raise AssertionError(
            f"no ack for envelope {envelope_id} within {timeout:.1f}s; messages received: "
            f"{json.dumps(received, default=str)[:2000]}"
        )

    def acked_on(self, envelope_id: str) -> int | None:
        with self._lock:
            return self._acked_on.get(envelope_id)

    def send_envelope(
        self,
        type_: str,
        payload: dict[str, Any],
        timeout: float = 5,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        accepts_response_payload: bool | None = None,
    ) -> dict[str, Any]:
        """Send an envelope like Slack does and return the client's ack message."""
        start = time.monotonic()
        envelope_id = self.send_envelope_nowait(
            type_,
            payload,
            timeout,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
            accepts_response_payload=accepts_response_payload,
        )
        return self.wait_ack(envelope_id, max(0.0, timeout - (time.monotonic() - start)))

    def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Tell every connected client to reconnect (Slack's ``disconnect`` message)."""
        message = json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}})
        with self._lock:
            targets = self._live()
        with self._send_lock:
            for ws in targets:
                try:
                    ws.send(message)
                except ConnectionClosed:
                    continue
