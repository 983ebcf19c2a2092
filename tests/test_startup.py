"""Starting the bot as the README says: bad settings are named, one line each, and the process exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = [
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "MIXPANEL_SERVICE_ACCOUNT_USERNAME",
    "MIXPANEL_SERVICE_ACCOUNT_SECRET",
]
# Every test starts app.py in a child process.
pytestmark = pytest.mark.subprocess


def run_app(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "MIXPANEL_", "POLICY_", "DATABASE_"))
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args],
        cwd=tmp_path,  # no .env there
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_settings_are_each_named_and_the_process_exits(tmp_path):
    result = run_app({}, tmp_path)
    assert result.returncode == 2
    for name in REQUIRED:
        assert f"{name}: missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_settings_are_named_without_echoing_secrets(tmp_path):
    result = run_app(
        {
            "SLACK_BOT_TOKEN": "not-a-bot-token-SECRETVALUE",
            "SLACK_SIGNING_SECRET": "s",
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "u",
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": "p",
            "MIXPANEL_REGION": "mars",
            "PORT": "99999",
        },
        tmp_path,
    )
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN: " in result.stderr and "xoxb-" in result.stderr
    assert "MIXPANEL_REGION: " in result.stderr and "PORT: " in result.stderr
    assert "SECRETVALUE" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_policy_file_stops_the_app_naming_the_key(tmp_path):
    (tmp_path / "policy.yml").write_text("max_role: analyst\nexpiry:\n  max_dayz: 3\n")
    result = run_app(
        {
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "s",
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "u",
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": "p",
            "SLACK_API_URL": "http://127.0.0.1:9/api/",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        },
        tmp_path,
    )
    assert result.returncode == 2
    assert "expiry.max_dayz: unknown key" in result.stderr
    assert "policy.yml" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_example_env_file_with_empty_optionals_reaches_slack_and_says_when_it_cannot(tmp_path):
    # Empty values in .env mean "unset"; an unreachable Slack is one plain line, not a traceback.
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    result = run_app(
        {"SLACK_API_URL": "http://127.0.0.1:9/api/", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
        tmp_path,
        "--mode",
        "http",
    )
    assert result.returncode == 2
    assert "SLACK_API_URL: could not reach Slack" in result.stderr
    assert "MIXPANEL_ORGANIZATION_ID" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_rejected_app_token_stops_socket_mode_with_one_line(tmp_path, slack):
    slack.app_token = "xapp-the-right-one"  # the fake refuses any other app token
    result = run_app(
        {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": "s",
            "SLACK_APP_TOKEN": "xapp-a-wrong-one",
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "u",
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": "p",
            "SLACK_API_URL": slack.base_url,
            "MIXPANEL_API_URL": "http://127.0.0.1:9/api/app",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        },
        tmp_path,
    )
    assert result.returncode == 2
    assert "SLACK_APP_TOKEN: could not open a Socket Mode connection" in result.stderr
    assert "xapp-a-wrong-one" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bot_token_slack_rejects_stops_the_app_with_one_line(tmp_path, slack):
    # auth.test is asked at start (it names the installation's workspace); a rejection is a setting problem.
    result = run_app(
        {
            "SLACK_BOT_TOKEN": "xoxb-not-the-one-SECRETVALUE",
            "SLACK_SIGNING_SECRET": "s",
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "u",
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": "p",
            "SLACK_API_URL": slack.base_url,
            "MIXPANEL_API_URL": "http://127.0.0.1:9/api/app",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        },
        tmp_path,
        "--mode",
        "http",
    )
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN: Slack did not accept it (invalid_auth)" in result.stderr
    assert [call.method for call in slack.calls()] == ["auth.test"]
    assert "SECRETVALUE" not in result.stderr and "Traceback" not in result.stderr
