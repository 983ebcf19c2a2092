"""The bot started as the README says (`python app.py`), in both modes, against loopback fakes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from bot.serve import CANNOT_START, _Supervisor
from bot.settings import SettingsError
from tests import clock
from tests.conftest import ALICE, BOT_TOKEN, SIGNING_SECRET, form_values
from tests.fakes import bot_environment
from tests.fakes.socket_mode import FakeSocketModeServer
from tests.slack_requests import SlackSender, build_payload_slash_command, build_payload_view_submission

ROOT = Path(__file__).resolve().parents[1]
APP_TOKEN = "xapp-1-A1-test-app-token"
# Every test runs app.py (Socket Mode, gunicorn) or the Socket Mode supervisor's children as processes.
pytestmark = pytest.mark.subprocess


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BotProcess:
    def __init__(self, env: dict[str, str], tmp_path: Path, *args: str):
        self.log_path = tmp_path / "bot.log"
        self._log = self.log_path.open("w")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MIXPANEL_", "POLICY_"))}
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), *args],
            cwd=tmp_path,
            env={**base, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that a kill reaches every worker
        )

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or an OOM kill of the machine would."""
        if self.process.poll() is None and os.getpgid(self.process.pid) == self.process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def wait_healthy(base: str, bot: BotProcess) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, bot.logs()
        time.sleep(0.05)  # polling for readiness, not a timing assertion


@pytest.fixture
def process_env(slack, mixpanel, tmp_path) -> dict[str, str]:
    return {
        **bot_environment(slack, mixpanel, signing_secret=SIGNING_SECRET),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "LOG_LEVEL": "DEBUG",
        "MIXPANEL_RECONCILE_DELAYS": "[0]",
        "WEB_CONCURRENCY": "2",
    }


@pytest.fixture
def socket_mode(slack) -> Iterator[FakeSocketModeServer]:
    with FakeSocketModeServer() as server:
        slack.socket_mode_url = server.url
        slack.app_token = APP_TOKEN
        yield server


def test_socket_mode_runs_the_whole_flow(process_env, socket_mode, slack, mixpanel, tmp_path):
    # One process: no supervisor, the connection in the process started (the two-process test is below).
    env = {**process_env, "SLACK_APP_TOKEN": APP_TOKEN, "SOCKET_MODE_PROCESSES": "1"}
    bot = BotProcess(env, tmp_path)
    try:
        socket_mode.wait_for_connection(timeout=30)
        response_url = slack.new_response_url()
        ack = socket_mode.send_envelope(
            "slash_commands", build_payload_slash_command(ALICE, response_url=response_url)
        )
        assert not ack.get("payload")
        [opened] = slack.wait_for(lambda c: c.method == "views.open" and c.response is not None)
        submission = build_payload_view_submission(
            opened.response["view"], user_id=ALICE, values=form_values(expires_on=clock.form_expiry(10))
        )
        ack = socket_mode.send_envelope("interactive", submission)
        assert ack["payload"]["response_action"] == "update"
        [delivered] = slack.wait_for(lambda c: c.method == "response_url" and "blocks" in c.args, timeout=20)
        [token] = mixpanel.created_tokens()
        assert token in json.dumps(delivered.args)
        assert len(mixpanel.create_calls()) == 1
    finally:
        code = bot.terminate()
    assert code == 0, bot.logs()
    logs = bot.logs()
    assert "DEBUG" in logs and token not in logs and BOT_TOKEN not in logs and APP_TOKEN not in logs


def test_http_mode_serves_the_flow_and_finishes_in_flight_work_on_sigterm(
    process_env, slack, mixpanel, tmp_path
):
    port = free_port()
    bot = BotProcess({**process_env, "PORT": str(port)}, tmp_path, "--mode", "http")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, bot)
        sender = SlackSender(f"{base}/slack/events", SIGNING_SECRET)
        response_url = slack.new_response_url()
        assert sender.slash_command(ALICE, response_url=response_url).status == 200
        [opened] = slack.wait_for(lambda c: c.method == "views.open" and c.response is not None)
        mixpanel.latency = {"create": 2.0}
        ack = sender.view_submission(
            opened.response["view"], user_id=ALICE, values=form_values(expires_on=clock.form_expiry(10))
        )
        assert ack.json()["response_action"] == "update"
        mixpanel.wait_for("create")

        bot.process.send_signal(signal.SIGTERM)  # while Mixpanel is still answering
        code = bot.process.wait(timeout=30)
    finally:
        bot.kill()
    assert code == 0, bot.logs()
    [token] = mixpanel.created_tokens()
    delivered = [c for c in slack.calls("response_url") if token in json.dumps(c.args)]
    assert len(delivered) == 1, "the in-flight creation must deliver before the process exits"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=1)
    assert token not in bot.logs()


