"""`python -m bot doctor` as an operator runs it, as a subprocess against the fakes.

A good deployment passes every check; what is not configured is skipped; bad settings stop the rest; nothing
is created, migrated or printed that should not be. Broken setups: tests/test_doctor_failures.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import ORG_ID
from tests.doctor_harness import ROOT, Deployment, healthy_deployment, not_passing, statuses

BASH = shutil.which("bash") or "/bin/bash"
# Every test runs `python -m bot doctor` (or scripts/run) in a child process.
pytestmark = pytest.mark.subprocess


@pytest.fixture
def deployment(slack, mixpanel, tmp_path) -> Deployment:
    return healthy_deployment(slack, mixpanel, tmp_path)


def test_a_good_setup_passes_every_check(deployment):
    result = deployment.run()
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
        "rotations",
        "policy-file",
        "policy-users",
        "policy-usergroups",
        "policy-channels",
        "ownerless-accounts",
    ]
    assert f"({deployment.slack.team_id})" in report["slack-token"][1]
    assert f"({deployment.slack.bot_user_id})" in report["slack-token"][1]
    assert str(ORG_ID) in report["mixpanel-organization"][1]
    assert "#mp-audit" in report["policy-channels"][1]
    # Doctor only asks: no Socket Mode connection, no message, no migration.
    assert [call.method for call in deployment.slack.calls()] == [
        "auth.test",
        "apps.connections.open",
        "users.info",
        "usergroups.users.list",
        "conversations.info",
    ]
    assert [call.route for call in deployment.mixpanel.calls()] == ["me"]


def test_json_reports_the_same_checks(deployment):
    deployment.mixpanel.organizations[ORG_ID]["role"] = "analyst"
    text = deployment.run()
    result = deployment.run("--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {check["name"]: check["status"] for check in report["checks"]} == {
        name: status for name, (status, _) in statuses(text.stdout).items()
    }
    [role] = [check for check in report["checks"] if check["name"] == "mixpanel-role"]
    assert '"analyst"' in role["found"] and "admin or owner" in role["fix"]


def test_bad_settings_are_each_named_and_nothing_else_runs(deployment):
    deployment.env.pop("MIXPANEL_SERVICE_ACCOUNT_SECRET")
    deployment.env["SLACK_BOT_TOKEN"] = "not-a-bot-token-value"
    result = deployment.run()
    assert result.returncode == 1
    report = statuses(result.stdout)
    assert report.pop("settings")[0] == "FAIL"
    assert {status for status, _ in report.values()} == {"SKIP"}
    assert "not-a-bot-token-value" not in result.stdout
    line = statuses(result.stdout)["settings"][1]
    assert "MIXPANEL_SERVICE_ACCOUNT_SECRET: missing" in line and "SLACK_BOT_TOKEN: " in line
    assert deployment.slack.calls() == [] and deployment.mixpanel.calls() == []


def test_http_mode_skips_the_app_token_and_a_policy_without_people(deployment):
    deployment.env.pop("SLACK_APP_TOKEN")
    deployment.policy = {}
    result = deployment.run()
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


def test_doctor_neither_migrates_nor_creates_a_database(deployment):
    empty = deployment.tmp_path / "empty.db"
    empty.touch()
    deployment.env["DATABASE_URL"] = f"sqlite:///{empty}"
    deployment.run()
    assert empty.stat().st_size == 0

    missing = deployment.tmp_path / "typo.db"
    deployment.env["DATABASE_URL"] = f"sqlite:///{missing}"
    result = deployment.run()
    assert not_passing(result.stdout) == {
        "database": "FAIL",
        "ownerless-accounts": "SKIP",
        "rotations": "SKIP",
    }
    assert "no database file" in statuses(result.stdout)["database"][1]
    assert not missing.exists()


def test_doctor_lists_accounts_without_an_owner_past_orphan_days(deployment):
    from datetime import UTC, datetime, timedelta

    from bot.db.schema import RequestState
    from bot.db.store import Store
    from bot.govern.store import GovernanceStore
    from bot.models import AccountSpec, Role

    store = Store.connect(deployment.env["DATABASE_URL"])
    now = datetime.now(UTC)
    for key, days_open in (("long-gone", 20), ("just-left", 2)):
        spec = AccountSpec(key, Role.ANALYST, (3001,), (now + timedelta(days=30)).date())
        claimed = store.claim(
            submission_key=key,
            requester_id="ULEFT",
            team_id="T1",
            channel_id=None,
            spec=spec,
            within_quota=lambda _: True,
        )
        request = store.transition(
            claimed.request.id,
            RequestState.DELIVERED,
            expected=(RequestState.SUBMITTED,),
            mixpanel_account_id=9000 + days_open,
            mixpanel_username=f"{key}.x.mp-service-account",
        )
        GovernanceStore(store).open_ownership(
            request, detail="owner deactivated", now=now - timedelta(days=days_open)
        )
    store.close()
    deployment.policy["governance"] = {"orphan_days": 14}

    result = deployment.run()

    assert not_passing(result.stdout) == {"ownerless-accounts": "WARN"}
    line = statuses(result.stdout)["ownerless-accounts"][1]
    assert "long-gone.x.mp-service-account (was ULEFT's)" in line and "just-left" not in line
    assert result.returncode == 0  # a warning, not a broken deployment


def test_doctor_checks_the_successor_group(deployment):
    deployment.policy["governance"] = {"successor": "S0NOSUCH"}
    result = deployment.run()
    assert not_passing(result.stdout) == {"policy-usergroups": "FAIL"}
    assert (
        "S0NOSUCH (governance.successor): no such user group"
        in statuses(result.stdout)["policy-usergroups"][1]
    )
