"""Rotation into GitHub Actions secrets, against the GitHub fake (which decrypts every sealed box): the
secrets hold the successor; GitHub keeps no versions, so the old account itself stays alive for the
overlap, for runs that read the secret before it changed."""

from __future__ import annotations

import pytest

from bot.policy.file import DestinationPolicy, PersonSelector, Policy, RotationPolicy
from bot.rotate.messages import ACTION_ROTATE_NOW
from bot.rotate.states import RotationState
from tests.conftest import ALICE
from tests.fakes.github import FakeGitHub
from tests.rotation_harness import ADMIN, AUDIT, Clock, rotation_of, run, successor_of
from tests.test_destinations import GITHUB_TOKEN, REPO, create, to_store
from tests.test_rotation_buttons import click

S = RotationState


@pytest.fixture
def github():
    with FakeGitHub(token=GITHUB_TOKEN, repos=(REPO,)) as fake:
        yield fake


def test_github_rotation_writes_the_successor_and_deletes_the_old_account_after_the_overlap(
    bots, github, slack
):
    slack.add_user(ADMIN, tz="UTC", name="admin")
    policy = Policy(
        destinations=[
            DestinationPolicy(
                name="gh-ci",
                kind="github_actions",
                repository=REPO,
                secret_name_prefix="MP_",
                api_url=github.url,
            )
        ],
        admins=PersonSelector(users=[ADMIN]),
        audit_channel=AUDIT,
        rotation=RotationPolicy(days_before_expiry=14),
    )
    bot = bots.start(policy=policy, github_token=GITHUB_TOKEN, rotation_interval_seconds=0)
    clock = Clock()
    bot.runtime.flow.d.clock = clock
    create(bot, to_store("gh-ci"))
    [old] = bot.runtime.manage.records.delivered(ALICE)

    # GitHub's read-back compares its own wall-clock update times, so the clock cannot move to the due
    # date first: the owner clicks Rotate now, which starts it at once.
    assert "Rotating" in click(bot, ALICE, ACTION_ROTATE_NOW, old.id)
    assert rotation_of(bot, old).state is S.OVERLAPPING

    successor = successor_of(bot, old)
    assert (
        github.secret_value(REPO, "MP_ETL_NIGHTLY_SECRET")
        == bot.mixpanel.tokens[successor.mixpanel_account_id]
    )
    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_USERNAME") == successor.mixpanel_username
    assert old.mixpanel_account_id in bot.mixpanel.accounts  # alive through the overlap
    clock.advance(hours=24, minutes=1)
    assert run(bot) == [S.OLD_DELETED]  # and the successor is not due: it has its whole lifetime ahead
    assert old.mixpanel_account_id not in bot.mixpanel.accounts