def test_an_account_made_while_the_bot_was_killed_is_deleted_at_the_next_start(
    process_env, slack, mixpanel, tmp_path
):
    env = process_env
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = BotProcess({**env, "PORT": str(port)}, tmp_path, "--mode", "http")
    try:
        wait_healthy(base, first)
        sender = SlackSender(f"{base}/slack/events", SIGNING_SECRET)
        sender.slash_command(ALICE, response_url=slack.new_response_url())
        [opened] = slack.wait_for(lambda c: c.method == "views.open" and c.response is not None)
        mixpanel.latency = {"create": 1.0}
        sender.view_submission(
            opened.response["view"], user_id=ALICE, values=form_values(expires_on=clock.form_expiry(10))
        )
        mixpanel.wait_for("create")
        first.kill()  # dies mid-create: Mixpanel still makes the account, the token is lost
    finally:
        first.kill()
    mixpanel.wait_for(lambda call: call.route == "create" and call.status is not None, timeout=10)
    assert len(mixpanel.accounts) == 1
    mixpanel.latency = {}
    # As if STALE_REQUEST_SECONDS (600 by default) had passed since the dead run last touched its request.
    touched = (clock.now() - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(tmp_path / "bot.db") as database:
        database.execute("UPDATE account_requests SET updated_at = ?", (touched,))

    second = BotProcess({**env, "PORT": str(free_port())}, tmp_path, "--mode", "http")
    try:
        mixpanel.wait_for("delete", timeout=30)
    finally:
        code = second.terminate()
    assert code == 0
    assert mixpanel.accounts == {}
    assert slack.calls("response_url") == []  # the lost token never went anywhere


def child_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by whoever adopted it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_socket_mode_in_two_processes_serves_on_both_connections_and_stops_cleanly(
    process_env, socket_mode, slack, mixpanel, tmp_path
):
    env = {**process_env, "SLACK_APP_TOKEN": APP_TOKEN, "SOCKET_MODE_PROCESSES": "2"}
    bot = BotProcess(env, tmp_path)
    try:
        socket_mode.wait_for_connection(timeout=30, count=2)
        # A child that dies is replaced, with its own connection.
        os.kill(child_pids(bot.process.pid)[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(socket_mode.request_paths) < 3:  # the replacement's handshake
            assert time.monotonic() < deadline, bot.logs()
            time.sleep(0.05)  # polling for readiness, not a timing assertion
        socket_mode.wait_for_connection(timeout=30, count=2)
        command = socket_mode.send_envelope_nowait(
            "slash_commands", build_payload_slash_command(ALICE, response_url=slack.new_response_url())
        )
        socket_mode.wait_ack(command)
        [opened] = slack.wait_for(lambda c: c.method == "views.open" and c.response is not None)
        mixpanel.latency = {"create": 2.0}
        submission = socket_mode.send_envelope_nowait(
            "interactive",
            build_payload_view_submission(
                opened.response["view"], user_id=ALICE, values=form_values(expires_on=clock.form_expiry(10))
            ),
        )
        assert socket_mode.wait_ack(submission)["payload"]["response_action"] == "update"
        # Round-robin: the two envelopes went to the two processes' connections.
        assert socket_mode.acked_on(command) != socket_mode.acked_on(submission)
        mixpanel.wait_for("create")

        bot.process.send_signal(signal.SIGTERM)  # while Mixpanel is still answering
        code = bot.process.wait(timeout=40)
    finally:
        bot.kill()
    logs = bot.logs()
    assert code == 0, logs
    [token] = mixpanel.created_tokens()
    delivered = [c for c in slack.calls("response_url") if token in json.dumps(c.args)]
    assert len(delivered) == 1, "the in-flight creation must deliver before the process exits"
    assert "exited unexpectedly (signal 9)" in logs
    assert "did not stop" not in logs and token not in logs and APP_TOKEN not in logs


def test_socket_mode_children_stop_when_their_supervisor_is_killed(process_env, socket_mode, tmp_path):
    env = {**process_env, "SLACK_APP_TOKEN": APP_TOKEN, "SOCKET_MODE_PROCESSES": "2"}
    bot = BotProcess(env, tmp_path)
    children: list[int] = []
    try:
        socket_mode.wait_for_connection(timeout=30, count=2)
        children = child_pids(bot.process.pid)
        os.kill(bot.process.pid, signal.SIGKILL)  # the supervisor alone
        bot.process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while socket_mode.connection_count or any(running(pid) for pid in children):
            assert time.monotonic() < deadline, bot.logs()
            time.sleep(0.05)  # polling for the orphans to stop, not a timing assertion
    finally:
        bot.kill()
        for pid in filter(running, children):  # orphans are out of bot.kill()'s reach
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert len(children) == 2
    assert bot.logs().count("Received SIGTERM") == 2, bot.logs()


def test_a_socket_mode_child_that_cannot_start_stops_the_supervisor_instead_of_restarting():
    """Exit code 2 (a setting no longer accepted, e.g. a revoked SLACK_APP_TOKEN) is not retried forever."""
    starts = []
    stopping = threading.Event()
    guard = threading.Timer(20, stopping.set)  # a regression ends the test instead of hanging it
    guard.start()
    supervisor = _Supervisor(lambda: CANNOT_START)
    original_spawn = supervisor._spawn
    supervisor._spawn = lambda slot: (starts.append(slot), original_spawn(slot))
    try:
        with pytest.raises(SettingsError):
            supervisor.run(1, stopping, stop_timeout=5)
    finally:
        guard.cancel()
    assert starts == [0]  # started once, never restarted
