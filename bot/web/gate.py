"""The gate in front of Bolt (HTTP mode): a request must prove it comes from Slack before anything parses it.

Until its v0 signature checks out, a request is a stranger's: it is answered from its headers alone where
possible (wrong path or method, no or oversized length, missing, malformed or stale signature headers), its
body is read only up to `MAX_BODY_BYTES` and under a deadline, and it leaves one short line in the log.
A signed body that Bolt could not parse is answered 400 here, so Bolt only ever sees well-formed requests;
`answer_unexpected_errors` makes Bolt itself answer anything left over without a traceback.

Slack always sends a Content-Length, so a chunked body is refused 411 rather than read. The body is read
under one total deadline where the server lets the gate reach the socket (gunicorn); the worker in
bot/web/worker.py makes that moot by handing over only requests that have fully arrived, and applies
`refusal_from_head` itself so that a stranger's body is never even buffered.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable], Iterable[bytes]]

SLACK_EVENTS_PATH = "/slack/events"

# Slack's payloads are small. The largest this bot can receive is a view_submission of the creation
# modal: the whole view comes back, with up to 100 project options (75 characters of text each) and, in
# its state, every option chosen. Measured URL-encoded: 52 KB with ASCII names, 186 KB when every
# name is made of 4-byte characters (each becomes 12 bytes). 256 KiB holds the worst case with room,
# and bounds what a stranger can make a worker hold in memory to 256 KiB per request thread.
MAX_BODY_BYTES = 256 * 1024
# The whole body must arrive within this long (where the server lets the gate see its socket, as gunicorn
# does; see bot/web/worker.py for the worker that never hands over a request before it has arrived).
BODY_READ_TIMEOUT = 5.0
# Slack's own limit for replays: a signature older or newer than this is refused.
SIGNATURE_MAX_AGE = 5 * 60

TIMESTAMP_SHAPE = re.compile(r"[0-9]{1,12}")
SIGNATURE_SHAPE = re.compile(r"v0=[0-9a-f]{64}")
LENGTH_SHAPE = re.compile(r"[0-9]{1,12}")

REASONS = {
    400: "400 Bad Request",
    401: "401 Unauthorized",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    408: "408 Request Timeout",
    411: "411 Length Required",
    413: "413 Content Too Large",
    431: "431 Request Header Fields Too Large",
}


class _Refusal(Exception):
    def __init__(self, status: int, why: str, *, signed: bool = False):
        super().__init__(why)
        self.status = status
        self.why = why
        # A signed request Slack sent that we cannot read is worth a warning; a stranger's is not.
        self.level = logging.WARNING if signed else logging.INFO


class SlackGate:
    """WSGI middleware: only a signed, bounded, parseable POST to `path` reaches `app`."""

    def __init__(
        self,
        app: WSGIApp,
        signing_secret: str,
        *,
        path: str,
        max_body_bytes: int = MAX_BODY_BYTES,
        read_timeout: float = BODY_READ_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ):
        self._app = app
        self._verifier = SignatureVerifier(signing_secret)
        self._path = path
        self._max_body_bytes = max_body_bytes
        self._read_timeout = read_timeout
        self._clock = clock

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        try:
            body = self._admit(environ)
        except _Refusal as refusal:
            return _refuse(environ, start_response, refusal)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        try:
            # Bolt's adapter answers only once the response is complete: nothing is sent if this raises.
            return self._app(environ, start_response)
        except Exception as error:  # Bolt's own code chokes on some shapes, even in its error handler
            log.warning("Could not handle a signed request: %s", _one_line_error(error))
            return _refuse(
                environ, start_response, _Refusal(400, "could not handle it", signed=True), log_it=False
            )

    def _admit(self, environ: dict[str, Any]) -> bytes:
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""
        signature = environ.get("HTTP_X_SLACK_SIGNATURE") or ""
        # Everything that can be judged from the headers is, before a byte of the body is read.
        refused = refusal_from_head(
            environ.get("REQUEST_METHOD") or "",
            environ.get("PATH_INFO") or "",
            timestamp,
            signature,
            now=self._clock(),
            path_expected=self._path,
        )
        if refused is not None:
            raise _Refusal(*refused)
        body = self._read_body(environ)
        try:
            text = body.decode("utf-8")  # Slack's bodies are UTF-8, and the verifier needs text
        except UnicodeDecodeError:
            raise _Refusal(400, "body not UTF-8") from None
        if not self._verifier.is_valid(text, timestamp, signature):
            raise _Refusal(401, "bad Slack signature")
        _check_parseable(text, environ)
        return body

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        if environ.get("HTTP_TRANSFER_ENCODING"):
            raise _Refusal(411, "chunked body (Slack sends a Content-Length)")
        declared = (environ.get("CONTENT_LENGTH") or "").strip()
        if not declared:
            raise _Refusal(411, "no Content-Length")
        if not LENGTH_SHAPE.fullmatch(declared):
            raise _Refusal(400, "malformed Content-Length")
        length = int(declared)
        if length > self._max_body_bytes:
            raise _Refusal(413, "body over the size cap")
        stream = environ.get("wsgi.input")
        if stream is None:
            raise _Refusal(400, "no body")
        deadline = time.monotonic() + self._read_timeout
        with _restoring_timeout(environ.get("gunicorn.socket")) as sock:
            try:
                body = _read_exactly(stream, length, sock, deadline)
            except OSError as error:  # the deadline passed, or the client went away
                raise _Refusal(408, "body not sent in time") from error
            except Exception as error:  # the server's own parse error
                raise _Refusal(400, "malformed body framing") from error
        if len(body) < length:
            raise _Refusal(400, "body shorter than Content-Length")
        return body


def refusal_from_head(
    method: str, path: str, timestamp: str, signature: str, *, now: float, path_expected: str
) -> tuple[int, str] | None:
    """The status and reason a request is refused with from its request line and signature headers alone,
    or None if its body is worth reading. Shared by the gate and the worker (which uses it to avoid
    buffering a stranger's body at all)."""
    if path != path_expected:
        return 404, "unknown path"
    if method != "POST":
        return 405, "not a POST"
    if not TIMESTAMP_SHAPE.fullmatch(timestamp) or not SIGNATURE_SHAPE.fullmatch(signature):
        return 401, "no Slack signature"
    if abs(now - int(timestamp)) > SIGNATURE_MAX_AGE:
        return 401, "stale Slack signature"
    return None


def _read_exactly(stream: Any, length: int, sock: socket.socket | None, deadline: float) -> bytes:
    """Read `length` bytes; on gunicorn's socket, all of them by `deadline` (one total deadline, so a
    client trickling a byte at a time cannot stretch it)."""
    parts: list[bytes] = []
    remaining = length
    while remaining > 0:
        if sock is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("body deadline passed")
            sock.settimeout(left)
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


@contextlib.contextmanager
def _restoring_timeout(sock: Any) -> Iterator[socket.socket | None]:
    """gunicorn's socket in the environ (None elsewhere), its timeout put back afterwards."""
    if not isinstance(sock, socket.socket):
        yield None
        return
    before = sock.gettimeout()
    try:
        yield sock
    finally:
        with contextlib.suppress(OSError):  # the socket is already closed
            sock.settimeout(before)


def _check_parseable(text: str, environ: dict[str, Any]) -> None:
    """Parse as Bolt will (its own code), so that a body it would choke on never reaches it."""
    try:
        headers = {"content-type": environ.get("CONTENT_TYPE") or ""}
        request = BoltRequest(body=text, headers=headers)
    except Exception as error:  # malformed JSON, a payload that is not an object...
        raise _Refusal(400, "unparseable signed body", signed=True) from error
    if not isinstance(request.body, dict):
        raise _Refusal(400, "signed body is not an object", signed=True)


def _refuse(
    environ: dict[str, Any], start_response: Callable, refusal: _Refusal, *, log_it: bool = True
) -> Iterable[bytes]:
    # One short line; nothing from the request but its method and (truncated) path, escaped by the log
    # record factory (bot.redaction). No body, no header values.
    if log_it:
        log.log(
            refusal.level,
            "Refused %s %s: %s (%d)",
            str(environ.get("REQUEST_METHOD", "?"))[:10],
            str(environ.get("PATH_INFO", ""))[:80],
            refusal.why,
            refusal.status,
        )
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    if refusal.status == 405:
        headers.append(("Allow", "POST"))
    body = REASONS[refusal.status].encode() + b"\n"
    headers.append(("Content-Length", str(len(body))))
    start_response(REASONS[refusal.status], headers)
    return [body]


def answer_unexpected_errors(app: App) -> None:
    """Whatever a signed request makes go wrong inside Bolt is answered without a 500 and logged as one
    line (the error's type and where it was raised), never as a traceback with the payload in it."""

    @app.error
    def on_error(
        error: Exception, request: BoltRequest, response: BoltResponse | None
    ) -> BoltResponse | None:
        body = request.body if isinstance(request.body, dict) else {}
        kind = str(body.get("type") or body.get("command") or "unknown")[:40]
        if isinstance(error, BoltUnhandledRequestError):
            log.info("No listener for a Slack request of type %s", kind)
            status = 404
        else:
            frames = traceback.extract_tb(error.__traceback__)
            where = f"{frames[-1].filename.rsplit('/', 2)[-1]}:{frames[-1].lineno}" if frames else "?"
            log.warning(
                "Could not handle a Slack request of type %s: %s at %s", kind, type(error).__name__, where
            )
            status = 400
        if response is None:  # the request was acknowledged already: nothing left to answer
            return None
        return BoltResponse(status=status, body="")

    logging.getLogger("slack_bolt.RequestVerification").addFilter(_short_signature_failures)


def _short_signature_failures(record: logging.LogRecord) -> bool:
    """Bolt's own check logs the whole body of a request it refuses; the gate makes that unreachable, and
    this keeps it to one line should it ever run (e.g. an app served without the gate)."""
    if record.getMessage().startswith("Invalid request signature"):
        record.msg, record.args = "Refused a request whose Slack signature did not verify", None
    return True


def _one_line_error(error: BaseException) -> str:
    """The error's type and the line that raised it: enough to find a bug, without the payload a
    traceback's message might quote."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return type(error).__name__
    last = frames[-1]
    return f"{type(error).__name__} at {'/'.join(last.filename.split('/')[-2:])}:{last.lineno}"
