"""Issue 10 against real gunicorn, started as the README says: stalled and oversized requests cannot keep a
real Slack request from its answer."""

from __future__ import annotations

import contextlib
import socket
import time
from urllib.parse import urlencode

import pytest

from bot.gate import MAX_BODY_BYTES
from bot.worker import MAX_HEAD_BYTES, request_complete
from tests.conftest import ALICE, SIGNING_SECRET
from tests.slack_requests import SlackSender, build_payload_slash_command, sign_request
from tests.test_processes import BotProcess, free_port, process_env, wait_healthy  # noqa: F401

SLACK_DEADLINE = 3.0
STALLED = 150


@pytest.fixture
def gunicorn_bot(process_env, tmp_path):  # noqa: F811
    port = free_port()
    # Fewer request threads than stalled connections: a stalled connection that held one would show.
    env = {**process_env, "PORT": str(port), "WEB_CONCURRENCY": "1", "HTTP_THREADS": "4", "LOG_LEVEL": "INFO"}
    bot = BotProcess(env, tmp_path, "--mode", "http")
    try:
        wait_healthy(f"http://127.0.0.1:{port}", bot)
        yield bot, port
    finally:
        bot.terminate()
        bot.kill()


def signed_head(path: str, length: int) -> bytes:
    timestamp = str(int(time.time()))
    signature = sign_request(SIGNING_SECRET, timestamp, b"")  # right shape; the body it signs never comes
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"X-Slack-Request-Timestamp: {timestamp}\r\nX-Slack-Signature: {signature}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_150_stalled_connections_do_not_delay_a_real_slack_request(gunicorn_bot, slack):
    bot, port = gunicorn_bot
    stalled: list[socket.socket] = []
    try:
        for number in range(STALLED):
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            stalled.append(conn)
            kind = number % 3
            if kind == 1:  # stops in the middle of its headers
                conn.sendall(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slack-Req")
            elif kind == 2:  # sends its headers, then no body
                conn.sendall(signed_head("/slack/events", 2000))
            # kind 0 connects and sends nothing
        sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, timeout=30)

        answer = sender.slash_command(ALICE, text="help", response_url=slack.new_response_url())

        print(f"\nsigned command answered in {answer.elapsed * 1000:.0f} ms behind {STALLED} stalled clients")
        assert answer.status == 200 and "/mp-service-account" in answer.text
        assert answer.elapsed < SLACK_DEADLINE
    finally:
        for conn in stalled:
            conn.close()
    assert "Traceback" not in bot.logs()


def test_an_oversized_or_unsigned_body_is_refused_from_its_headers(gunicorn_bot):
    bot, port = gunicorn_bot
    huge = 25 * 1024 * 1024
    unsigned = f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {huge}\r\n\r\n".encode()
    for head, status in ((signed_head("/slack/events", huge), 413), (unsigned, 401)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(head + b"x" * 1000)  # none of the 25 MB follows: the answer must not wait for it
            answer = _read_answer(conn)
        assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:100]
    assert huge > MAX_BODY_BYTES
    logs = bot.logs()
    assert "Traceback" not in logs and "xxxxxxxx" not in logs


def _read_answer(conn: socket.socket) -> bytes:
    answer = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_client_expecting_100_continue_gets_it_before_sending_its_body(gunicorn_bot):
    _, port = gunicorn_bot
    body = urlencode(build_payload_slash_command(ALICE, text="help", response_url="https://x.invalid/"))
    timestamp = str(int(time.time()))
    head = (
        "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Slack-Request-Timestamp: {timestamp}\r\n"
        f"X-Slack-Signature: {sign_request(SIGNING_SECRET, timestamp, body)}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head.encode())
        assert _read_answer(conn).startswith(b"HTTP/1.1 100 Continue")
        conn.sendall(body.encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert b"HTTP/1.1 200" in answer and b"/mp-service-account" in answer


@pytest.mark.parametrize(
    "data, complete",
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nX-Sl", False),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", False),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", True),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (f"POST / HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(), True),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1), True),
    ],
    ids=[
        "mid-head",
        "short-body",
        "whole",
        "no-body",
        "over-cap",
        "chunked-open",
        "chunked-done",
        "huge-head",
    ],
)
def test_a_connection_reaches_a_thread_once_its_request_has_arrived(data, complete):
    assert request_complete(data) is complete
