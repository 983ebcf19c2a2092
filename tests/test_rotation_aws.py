"""Rotation into AWS Secrets Manager, against moto on loopback: the new version is AWSCURRENT, the old one
stays readable as AWSPREVIOUS during the overlap, and a refused PutSecretValue stops the rotation."""

from __future__ import annotations

import json

import pytest

from bot.policy.file import DestinationPolicy, PersonSelector, Policy
from bot.rotate.states import RotationState
from tests.conftest import ALICE
from tests.fakes.aws import aws, aws_server
from tests.rotation_harness import ADMIN, AUDIT, Clock, dms_to, due, rotation_of, run, successor_of
from tests.test_destinations import create, to_store

__all__ = ["aws", "aws_server"]  # fixtures

S = RotationState
SECRET = "mixpanel/etl-nightly"


@pytest.fixture
def aws_rotating(bots, aws, slack, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", aws.credentials["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws.credentials["aws_secret_access_key"])
    slack.add_user(ADMIN, tz="UTC", name="admin")
    policy = Policy(
        destinations=[
            DestinationPolicy(
                name="aws-prod",
                kind="aws_secrets_manager",
                region=aws.region,
                name_prefix="mixpanel/",
                endpoint_url=aws.endpoint_url,
            )
        ],
        admins=PersonSelector(users=[ADMIN]),
        audit_channel=AUDIT,
    )
    bot = bots.start(policy=policy, rotation_interval_seconds=0)
    clock = Clock()
    bot.runtime.flow.d.clock = clock
    create(bot, to_store("aws-prod"))
    [old] = bot.runtime.manage.records.delivered(ALICE)
    return bot, clock, old


def version(client, stage: str) -> dict:
    return json.loads(client.get_secret_value(SecretId=SECRET, VersionStage=stage)["SecretString"])


def test_aws_rotation_keeps_the_old_version_readable_during_the_overlap(aws_rotating, aws):
    bot, clock, old = aws_rotating
    due(old, clock)

    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]

    successor = successor_of(bot, old)
    client = aws.client()
    assert version(client, "AWSCURRENT")["account_id"] == successor.mixpanel_account_id
    previous = version(client, "AWSPREVIOUS")
    assert previous["account_id"] == old.mixpanel_account_id
    assert previous["secret"] == bot.mixpanel.tokens[old.mixpanel_account_id]  # still a live token
    clock.advance(hours=25)
    assert run(bot) == [S.OLD_DELETED]
    assert old.mixpanel_account_id not in bot.mixpanel.accounts


def test_aws_refusing_the_new_version_stops_the_rotation(aws_rotating, aws):
    bot, clock, old = aws_rotating
    aws.proxy.deny_next(1, action="PutSecretValue")
    due(old, clock)

    assert run(bot) == [S.SUCCESSOR_CREATED, S.FAILED]

    assert "not allowed to write there" in rotation_of(bot, old).failure
    assert version(aws.client(), "AWSCURRENT")["account_id"] == old.mixpanel_account_id
    assert list(bot.mixpanel.accounts) == [old.mixpanel_account_id]  # the successor was deleted again
    assert "could not be rotated" in dms_to(bot, ADMIN)[-1]
    clock.advance(days=1, minutes=1)
    assert run(bot)[-1] is S.OVERLAPPING  # tried again a day later
