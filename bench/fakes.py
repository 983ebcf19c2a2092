"""The shared test fakes, instrumented for the benchmark: when each Mixpanel call ran and which app process
made it, and when each Socket Mode envelope was sent and acked. Measured in the benchmark process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.mixpanel import FakeMixpanel, MixpanelCall, _Handler
from tests.fakes.socket_mode import FakeSocketModeServer
from tests.fakes.vault import FakeVault

_peer = threading.local()


@dataclass
class TimedCall:
    route: str | None
    started: float  # time.monotonic()
    ended: float | None = None
    pid: int | None = None  # the app process that made the call (None: not found)
    username: str | None = None  # creates: the username asked for


class _PeerHandler(_Handler):
    def _handle(self) -> None:
        _peer.port = self.client_address[1]
        super()._handle()


class TimedMixpanel(FakeMixpanel):
    """FakeMixpanel that also records each call's start, end and calling process (for ``attributed`` routes).

    ``pids`` returns the app's process ids; a call's caller is the one holding the client end of its socket.
    """

    _handler = _PeerHandler

    def __init__(self, *args: Any, attributed: tuple[str, ...] = ("me",), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timed: list[TimedCall] = []
        self.pids: Callable[[], list[int]] = list
        self._attributed = attributed

    def slow_everywhere(self, seconds: float) -> None:
        from bench.config import MIXPANEL_ROUTES

        self.latency = dict.fromkeys(MIXPANEL_ROUTES, seconds)

    def _record(self, call: MixpanelCall) -> None:
        timed = TimedCall(call.route, time.monotonic())
        if call.route == "create" and isinstance(call.json, dict):
            timed.username = str(call.json.get("username"))
        if call.route in self._attributed:
            timed.pid = process_holding_port(getattr(_peer, "port", 0), self.pids())
        _peer.timed = timed
        with self._lock:
            self.timed.append(timed)
        super()._record(call)

    def _dispatch(self, verb: str, raw_path: str, headers: Any, body: bytes) -> Any:
        _peer.timed = None
        try:
            return super()._dispatch(verb, raw_path, headers, body)
        finally:
            if _peer.timed is not None:
                _peer.timed.ended = time.monotonic()

    def create_for(self, username: str) -> TimedCall | None:
        with self._lock:
            return next((c for c in self.timed if c.route == "create" and c.username == username), None)

    def max_in_flight(self, route: str) -> dict[int | None, int]:
        """Per calling process: the most calls of `route` that were in flight at once."""
        with self._lock:
            calls = [c for c in self.timed if c.route == route]
        peaks: dict[int | None, int] = {}
        for pid in {c.pid for c in calls}:
            events = []
            for c in calls:
                if c.pid == pid:
                    events += [(c.started, 1), (c.ended if c.ended is not None else float("inf"), -1)]
            level = peak = 0
            for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
                level += step
                peak = max(peak, level)
            peaks[pid] = peak
        return peaks


def process_holding_port(port: int, pids: list[int]) -> int | None:
    """Which of `pids` owns the loopback TCP socket whose local port is `port` (via /proc)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                inode = fields[9]
                break
        if inode:
            break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if fd.readlink().as_posix() == target:
                    return pid
            except OSError:
                continue
    return None


class TimedSocketMode(FakeSocketModeServer):
    """FakeSocketModeServer that stamps when each envelope was handed to the connection and acked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent_at: dict[str, float] = {}
        self.acked_at: dict[str, float] = {}

    def _send(self, message: dict[str, Any], timeout: float) -> None:
        envelope_id = message.get("envelope_id")
        if isinstance(envelope_id, str):
            with self._lock:
                self.sent_at[envelope_id] = time.monotonic()
        super()._send(message, timeout)

    def _on_message(self, message: str | bytes, connection: int = 0) -> None:
        now = time.monotonic()
        try:
            envelope_id = json.loads(message).get("envelope_id")
        except (ValueError, AttributeError):
            envelope_id = None
        if isinstance(envelope_id, str):
            with self._lock:
                self.acked_at.setdefault(envelope_id, now)
        super()._on_message(message, connection)


class BenchVault(FakeVault):
    """The FakeVault of the --destination vault level, with a token that may write under the prefix."""

    def __init__(self) -> None:
        from bench.config import VAULT_MOUNT, VAULT_PREFIX

        super().__init__()
        self.mount_point, self.prefix = VAULT_MOUNT, VAULT_PREFIX
        capabilities = ["create", "read", "update"]
        self.token = self.add_token(
            policy={
                f"{VAULT_MOUNT}/data/{VAULT_PREFIX}*": capabilities,
                f"{VAULT_MOUNT}/metadata/{VAULT_PREFIX}*": capabilities,
            }
        )

    def token_for(self, secret_name: str) -> str | None:
        """The Mixpanel token stored under `secret_name` (None: nothing, or not a document of ours)."""
        stored = self.secret(self.mount_point, self.prefix + secret_name) or {}
        value = stored.get("secret")
        return value if isinstance(value, str) else None
