"""gunicorn's threaded worker, changed so that slow, stalled or unsigned clients cannot occupy its threads.

The stock gthread worker reads a request's head and body on a request thread, from a blocking socket with
no deadline: a client that sends half its headers (or its headers and no body) and stops holds a thread.

This worker reads every request on the worker's poller instead (non-blocking, alongside every other
connection), including the bytes a client pipelined behind its previous request, and hands the connection
to a request thread only once the whole request is in memory. From the head alone, on the poller, it
answers and closes: a head over `MAX_HEAD_BYTES` (431), a chunked body (411: Slack sends a Content-Length),
an ambiguous length (400), and a body that the gate would refuse unread (`bot.web.gate.refusal_from_head`:
wrong path or method, missing, malformed or stale signature headers) or that is over the cap (413). So
only a request bearing a fresh, well-formed signature header has its body buffered at all.

Limits, per worker process: a request must arrive within `REQUEST_ARRIVAL_TIMEOUT` of being awaited;
arriving requests hold at most `ARRIVING_BUDGET` bytes in all; at most `cfg.worker_connections` connections
(raised in bot/web/server.py, and capped by the open-file limit). Past the budget or the connection limit, the
connection that has been arriving longest is dropped, never the newcomer. Request threads also get a
socket timeout for writing their answer.

It relies on gunicorn's ThreadWorker internals: `require_supported_gunicorn` refuses to start on any other
gunicorn than the one it was written against. tests/test_stalled_clients.py runs it as deployed.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from urllib.parse import unquote

import gunicorn
from gunicorn.workers.gthread import ThreadWorker

from bot.web.gate import MAX_BODY_BYTES, REASONS, SLACK_EVENTS_PATH, refusal_from_head

log = logging.getLogger(__name__)

# The gunicorn whose ThreadWorker internals (enqueue_req, finish_request, TConn, the parser's unreader) this
# worker overrides; any other version may have changed them.
GUNICORN_VERSION = (27, 0, 1)
# Slack sends a request in one go; this is for the slowest honest network path, not for Slack's speed.
REQUEST_ARRIVAL_TIMEOUT = 10.0
# Slack's heads are about 1 KiB; gunicorn's own limits (limit_request_line/fields) are looser.
MAX_HEAD_BYTES = 32 * 1024
# Bytes of not-yet-complete requests one worker process holds, in all: 128 maximal bodies.
ARRIVING_BUDGET = 32 * 1024 * 1024
# Connections per worker process; the open-file limit is raised to fit, or this lowered to fit it.
WORKER_CONNECTIONS = 10_000
# After a refusal from the head, how long to read and discard what the client still sends (so that closing
# does not reset the connection before it has read the answer).
LINGER_TIMEOUT = 2.0
# A request thread's socket timeout while it writes the answer (and drains a refused body).
THREAD_SOCKET_TIMEOUT = 10.0
# How long a request thread may wait for the unread rest of a refused body before closing instead.
DRAIN_TIMEOUT = 0.05
RECV_SIZE = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class UnsupportedGunicorn(RuntimeError):
    pass


def require_supported_gunicorn(version: tuple = tuple(gunicorn.version_info)) -> None:
    """Refuse to serve on a gunicorn this worker was not written against: it would silently lose the
    guarantee that slow clients hold no thread (or break), so a changed pin must come with a reviewed
    worker."""
    if tuple(version[:3]) != GUNICORN_VERSION:
        raise UnsupportedGunicorn(
            f"bot/web/worker.py was written against gunicorn {'.'.join(map(str, GUNICORN_VERSION))}, but "
            f"{'.'.join(map(str, version))} is installed: install the version pinned in requirements.txt, "
            "or review the worker against the new gunicorn and update GUNICORN_VERSION"
        )


@dataclass(frozen=True)
class Arrival:
    """What the head (and how much of the body) received so far means for a connection."""

    complete: bool = False
    refusal: tuple[int, str] | None = None  # answer this and close, from the poller
    continue_expected: bool = False  # the client waits for `100 Continue` before its body


WAITING = Arrival()
COMPLETE = Arrival(complete=True)


def judge_arrival(
    data: bytes | bytearray, *, now: float, max_body: int = MAX_BODY_BYTES, path: str = SLACK_EVENTS_PATH
) -> Arrival:
    """Whether `data` holds a whole request, should be refused from its head, or is still arriving.

    "Complete" must never be said of a request gunicorn's parser would need more bytes for: that would
    block a thread. So any head this cannot read unambiguously is refused, and anything it can is handed
    over only with all of its Content-Length present.
    """
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0 or head_end > MAX_HEAD_BYTES:
        return Arrival(refusal=(431, "head too large")) if len(data) > MAX_HEAD_BYTES else WAITING
    lines = bytes(data[:head_end]).split(b"\r\n")
    request_line = lines[0].split(b" ")
    fields: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.lower(), []).append(value.strip(b" \t"))
    if b"transfer-encoding" in fields:
        return Arrival(refusal=(411, "chunked body (Slack sends a Content-Length)"))
    lengths = fields.get(b"content-length", [])
    if len(lengths) > 1 or (lengths and not lengths[0].isdigit()) or len(request_line) != 3:
        # gunicorn refuses these itself, but only on a thread; no body follows that anyone would read.
        return Arrival(refusal=(400, "malformed request head"))
    length = int(lengths[0]) if lengths else 0
    if length == 0:
        return COMPLETE  # nothing to wait for: the gate answers from the head
    method, target = request_line[0].decode("latin-1"), request_line[1].decode("latin-1")
    refused = refusal_from_head(
        method,
        unquote(target.split("?", 1)[0]),
        _field(fields, b"x-slack-request-timestamp"),
        _field(fields, b"x-slack-signature"),
        now=now,
        path_expected=path,
    )
    if refused is not None:
        return Arrival(refusal=refused)
    if length > max_body:
        return Arrival(refusal=(413, "body over the size cap"))
    if len(data) - head_end - 4 >= length:
        return COMPLETE
    expects = [value.lower() for value in fields.get(b"expect", [])]
    return Arrival(continue_expected=b"100-continue" in expects)


def _field(fields: dict[bytes, list[bytes]], name: bytes) -> str:
    values = fields.get(name, [])
    return values[0].decode("latin-1") if len(values) == 1 else ""


def refusal_answer(status: int) -> bytes:
    reason = REASONS[status].encode()
    body = reason + b"\n"
    return (
        b"HTTP/1.1 " + reason + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )


class BufferingThreadWorker(ThreadWorker):
    """A request thread only ever serves a request that has fully arrived."""

    def init_process(self) -> None:
        self.init_arrivals()
        self._fit_connections_to_file_limit()
        super().init_process()

    def init_arrivals(self) -> None:
        self._arriving: deque = deque()  # connections still sending their request, oldest first
        self._lingering: deque = deque()  # refused connections, read and discarded until closed
        self._buffered = 0  # bytes held in all arriving buffers

    def _fit_connections_to_file_limit(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.worker_connections + 256  # listeners, database, Slack and Mixpanel clients, logs
        if soft != resource.RLIM_INFINITY and soft < wanted:
            raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and soft < wanted:
            self.worker_connections = max(soft - 256, self.cfg.threads + 1)
            self.max_keepalived = self.worker_connections - self.cfg.threads
            self.log.warning(
                "Open-file limit %d allows only %d connections per worker (raise it: ulimit -n)",
                soft,
                self.worker_connections,
            )

    def accept(self, listener) -> None:
        super().accept(listener)
        # Full: make room by dropping the connection that has been idle or arriving longest, so that a
        # flood of silent connections cannot stop this worker from accepting Slack's.
        while self.nr_conns >= self.worker_connections:
            if self._lingering:
                self._drop(self._lingering[0])
            elif len(self._arriving) > 1:
                self._drop(self._arriving[0])
            elif self.keepalived_conns:
                self._close_oldest_keepalived()
            else:
                break

    def _close_oldest_keepalived(self) -> None:
        conn = self.keepalived_conns.popleft()
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def enqueue_req(self, conn) -> None:
        if self.cfg.is_ssl:  # not in this deployment (TLS ends at the platform's router)
            super().enqueue_req(conn)
            return
        conn.sock.setblocking(False)
        # Bytes the client pipelined behind its previous request go through the same path as fresh ones.
        read_ahead = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.arriving = bytearray(read_ahead)
        conn.continued = False
        conn.deadline = time.monotonic() + REQUEST_ARRIVAL_TIMEOUT
        self._buffered += len(read_ahead)
        self._arriving.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_arriving_readable, conn))
        if read_ahead:
            self._judge(conn)

    def _on_arriving_readable(self, conn, _client) -> None:
        data = _receive(conn.sock)
        if data is None:
            return
        if not data:  # the client went away before finishing its request
            self._drop(conn)
            return
        conn.arriving += data
        self._buffered += len(data)
        if self._judge(conn):
            self._keep_within_budget()

    def _judge(self, conn) -> bool:
        """Act on what has arrived; True if the connection is still arriving."""
        arrival = judge_arrival(conn.arriving, now=time.time())
        if arrival.refusal is not None:
            self._refuse(conn, *arrival.refusal)
            return False
        if not arrival.complete:
            if arrival.continue_expected and not conn.continued:
                conn.continued = True
                with contextlib.suppress(OSError):  # a few bytes into an empty send buffer
                    conn.sock.send(CONTINUE)
            return True
        self._leave_arriving(conn)
        self.poller.unregister(conn.sock)
        conn.sock.setblocking(True)
        conn.init()  # HTTP/1.1 parser only: no TLS or HTTP/2 in this deployment (see bot/web/server.py)
        conn.parser.unreader.unread(bytes(conn.arriving))
        conn.arriving = None
        conn.data_ready = True
        super().enqueue_req(conn)
        return False

    def _refuse(self, conn, status: int, why: str) -> None:
        log.info("Refused a request from its head: %s (%d)", why, status)
        self._leave_arriving(conn)
        conn.arriving = None
        with contextlib.suppress(OSError):
            conn.sock.send(refusal_answer(status))
            conn.sock.shutdown(socket.SHUT_WR)
        conn.deadline = time.monotonic() + LINGER_TIMEOUT
        self._lingering.append(conn)
        self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._on_lingering_readable, conn))

    def _on_lingering_readable(self, conn, _client) -> None:
        if _receive(conn.sock) == b"":
            self._drop(conn)

    def _leave_arriving(self, conn) -> None:
        self._buffered -= len(conn.arriving)
        self._arriving.remove(conn)

    def _keep_within_budget(self) -> None:
        while self._buffered > ARRIVING_BUDGET:
            # The oldest connection holding bytes: dropping a silent one would free nothing.
            self._drop(next(conn for conn in self._arriving if conn.arriving))

    def _drop(self, conn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        if conn.arriving is not None and conn in self._arriving:
            self._leave_arriving(conn)
        with contextlib.suppress(ValueError):
            self._lingering.remove(conn)
        conn.arriving = None
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for waiting in (self._arriving, self._lingering):
            while waiting and (not self.alive or waiting[0].deadline <= now):
                self._drop(waiting[0])

    def handle_request(self, req, conn):
        # The request is in memory; what is left is writing the answer, to a client that may not read it.
        conn.sock.settimeout(THREAD_SOCKET_TIMEOUT)
        # The body is here already: gunicorn must not send a (second) `100 Continue` for it.
        req._expected_100_continue = False
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn, keepalive: bool) -> bool:
        # A refused request's body may be unread: drain what has arrived, never wait for a stalled client.
        if not keepalive:
            return False
        return bool(conn.parser.finish_body(deadline=time.monotonic() + DRAIN_TIMEOUT))


def _receive(sock: socket.socket) -> bytes | None:
    """What a readable non-blocking socket holds: b"" once the peer is gone (or the socket failed), None
    when there was nothing to read after all."""
    try:
        return sock.recv(RECV_SIZE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
