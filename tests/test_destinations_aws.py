"""AWS Secrets Manager through the wire, against moto's real API on loopback (tests/fakes/aws.py)."""

from __future__ import annotations

import json

import pytest

from bot.db.schema import AuditEvent
from bot.policy.file import DestinationPolicy, Policy
from tests.conftest import ALICE
from tests.fakes.aws import action_is, aws, aws_server
from tests.test_destinations import assert_token_nowhere_but_the_store, create, the_account, to_store, told

__all__ = ["aws", "aws_server"]  # fixtures


@pytest.fixture
def aws_bot(bots, aws, monkeypatch):
    credentials = aws.credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["aws_secret_access_key"])
    policy = Policy(
        destinations=[
            DestinationPolicy(
                name="aws-prod",
                kind="aws_secrets_manager",
                region=aws.region,
                name_prefix="mixpanel/",
                endpoint_url=aws.endpoint_url,
            )
        ]
    )
    return bots.start(policy=policy)


def test_aws_end_to_end_creates_tags_reads_back(aws_bot, aws, debug_logs):
    _, url = create(aws_bot, to_store("aws-prod"))

    account, token = the_account(aws_bot)
    client = aws.client()
    stored = json.loads(client.get_secret_value(SecretId="mixpanel/etl-nightly")["SecretString"])
    assert stored["secret"] == token and stored["account_id"] == account["id"]
    tags = {t["Key"]: t["Value"] for t in client.describe_secret(SecretId="mixpanel/etl-nightly")["Tags"]}
    assert tags["mixpanel-account-id"] == str(account["id"])
    assert "GetSecretValue" in aws.proxy.actions()
    assert "Stored in AWS Secrets Manager aws-prod at mixpanel/etl-nightly (version " in told(aws_bot, url)
    assert_token_nowhere_but_the_store(aws_bot, token, debug_logs)


def test_aws_access_denied_deletes_the_account(aws_bot, aws):
    aws.proxy.deny_next(1, action="CreateSecret")

    _, url = create(aws_bot, to_store("aws-prod"))

    assert aws_bot.mixpanel.accounts == {}
    assert "could not store its token in aws-prod (the bot is not allowed to write there)" in told(
        aws_bot, url
    )
    assert AuditEvent.DELETED in [row["event"] for row in aws_bot.store.audit_trail()]


def test_aws_timeout_after_the_create_is_settled_by_reading_back(aws_bot, aws):
    aws.proxy.apply_then_drop(1, where=action_is("CreateSecret"))

    _, url = create(aws_bot, to_store("aws-prod"))

    assert aws.proxy.actions().count("CreateSecret") == 1
    _, token = the_account(aws_bot)
    assert (
        json.loads(aws.client().get_secret_value(SecretId="mixpanel/etl-nightly")["SecretString"])["secret"]
        == token
    )
    assert "Stored in AWS Secrets Manager aws-prod" in told(aws_bot, url)
    [request] = aws_bot.runtime.manage.records.delivered(ALICE)
    assert request.destination == "aws-prod"
