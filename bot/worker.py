"""gunicorn's threaded worker, changed so that slow or stalled clients cannot occupy its request threads.

The stock gthread worker reads a request's head and body on a request thread, from a blocking socket with
no deadline: a client that sends half its headers (or its headers and no body) and stops holds a thread
until it gives up, and a connection that sends nothing holds one for 5 s. A few dozen such connections,
cheap to open, leave Slack's real requests queued behind them.

This worker reads each request on the worker's poller instead (non-blocking, alongside every other
connection) and hands the connection to a request thread only once the whole request has arrived: the head,
and the body up to `bot.gate.MAX_BODY_BYTES` (a bigger body is refused from its Content-Length). A request
that has not fully arrived `REQUEST_ARRIVAL_TIMEOUT` seconds after its first byte was awaited is dropped.
A stalled connection then costs a socket and a buffer, never a thread.

It relies on gunicorn's ThreadWorker internals (pinned in requirements.txt); tests/test_stalled_clients.py
runs it as deployed.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import time
from collections import deque
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

from bot.gate import MAX_BODY_BYTES

# Slack sends a request in one go; this is for the slowest honest network path, not for Slack's speed.
REQUEST_ARRIVAL_TIMEOUT = 10.0
# gunicorn refuses longer heads itself (limit_request_line/fields); past this, stop buffering and let it.
MAX_HEAD_BYTES = 32 * 1024
# How long a request thread may wait for the unread rest of a refused body before closing instead.
DRAIN_TIMEOUT = 0.05
RECV_SIZE = 64 * 1024

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,12})[ \t]*(?=\r\n|$)")
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked")
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def request_complete(data: bytes | bytearray, max_body: int = MAX_BODY_BYTES) -> bool:
    """Whether `data` holds a whole request head and all the body a request thread will need to read."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return len(data) > MAX_HEAD_BYTES
    head = bytes(data[:head_end]).lower()
    body = len(data) - head_end - 4
    if _CHUNKED.search(head):
        return body > max_body or data.endswith(b"0\r\n\r\n")
    declared = _CONTENT_LENGTH.search(head)
    if declared is None:
        return True
    return int(declared.group(1)) > max_body or body >= int(declared.group(1))


class BufferingThreadWorker(ThreadWorker):
    """A request thread only ever serves a request that has fully arrived."""

    def init_process(self) -> None:
        self._arriving: deque = deque()  # connections still sending their request, oldest first
        super().init_process()

    def enqueue_req(self, conn) -> None:
        if getattr(conn, "request_arrived", False) or self.cfg.is_ssl:
            conn.request_arrived = False
            super().enqueue_req(conn)
            return
        if conn.parser is not None and conn.parser.unreader.buf.getvalue():
            super().enqueue_req(conn)  # a pipelined request already read ahead: gunicorn's own path
            return
        conn.sock.setblocking(False)
        conn.arriving = bytearray()
        conn.continued = False
        conn.arrival_deadline = time.monotonic() + REQUEST_ARRIVAL_TIMEOUT
        self._arriving.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_arriving_readable, conn))

    def _on_arriving_readable(self, conn, _client) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away before finishing its request
            self._drop(conn)
            return
        conn.arriving += data
        if not request_complete(conn.arriving):
            self._continue_if_expected(conn)
            return
        self.poller.unregister(conn.sock)
        self._arriving.remove(conn)
        conn.sock.setblocking(True)
        conn.init()  # HTTP/1.1 parser only: no TLS or HTTP/2 in this deployment (see bot/http.py)
        conn.parser.unreader.unread(bytes(conn.arriving))
        conn.arriving = None
        conn.data_ready = True
        conn.request_arrived = True
        super().enqueue_req(conn)

    def _continue_if_expected(self, conn) -> None:
        """A client that sent `Expect: 100-continue` waits for this before its body (curl, for a second)."""
        if getattr(conn, "continued", False):
            return
        head_end = conn.arriving.find(b"\r\n\r\n")
        if head_end >= 0 and _EXPECT_CONTINUE.search(bytes(conn.arriving[:head_end]).lower()):
            conn.continued = True
            with contextlib.suppress(
                OSError
            ):  # a few bytes into an empty send buffer; if not, the client waits
                conn.sock.send(CONTINUE)

    def _drop(self, conn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(ValueError):
            self._arriving.remove(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self._arriving and (not self.alive or self._arriving[0].arrival_deadline <= now):
            self._drop(self._arriving[0])

    def _keepalive_after(self, conn, keepalive: bool) -> bool:
        # A refused request's body may be unread: drain what has arrived, never wait for a stalled client.
        if not keepalive:
            return False
        return bool(conn.parser.finish_body(deadline=time.monotonic() + DRAIN_TIMEOUT))
