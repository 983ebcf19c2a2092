"""Issue 10, part 1: before a request is known to come from Slack, it costs almost nothing, and no request
of any shape gets a 5xx or leaves a traceback or a forged line in the log."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading
import time
from urllib.parse import urlparse

import pytest
import requests

from bot.web.gate import MAX_BODY_BYTES, SlackGate
from tests.conftest import ALICE, SIGNING_SECRET
from tests.slack_requests import build_payload_slash_command, sign_request

HANDLER_METHODS = ("views.open", "users.info", "response_url", "chat.postEphemeral", "views.update")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def no_handler_ran(bot) -> bool:
    return all(bot.slack.calls(method) == [] for method in HANDLER_METHODS)


def assert_quiet(logs: pytest.LogCaptureFixture) -> None:
    """No traceback, and every record a single line."""
    assert "Traceback" not in logs.text
    for record in logs.records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message, message


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as written (no client library to fix them up); return the status and the raw answer."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_a_body_over_the_cap_is_refused_413_even_when_signed(bot, logs):
    fields = build_payload_slash_command(ALICE, response_url=bot.slack.new_response_url())
    fields["text"] = "x" * (MAX_BODY_BYTES + 1)

    result = bot.sender.send_form(fields)

    assert result.status == 413
    assert no_handler_ran(bot)
    assert "x" * 100 not in logs.text
    assert_quiet(logs)


def test_a_body_just_under_the_cap_is_accepted(bot):
    fields = build_payload_slash_command(ALICE, text="help", response_url=bot.slack.new_response_url())
    fields["padding"] = "x" * (MAX_BODY_BYTES - 2000)

    result = bot.sender.send_form(fields)

    assert result.status == 200 and "help" in result.text.lower()


# Built while the test runs: a timestamp taken at collection would be judged against a later clock.
@pytest.mark.parametrize(
    "make_options, status",
    [
        pytest.param(lambda: {"sign": False}, 401, id="unsigned"),
        pytest.param(lambda: {"headers": {"X-Slack-Signature": "v0=not-hex"}}, 401, id="malformed-signature"),
        pytest.param(lambda: {"timestamp": "12abc"}, 401, id="malformed-timestamp"),
        pytest.param(lambda: {"timestamp": int(time.time()) + 3600}, 401, id="future-timestamp"),
    ],
)
def test_unsigned_requests_leave_one_short_line_and_no_body(bot, logs, make_options, status):
    options = make_options()
    secret_text = "SENSITIVE-BODY-MARKER"
    result = bot.sender.slash_command(ALICE, text=secret_text, response_url="https://x.invalid/", **options)

    assert result.status == status
    assert no_handler_ran(bot)
    assert secret_text not in logs.text
    refusals = [r for r in logs.records if r.name == "bot.web.gate"]
    assert len(refusals) == 1 and len(refusals[0].getMessage()) < 200
    assert [r for r in logs.records if r.name.startswith("slack_bolt")] == []
    assert_quiet(logs)


def test_wrong_method_and_path_are_refused_without_bolt(bot, logs):
    base = bot.url.rsplit("/slack/events", 1)[0]
    assert requests.get(bot.url, timeout=10).status_code == 405
    assert requests.post(f"{base}/other", data=b"x", timeout=10).status_code == 404
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
    assert_quiet(logs)


def test_a_post_without_a_length_is_refused_411(bot, logs):
    timestamp = str(int(time.time()))
    path = urlparse(bot.url).path
    status, _ = raw_request(
        bot.url,
        f"POST {path} HTTP/1.1\nHost: localhost\nX-Slack-Request-Timestamp: {timestamp}\n"
        f"X-Slack-Signature: {sign_request(SIGNING_SECRET, timestamp, b'')}\nConnection: close\n",
    )
    assert status == 411
    assert_quiet(logs)


@pytest.mark.parametrize(
    "body, content_type",
    [
        pytest.param("payload=%7Bnot+json", "application/x-www-form-urlencoded", id="broken-payload-json"),
        pytest.param('payload="just a string"', "application/x-www-form-urlencoded", id="payload-not-object"),
        pytest.param("[1, 2, 3]", "application/json", id="json-array"),
        pytest.param("{broken", "application/json", id="broken-json"),
        pytest.param(b"command=%2Fx&user_id=\xff\xfe", "application/x-www-form-urlencoded", id="not-utf8"),
    ],
)
def test_a_signed_body_bolt_cannot_parse_gets_400_before_bolt(bot, logs, body, content_type):
    result = bot.sender.send_raw(body, content_type)

    assert result.status == 400
    assert no_handler_ran(bot)
    assert [r.getMessage() for r in logs.records if r.name == "bot.web.gate"] != []
    assert_quiet(logs)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            {"type": "view_submission", "view": {"callback_id": "nobody-listens"}}, id="unknown-callback"
        ),
        pytest.param({"type": "view_submission", "view": "not-a-view"}, id="view-not-object"),
        pytest.param({"type": "block_actions", "actions": []}, id="no-actions"),
        pytest.param({"type": "block_suggestion", "action_id": "projects_select"}, id="suggestion-no-user"),
        pytest.param({"type": "view_submission", "view": {"callback_id": "mp_create_account"}}, id="no-user"),
        pytest.param({"type": "mystery"}, id="unknown-type"),
    ],
)
def test_signed_requests_of_odd_shapes_get_no_5xx_and_no_traceback(bot, logs, payload):
    result = bot.sender.send_interaction(payload)

    assert result.status < 500
    assert bot.mixpanel.create_calls() == []
    assert_quiet(logs)


def test_a_slash_command_without_a_user_is_answered_quietly(bot, logs):
    fields = build_payload_slash_command(ALICE, response_url=bot.slack.new_response_url())
    del fields["user_id"]

    result = bot.sender.send_form(fields)

    assert result.status < 500
    assert bot.slack.calls("views.open") == []
    assert_quiet(logs)


def test_a_request_cannot_forge_a_log_line(bot, logs):
    base = bot.url.rsplit("/slack/events", 1)[0]
    forged = "INFO bot.create.flow: Created account for UADMIN"
    requests.post(f"{base}/slack/events%0D%0A{forged.replace(' ', '%20')}", data=b"x", timeout=10)
    fields = build_payload_slash_command(ALICE, response_url=bot.slack.new_response_url())
    fields["text"] = f"help\r\n{forged}"
    bot.sender.send_form(fields)

    assert forged in logs.text  # it was logged, escaped on the line of the refusal
    for line in logs.text.splitlines():
        assert not line.startswith(forged)
    assert_quiet(logs)


def test_an_unknown_callback_is_logged_in_one_line_without_the_payload(bot, logs):
    marker = "PAYLOAD-MARKER-" + "z" * 20
    view = {"type": "modal", "callback_id": marker, "private_metadata": marker}
    payload = {"type": "view_submission", "view": view}

    result = bot.sender.send_interaction(payload)

    assert result.status == 404
    assert marker not in logs.text
    assert any("No listener" in r.getMessage() for r in logs.records)
    assert_quiet(logs)


def test_the_real_flow_still_passes_the_gate(bot):
    _, view, _ = bot.open_form()
    assert json.dumps(view)  # opened: the command and views.open went through


def call_gate(gate: SlackGate, environ: dict) -> str:
    statuses: list[str] = []
    b"".join(gate(environ, lambda status, headers: statuses.append(status)))
    return statuses[0]


def signed_environ(**extra: object) -> dict:
    timestamp = str(int(time.time()))
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/slack/events",
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": timestamp,
        "HTTP_X_SLACK_SIGNATURE": sign_request(SIGNING_SECRET, timestamp, b""),
        **extra,
    }


def test_a_chunked_body_is_refused_411_unread():
    gate = SlackGate(lambda environ, start_response: [], SIGNING_SECRET, path="/slack/events")
    body = io.BytesIO(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")

    status = call_gate(gate, signed_environ(HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": body}))

    assert status.startswith("411")
    assert body.tell() == 0


def test_a_trickled_body_is_cut_off_at_one_total_deadline():
    """Each byte arrives well within the read timeout; the whole body would take 20 times longer."""
    server, client = socket.socketpair()
    stop = threading.Event()

    def trickle() -> None:
        for _ in range(200):
            if stop.wait(0.05):
                return
            with contextlib.suppress(OSError):
                client.send(b"a")

    writer = threading.Thread(target=trickle, daemon=True)
    writer.start()
    gate = SlackGate(
        lambda environ, start_response: [], SIGNING_SECRET, path="/slack/events", read_timeout=0.5
    )
    try:
        environ = signed_environ(
            CONTENT_LENGTH="200",
            **{"wsgi.input": server.makefile("rb", buffering=0), "gunicorn.socket": server},
        )
        assert call_gate(gate, environ).startswith("408")
    finally:
        stop.set()
        writer.join(timeout=5)
        server.close()
        client.close()
