"""The harness for `python -m bot doctor` tests: a healthy deployment against the fakes, and its report."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.db.engine import build_engine, migrate
from tests.conftest import ALICE, BOT_TOKEN, MP_SECRET, SIGNING_SECRET
from tests.fakes import bot_environment
from tests.fakes.mixpanel import FakeMixpanel
from tests.fakes.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
APP_TOKEN = "xapp-1-A1-doctor-app-token"
DATA_GROUP = "S0DATA"
AUDIT_CHANNEL = "C0AUDIT"
DB_PASSWORD = "db-password-not-for-eyes"
WRONG_BOT_TOKEN = "xoxb-wrong-bot-token-value"
WRONG_APP_TOKEN = "xapp-1-A1-wrong-app-token"
WRONG_MP_SECRET = "wrong-mixpanel-secret-value"
SECRETS = [BOT_TOKEN, SIGNING_SECRET, MP_SECRET, APP_TOKEN, DB_PASSWORD]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Deployment:
    """A deployment that doctor should find healthy, until a test breaks one thing in it."""

    slack: FakeSlack
    mixpanel: FakeMixpanel
    tmp_path: Path
    env: dict[str, str]
    policy: dict[str, Any] = field(default_factory=dict)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        (self.tmp_path / "policy.yml").write_text(yaml.safe_dump(self.policy))
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "MIXPANEL_", "POLICY_", "DATABASE_"))
        }
        result = subprocess.run(
            [sys.executable, "-m", "bot", "doctor", *args],
            cwd=self.tmp_path,  # no .env there; policy.yml is found as the bot would find it
            env={**clean, **self.env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        printed = result.stdout + result.stderr
        for secret in [*SECRETS, WRONG_BOT_TOKEN, WRONG_APP_TOKEN, WRONG_MP_SECRET]:
            assert secret not in printed, f"doctor printed a secret:\n{printed}"
        assert "Traceback" not in printed, printed
        return result


def statuses(output: str) -> dict[str, tuple[str, str]]:
    """{check name: (status, the rest of its line)} from the text report."""
    report = {}
    for line in output.splitlines():
        status, name, rest = line.split(maxsplit=2)
        report[name] = (status, rest)
    return report


def not_passing(output: str) -> dict[str, str]:
    return {name: status for name, (status, _) in statuses(output).items() if status != "PASS"}


def healthy_deployment(slack: FakeSlack, mixpanel: FakeMixpanel, tmp_path: Path) -> Deployment:
    slack.app_token = APP_TOKEN
    slack.socket_mode_url = "ws://127.0.0.1:9/link"  # handed out, never connected to
    slack.set_usergroup(DATA_GROUP, [ALICE])
    slack.add_channel(AUDIT_CHANNEL, name="mp-audit", is_member=True)
    database = tmp_path / "bot.db"
    engine = build_engine(f"sqlite:///{database}")
    migrate(engine)
    engine.dispose()
    env = {
        **bot_environment(slack, mixpanel, signing_secret=SIGNING_SECRET),
        "SLACK_APP_TOKEN": APP_TOKEN,
        "DATABASE_URL": f"sqlite:///{database}",
    }
    policy = {
        "requesters": {"users": [ALICE], "usergroups": [DATA_GROUP]},
        "elevated": [{"users": [ALICE], "max_role": "admin"}],
        "audit_channel": AUDIT_CHANNEL,
    }
    return Deployment(slack=slack, mixpanel=mixpanel, tmp_path=tmp_path, env=env, policy=policy)
