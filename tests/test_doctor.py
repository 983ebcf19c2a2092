"""`python -m bot doctor` as an operator runs it: a subprocess against the fakes, one broken setup at a time.

A good setup passes every check. Each broken setup fails (or warns) exactly the checks it breaks, and skips
exactly the checks that needed them; everything else still passes. No secret is ever printed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.storage import build_engine, migrate
from tests.conftest import ALICE, BOT_TOKEN, GONE, MP_SECRET, ORG_ID, SIGNING_SECRET
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
BASH = shutil.which("bash") or "/bin/bash"
SECRETS = [BOT_TOKEN, SIGNING_SECRET, MP_SECRET, APP_TOKEN, DB_PASSWORD]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Setup:
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


@pytest.fixture
def setup(slack, mixpanel, tmp_path) -> Setup:
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
    return Setup(slack=slack, mixpanel=mixpanel, tmp_path=tmp_path, env=env, policy=policy)


def test_a_good_setup_passes_every_check(setup):
    result = setup.run()
    assert result.returncode == 0, result.stdout
    report = statuses(result.stdout)
    assert not_passing(result.stdout) == {}, result.stdout
    assert list(report) == [
        "settings",
        "slack-token",
        "slack-scopes",
        "slack-app-token",
        "mixpanel-host",
        "mixpanel-credentials",
        "mixpanel-organization",
        "mixpanel-role",
        "mixpanel-projects",
        "database",
        "policy-file",
        "policy-users",
        "policy-usergroups",
        "policy-channels",
    ]
    assert f"({setup.slack.team_id})" in report["slack-token"][1]
    assert f"({setup.slack.bot_user_id})" in report["slack-token"][1]
    assert str(ORG_ID) in report["mixpanel-organization"][1]
    assert "#mp-audit" in report["policy-channels"][1]
    # Doctor only asks: no Socket Mode connection, no message, no migration.
    assert [call.method for call in setup.slack.calls()] == [
        "auth.test",
        "apps.connections.open",
        "users.info",
        "usergroups.users.list",
        "conversations.info",
    ]
    assert [call.route for call in setup.mixpanel.calls()] == ["me"]


def test_json_reports_the_same_checks(setup):
    setup.mixpanel.organizations[ORG_ID]["role"] = "analyst"
    text = setup.run()
    result = setup.run("--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {check["name"]: check["status"] for check in report["checks"]} == {
        name: status for name, (status, _) in statuses(text.stdout).items()
    }
    [role] = [check for check in report["checks"] if check["name"] == "mixpanel-role"]
    assert '"analyst"' in role["found"] and "admin or owner" in role["fix"]


Breakage = Callable[[Setup], None]


def env(**values: str | None) -> Breakage:
    def apply(setup: Setup) -> None:
        for name, value in values.items():
            if value is None:
                setup.env.pop(name, None)
            else:
                setup.env[name] = value

    return apply


def several(*changes: Breakage) -> Breakage:
    def apply(setup: Setup) -> None:
        for change in changes:
            change(setup)

    return apply


def lose_scope(scope: str) -> Breakage:
    return lambda setup: setup.slack.granted_scopes.discard(scope)


def no_organization(setup: Setup) -> None:
    setup.mixpanel.organizations.clear()


def second_organization(setup: Setup) -> None:
    setup.mixpanel.organizations[9999] = {"id": 9999, "name": "Globex", "role": "admin"}


def role(name: str) -> Breakage:
    return lambda setup: setup.mixpanel.organizations[ORG_ID].update(role=name)


def unreachable_mixpanel(setup: Setup) -> None:
    setup.env["MIXPANEL_API_URL"] = f"http://127.0.0.1:{free_port()}/api/app"


def unreachable_slack(setup: Setup) -> None:
    setup.env["SLACK_API_URL"] = f"http://127.0.0.1:{free_port()}/api/"


def slack_unwell(setup: Setup) -> None:
    setup.slack.set_http_status("auth.test", 502)


def unreachable_database(setup: Setup) -> None:
    setup.env["DATABASE_URL"] = f"postgresql://doctor:{DB_PASSWORD}@127.0.0.1:{free_port()}/mpsa"


def empty_database(setup: Setup) -> None:
    empty = setup.tmp_path / "empty.db"
    empty.touch()
    setup.env["DATABASE_URL"] = f"sqlite:///{empty}"


def database_from_a_newer_version(setup: Setup) -> None:
    database = setup.tmp_path / "bot.db"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00d'")
    connection.close()


def policy_users(*users: str) -> Breakage:
    return lambda setup: setup.policy["requesters"].update(users=list(users))


def policy_groups(*groups: str) -> Breakage:
    return lambda setup: setup.policy["requesters"].update(usergroups=list(groups))


def audit_channel(channel: str) -> Breakage:
    return lambda setup: setup.policy.update(audit_channel=channel)


def bot_left_channel(setup: Setup) -> None:
    setup.slack.add_channel(AUDIT_CHANNEL, name="mp-audit", is_member=False)


AFTER_SLACK_TOKEN = {"slack-scopes": "SKIP", "policy-users": "SKIP", "policy-usergroups": "SKIP"}
AFTER_SLACK_TOKEN["policy-channels"] = "SKIP"
AFTER_ORGANIZATION = {"mixpanel-role": "SKIP", "mixpanel-projects": "SKIP"}
AFTER_CREDENTIALS = {"mixpanel-organization": "SKIP", **AFTER_ORGANIZATION}

BROKEN = [
    pytest.param(
        env(SLACK_BOT_TOKEN=WRONG_BOT_TOKEN),
        {"slack-token": "FAIL", **AFTER_SLACK_TOKEN},
        {"slack-token": ["invalid_auth", "Bot User OAuth Token"]},
        id="invalid-bot-token",
    ),
    pytest.param(
        unreachable_slack,
        {"slack-token": "FAIL", "slack-app-token": "FAIL", **AFTER_SLACK_TOKEN},
        {"slack-token": ["could not reach Slack", "SLACK_API_URL"], "slack-app-token": ["SLACK_API_URL"]},
        id="unreachable-slack",
    ),
    pytest.param(
        slack_unwell,
        {"slack-token": "FAIL", **AFTER_SLACK_TOKEN},
        {"slack-token": ["Slack could not check SLACK_BOT_TOKEN", "try again"]},
        id="slack-unwell",
    ),
    pytest.param(
        lose_scope("channels:read"),
        {"slack-scopes": "FAIL", "policy-channels": "FAIL"},
        {"slack-scopes": ["lacks channels:read", "reinstall"], "policy-channels": ["channels:read"]},
        id="missing-scope",
    ),
    pytest.param(
        env(SLACK_APP_TOKEN=WRONG_APP_TOKEN),
        {"slack-app-token": "FAIL"},
        {"slack-app-token": ["invalid_auth", "connections:write"]},
        id="invalid-app-token",
    ),
    pytest.param(
        env(MIXPANEL_SERVICE_ACCOUNT_SECRET=WRONG_MP_SECRET),
        {"mixpanel-credentials": "FAIL", **AFTER_CREDENTIALS},
        {
            "mixpanel-credentials": [
                "401",
                "MIXPANEL_SERVICE_ACCOUNT_USERNAME",
                "MIXPANEL_SERVICE_ACCOUNT_SECRET",
            ]
        },
        id="mixpanel-401",
    ),
    pytest.param(
        several(no_organization, env(MIXPANEL_ORGANIZATION_ID=None)),
        {"mixpanel-organization": "FAIL", **AFTER_ORGANIZATION},
        {"mixpanel-organization": ["no organization"]},
        id="no-organization",
    ),
    pytest.param(
        several(second_organization, env(MIXPANEL_ORGANIZATION_ID=None)),
        {"mixpanel-organization": "FAIL", **AFTER_ORGANIZATION},
        {
            "mixpanel-organization": [
                "several",
                f"{ORG_ID} (Acme)",
                "9999 (Globex)",
                "MIXPANEL_ORGANIZATION_ID",
            ]
        },
        id="several-organizations",
    ),
    pytest.param(
        env(MIXPANEL_ORGANIZATION_ID="4321"),
        {"mixpanel-organization": "FAIL", **AFTER_ORGANIZATION},
        {"mixpanel-organization": ["4321", f"{ORG_ID} (Acme)"]},
        id="someone-else's-organization",
    ),
    pytest.param(
        role("analyst"),
        {"mixpanel-role": "FAIL"},
        {"mixpanel-role": ['"analyst"', str(ORG_ID), "admin or owner"]},
        id="analyst-role",
    ),
    pytest.param(
        unreachable_mixpanel,
        {"mixpanel-host": "FAIL", "mixpanel-credentials": "SKIP", **AFTER_CREDENTIALS},
        {"mixpanel-host": ["127.0.0.1", "MIXPANEL_API_URL"]},
        id="unreachable-mixpanel-host",
    ),
    pytest.param(
        unreachable_database,
        {"database": "FAIL"},
        {"database": ["cannot reach", "postgresql", "DATABASE_URL"]},
        id="unreachable-database",
    ),
    pytest.param(
        empty_database,
        {"database": "FAIL"},
        {"database": ["no migration", "start the bot"]},
        id="database-behind-head",
    ),
    pytest.param(
        database_from_a_newer_version,
        {"database": "FAIL"},
        {"database": ["f00d", "does not know"]},
        id="database-ahead-of-the-code",
    ),
    pytest.param(
        policy_users(ALICE, "UNOBODY"),
        {"policy-users": "FAIL"},
        {"policy-users": ["UNOBODY (requesters.users): no such user"]},
        id="unknown-user",
    ),
    pytest.param(
        policy_groups(DATA_GROUP, "S0NOPE"),
        {"policy-usergroups": "FAIL"},
        {"policy-usergroups": ["S0NOPE (requesters.usergroups): no such user group"]},
        id="unknown-usergroup",
    ),
    pytest.param(
        audit_channel("C0NOPE"),
        {"policy-channels": "FAIL"},
        {"policy-channels": ["audit_channel C0NOPE: not found"]},
        id="unknown-channel",
    ),
    pytest.param(
        bot_left_channel,
        {"policy-channels": "FAIL"},
        {"policy-channels": ["#mp-audit", "not a member", "/invite @mp-service-account"]},
        id="bot-not-in-audit-channel",
    ),
    pytest.param(
        lambda setup: setup.policy.update(expiry={"max_dayz": 3}),
        {
            "policy-file": "FAIL",
            "policy-users": "SKIP",
            "policy-usergroups": "SKIP",
            "policy-channels": "SKIP",
        },
        {"policy-file": ["policy.yml", "expiry.max_dayz: unknown key"]},
        id="invalid-policy-file",
    ),
]


@pytest.mark.parametrize(("breakage", "expected", "named"), BROKEN)
def test_a_broken_setup_fails_naming_its_cause(setup, breakage, expected, named):
    breakage(setup)
    result = setup.run()
    assert not_passing(result.stdout) == expected, result.stdout
    assert result.returncode == 1
    report = statuses(result.stdout)
    for name, fragments in named.items():
        line = report[name][1]
        for fragment in fragments:
            assert fragment in line, line
        assert "— fix: " in line


def test_a_deactivated_user_in_the_policy_is_a_warning(setup):
    policy_users(ALICE, GONE)(setup)
    result = setup.run()
    assert result.returncode == 0, result.stdout
    assert not_passing(result.stdout) == {"policy-users": "WARN"}
    assert "@gone (UGONE) is deactivated" in statuses(result.stdout)["policy-users"][1]


def test_bad_settings_are_each_named_and_nothing_else_runs(setup):
    setup.env.pop("MIXPANEL_SERVICE_ACCOUNT_SECRET")
    setup.env["SLACK_BOT_TOKEN"] = "not-a-bot-token-value"
    result = setup.run()
    assert result.returncode == 1
    report = statuses(result.stdout)
    assert report.pop("settings")[0] == "FAIL"
    assert {status for status, _ in report.values()} == {"SKIP"}
    assert "not-a-bot-token-value" not in result.stdout
    line = statuses(result.stdout)["settings"][1]
    assert "MIXPANEL_SERVICE_ACCOUNT_SECRET: missing" in line and "SLACK_BOT_TOKEN: " in line
    assert setup.slack.calls() == [] and setup.mixpanel.calls() == []


def test_http_mode_skips_the_app_token_and_a_policy_without_people(setup):
    setup.env.pop("SLACK_APP_TOKEN")
    setup.policy = {}
    result = setup.run()
    assert result.returncode == 0
    assert not_passing(result.stdout) == {
        "slack-app-token": "SKIP",
        "policy-users": "SKIP",
        "policy-usergroups": "SKIP",
        "policy-channels": "SKIP",
    }


def test_scripts_run_doctor_runs_the_doctor_and_anything_else_runs_the_app(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run", tmp_path / "scripts" / "run")
    (tmp_path / "requirements.txt").write_text("")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    # A stand-in interpreter: answers scripts/run's venv checks, and records what it is asked to run.
    python.write_text(
        "#!/bin/sh\n"
        'case "$1 $2" in "-c "* | "-m pip") exit 0 ;; "-VV "*) echo shim; exit 0 ;; esac\n'
        'echo "$@" >> "$(dirname "$0")/../../ran"\n'
    )
    python.chmod(0o755)
    for args in (["doctor", "--format", "json"], ["--mode", "http"]):
        subprocess.run([BASH, str(tmp_path / "scripts" / "run"), *args], check=True, timeout=60)
    assert (tmp_path / "ran").read_text().splitlines() == [
        "-m bot doctor --format json",
        "app.py --mode http",
    ]


def test_doctor_neither_migrates_nor_creates_a_database(setup):
    empty_database(setup)
    setup.run()
    assert (setup.tmp_path / "empty.db").stat().st_size == 0

    missing = setup.tmp_path / "typo.db"
    setup.env["DATABASE_URL"] = f"sqlite:///{missing}"
    result = setup.run()
    assert not_passing(result.stdout) == {"database": "FAIL"}
    assert "no database file" in statuses(result.stdout)["database"][1]
    assert not missing.exists()
