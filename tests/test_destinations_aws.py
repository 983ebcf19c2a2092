"""AWS Secrets Manager through the wire, against moto's real API on loopback (tests/fakes/aws.py)."""

from __future__ import annotations

import json

import pytest

from bot.db.schema import AuditEvent
from bot.policy.file import DestinationPolicy, Policy
from tests import clock
from tests.conftest import ALICE, form_values
from tests.fakes.aws import action_is, aws, aws_server
from tests.lifecycle import open_replace
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


def test_aws_replace_puts_a_new_version_the_old_one_stays_awsprevious(aws_bot, aws, debug_logs):
    create(aws_bot, to_store("aws-prod"))
    [old] = aws_bot.runtime.manage.records.delivered(ALICE)
    form = open_replace(aws_bot, old.id)
    assert "new version of the same secret" in json.dumps(form)

    values = form_values(projects=[3001], expires_on=clock.form_expiry(60))
    aws_bot.submit(form, values)
    aws_bot.wait_idle()

    new = next(r for r in aws_bot.runtime.manage.records.delivered(ALICE) if r.id != old.id)
    client = aws.client()
    current = client.get_secret_value(SecretId="mixpanel/etl-nightly", VersionStage="AWSCURRENT")
    previous = client.get_secret_value(SecretId="mixpanel/etl-nightly", VersionStage="AWSPREVIOUS")
    assert json.loads(current["SecretString"])["account_id"] == new.mixpanel_account_id
    assert json.loads(current["SecretString"])["secret"] == aws_bot.mixpanel.tokens[new.mixpanel_account_id]
    assert json.loads(previous["SecretString"])["account_id"] == old.mixpanel_account_id
    assert new.secret_version == current["VersionId"] != previous["VersionId"]
    assert aws.proxy.actions().count("CreateSecret") == 1 and "PutSecretValue" in aws.proxy.actions()
    tags = {t["Key"]: t["Value"] for t in client.describe_secret(SecretId="mixpanel/etl-nightly")["Tags"]}
    assert tags["mixpanel-account-id"] == str(new.mixpanel_account_id)
    assert old.mixpanel_account_id in aws_bot.mixpanel.accounts  # deleted only when its owner confirms
    for token in aws_bot.mixpanel.tokens.values():
        assert_token_nowhere_but_the_store(aws_bot, token, debug_logs)


@pytest.mark.parametrize("tamper", ["retagged", "new value"])
def test_aws_replace_never_overwrites_a_secret_someone_else_put_there(aws_bot, aws, tamper):
    create(aws_bot, to_store("aws-prod"))
    [old] = aws_bot.runtime.manage.records.delivered(ALICE)
    client = aws.client()
    if tamper == "retagged":  # the tags no longer say it is the bot's write for the old account
        client.tag_resource(
            SecretId="mixpanel/etl-nightly", Tags=[{"Key": "mixpanel-account-id", "Value": "1"}]
        )
    else:  # someone put their own value; the tags stay as the bot left them
        client.put_secret_value(SecretId="mixpanel/etl-nightly", SecretString='{"hand": "written"}')
    puts_before = aws.proxy.actions().count("PutSecretValue")
    form = open_replace(aws_bot, old.id)
    values = form_values(projects=[3001], expires_on=clock.form_expiry(60))
    aws_bot.submit(form, values)
    aws_bot.wait_idle()

    assert aws.proxy.actions().count("PutSecretValue") == puts_before
    if tamper == "new value":
        assert (
            client.get_secret_value(SecretId="mixpanel/etl-nightly")["SecretString"] == '{"hand": "written"}'
        )
    assert list(aws_bot.mixpanel.accounts) == [old.mixpanel_account_id]  # the new one deleted again


def aws_policy(aws) -> Policy:
    return Policy(
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


def test_no_aws_credentials_stop_the_start_naming_the_destination(bots, aws, monkeypatch, tmp_path):
    from bot.settings import SettingsError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    with pytest.raises(SettingsError, match=r"destination aws-prod \(aws_secrets_manager\): AWS credentials"):
        bots.start(policy=aws_policy(aws))


def test_doctor_checks_aws_with_sts_and_a_dry_list_writing_nothing(bots, aws, monkeypatch):
    from bot.doctor.destination_checks import destination_checks
    from bot.doctor.report import Status

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", aws.credentials["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws.credentials["aws_secret_access_key"])
    [result] = destination_checks(aws_policy(aws), bots.settings())
    assert result.status is Status.PASS
    assert set(aws.proxy.actions()) == {"GetCallerIdentity", "ListSecrets"}

    aws.proxy.deny_next(1, action="ListSecrets")
    [result] = destination_checks(aws_policy(aws), bots.settings())
    assert result.status is Status.FAIL and "AccessDeniedException" in result.found
