"""`python -m bot doctor` against one broken deployment at a time.

Each fails (or warns) exactly the checks it breaks, naming its cause and the fix, and skips exactly the
checks that needed them; every other check still passes. No secret is ever printed (see the harness).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from tests.conftest import ALICE, GONE, ORG_ID
from tests.doctor_harness import (
    AUDIT_CHANNEL,
    DATA_GROUP,
    DB_PASSWORD,
    WRONG_APP_TOKEN,
    WRONG_BOT_TOKEN,
    WRONG_MP_SECRET,
    Deployment,
    free_port,
    healthy_deployment,
    not_passing,
    statuses,
)


@pytest.fixture
def deployment(slack, mixpanel, tmp_path) -> Deployment:
    return healthy_deployment(slack, mixpanel, tmp_path)


Breakage = Callable[[Deployment], None]
# Every test runs `python -m bot doctor` in a child process.
pytestmark = pytest.mark.subprocess


def env(**values: str | None) -> Breakage:
    def apply(deployment: Deployment) -> None:
        for name, value in values.items():
            if value is None:
                deployment.env.pop(name, None)
            else:
                deployment.env[name] = value

    return apply


def several(*changes: Breakage) -> Breakage:
    def apply(deployment: Deployment) -> None:
        for change in changes:
            change(deployment)

    return apply


def lose_scope(scope: str) -> Breakage:
    return lambda deployment: deployment.slack.granted_scopes.discard(scope)


def no_organization(deployment: Deployment) -> None:
    deployment.mixpanel.organizations.clear()


def second_organization(deployment: Deployment) -> None:
    deployment.mixpanel.organizations[9999] = {"id": 9999, "name": "Globex", "role": "admin"}


def role(name: str) -> Breakage:
    return lambda deployment: deployment.mixpanel.organizations[ORG_ID].update(role=name)


def unreachable_mixpanel(deployment: Deployment) -> None:
    deployment.env["MIXPANEL_API_URL"] = f"http://127.0.0.1:{free_port()}/api/app"


def unreachable_slack(deployment: Deployment) -> None:
    deployment.env["SLACK_API_URL"] = f"http://127.0.0.1:{free_port()}/api/"


def slack_unwell(deployment: Deployment) -> None:
    deployment.slack.set_http_status("auth.test", 502)


def unreachable_database(deployment: Deployment) -> None:
    deployment.env["DATABASE_URL"] = f"postgresql://doctor:{DB_PASSWORD}@127.0.0.1:{free_port()}/mpsa"


def empty_database(deployment: Deployment) -> None:
    empty = deployment.tmp_path / "empty.db"
    empty.touch()
    deployment.env["DATABASE_URL"] = f"sqlite:///{empty}"


def database_from_a_newer_version(deployment: Deployment) -> None:
    database = deployment.tmp_path / "bot.db"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00d'")
    connection.close()


def policy_users(*users: str) -> Breakage:
    return lambda deployment: deployment.policy["requesters"].update(users=list(users))


def policy_groups(*groups: str) -> Breakage:
    return lambda deployment: deployment.policy["requesters"].update(usergroups=list(groups))


def audit_channel(channel: str) -> Breakage:
    return lambda deployment: deployment.policy.update(audit_channel=channel)


def bot_left_channel(deployment: Deployment) -> None:
    deployment.slack.add_channel(AUDIT_CHANNEL, name="mp-audit", is_member=False)


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
        {"database": "FAIL", "ownerless-accounts": "SKIP", "rotations": "SKIP"},
        {"database": ["cannot reach", "postgresql", "DATABASE_URL"]},
        id="unreachable-database",
    ),
    pytest.param(
        empty_database,
        {"database": "FAIL", "ownerless-accounts": "SKIP", "rotations": "SKIP"},
        {"database": ["no migration", "start the bot"]},
        id="database-behind-head",
    ),
    pytest.param(
        database_from_a_newer_version,
        {"database": "FAIL", "ownerless-accounts": "SKIP", "rotations": "SKIP"},
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
        lambda deployment: deployment.policy.update(expiry={"max_dayz": 3}),
        {
            "policy-file": "FAIL",
            "policy-users": "SKIP",
            "policy-usergroups": "SKIP",
            "policy-channels": "SKIP",
            "ownerless-accounts": "SKIP",
        },
        {"policy-file": ["policy.yml", "expiry.max_dayz: unknown key"]},
        id="invalid-policy-file",
    ),
]


@pytest.mark.parametrize(("breakage", "expected", "named"), BROKEN)
def test_a_broken_setup_fails_naming_its_cause(deployment, breakage, expected, named):
    breakage(deployment)
    result = deployment.run()
    assert not_passing(result.stdout) == expected, result.stdout
    assert result.returncode == 1
    report = statuses(result.stdout)
    for name, fragments in named.items():
        line = report[name][1]
        for fragment in fragments:
            assert fragment in line, line
        assert "— fix: " in line


def test_a_deactivated_user_in_the_policy_is_a_warning(deployment):
    policy_users(ALICE, GONE)(deployment)
    result = deployment.run()
    assert result.returncode == 0, result.stdout
    assert not_passing(result.stdout) == {"policy-users": "WARN"}
    assert "@gone (UGONE) is deactivated" in statuses(result.stdout)["policy-users"][1]
