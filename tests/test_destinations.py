"""Destinations through the wire: signed Slack requests in; the fakes of Slack, Mixpanel, Vault and GitHub
record what the bot sent. The token must reach the store, and nothing else."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from bot.create import views
from bot.db.schema import AuditEvent, RequestState
from bot.policy.file import DestinationPolicy, DestinationRequirement, Policy
from tests import clock
from tests.conftest import ALICE, MP_SECRET, dump_database, form_values
from tests.fakes.github import FakeGitHub
from tests.fakes.vault import FakeVault
from tests.lifecycle import open_replace

VAULT_POLICY = {
    "secret/data/mixpanel/*": ["create", "read", "update"],
    "secret/metadata/mixpanel/*": ["create", "read", "update"],
}
REPO = "acme/analytics"
GITHUB_TOKEN = "ghp-test-token"


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


@pytest.fixture
def github():
    with FakeGitHub(token=GITHUB_TOKEN, repos=(REPO,)) as fake:
        yield fake


def vault_bot(bots, vault, *, required: DestinationRequirement | None = None, token: str | None = None):
    policy = Policy(
        destinations=[
            DestinationPolicy(
                name="etl-vault", kind="vault_kv2", url=vault.url, mount="secret", path_prefix="mixpanel/"
            )
        ],
        destination_required=required,
    )
    return bots.start(policy=policy, vault_token=token or vault.add_token(policy=VAULT_POLICY))


def github_bot(bots, github):
    policy = Policy(
        destinations=[
            DestinationPolicy(
                name="gh-ci",
                kind="github_actions",
                repository=REPO,
                secret_name_prefix="MP_",
                api_url=github.url,
            )
        ]
    )
    return bots.start(policy=policy, github_token=GITHUB_TOKEN)


def to_store(destination: str, secret_name: str = "etl-nightly", **choices) -> dict:  # noqa: S107
    values = form_values(expires_on=clock.form_expiry(30), **choices)
    values[views.BLOCK_DESTINATION] = destination
    values[views.BLOCK_SECRET_NAME] = secret_name
    return values


def create(bot, values: dict, user: str = ALICE):
    _, view, url = bot.open_form(user)
    ack = bot.submit(view, values, user)
    assert ack.status == 200 and ack.elapsed < 3
    bot.wait_idle()
    return ack, url


def told(bot, url: str) -> str:
    return " ".join(json.dumps(c.args) for c in bot.slack.calls("response_url") if c.args["_url"] == url)


def assert_token_nowhere_but_the_store(bot, token: str, logs) -> None:
    assert all(token not in json.dumps(call.args) for call in bot.slack.calls())
    assert token not in dump_database(bot.store)
    assert token not in json.dumps(bot.store.audit_trail(), default=str)
    assert all(token not in record.getMessage() for record in logs.records)
    assert logs.records, "nothing was logged: the leak check would be vacuous"
    assert MP_SECRET not in logs.text


def the_account(bot) -> tuple[dict, str]:
    [account] = bot.mixpanel.accounts.values()
    return account, bot.mixpanel.tokens[account["id"]]


# --- Vault ---------------------------------------------------------------------------------------------


def test_vault_end_to_end_writes_reads_back_and_tells_where_never_what(bots, vault, debug_logs):
    bot = vault_bot(bots, vault)

    _, url = create(bot, to_store("etl-vault"))

    account, token = the_account(bot)
    stored = vault.secret("secret", "mixpanel/etl-nightly")
    assert stored["secret"] == token and stored["username"] == account["username"]
    assert stored["account_id"] == account["id"] and stored["organization_id"] == 1234
    assert stored["api_base"] == "https://mixpanel.com/api/app" and stored["expires_at"]
    assert vault.custom_metadata("secret", "mixpanel/etl-nightly")["mixpanel-account-id"] == str(
        account["id"]
    )
    assert vault.calls("GET", "/data/mixpanel/etl-nightly"), "the write was not read back"
    assert "Stored in Vault etl-vault at secret/mixpanel/etl-nightly (version 1)" in told(bot, url)
    [request] = bot.runtime.manage.records.delivered(ALICE)
    assert (request.destination, request.secret_name, request.secret_version) == (
        "etl-vault",
        "etl-nightly",
        "1",
    )
    delivered = [row for row in bot.store.audit_trail() if row["event"] == AuditEvent.TOKEN_DELIVERED]
    assert "etl-vault at secret/mixpanel/etl-nightly" in delivered[0]["detail"]
    assert_token_nowhere_but_the_store(bot, token, debug_logs)


def test_a_taken_name_is_refused_inline_and_nothing_is_created(bots, vault):
    bot = vault_bot(bots, vault)
    vault.seed("secret", "mixpanel/etl-nightly", {"someone": "else"})
    _, view, _ = bot.open_form()

    ack = bot.submit(view, to_store("etl-vault"))

    assert ack.json()["response_action"] == "errors"
    assert "already exists in etl-vault" in ack.json()["errors"][views.BLOCK_SECRET_NAME]
    bot.wait_idle()
    assert bot.mixpanel.create_calls() == []
    assert vault.secret("secret", "mixpanel/etl-nightly") == {"someone": "else"}


def test_a_name_taken_in_a_race_deletes_the_account_and_overwrites_nothing(bots, vault):
    bot = vault_bot(bots, vault)
    _, view, url = bot.open_form()
    # Taken between the inline look (which finds nothing) and the write.
    original = bot.runtime.flow.account_creation.secrets.put

    def seeded_first(*args, **kwargs):
        vault.seed("secret", "mixpanel/etl-nightly", {"someone": "else"})
        return original(*args, **kwargs)

    bot.runtime.flow.account_creation.secrets.put = seeded_first
    bot.submit(view, to_store("etl-vault"))
    bot.wait_idle()

    assert vault.secret("secret", "mixpanel/etl-nightly") == {"someone": "else"}
    assert bot.mixpanel.accounts == {}  # deleted again: no orphan
    assert "a secret of that name already exists there" in told(bot, url)


def test_a_403_deletes_the_account_and_says_so_in_one_sentence(bots, vault, debug_logs):
    bot = vault_bot(bots, vault, token=vault.add_token(policy={"secret/data/elsewhere/*": ["create"]}))

    _, url = create(bot, to_store("etl-vault"))

    assert len(bot.mixpanel.create_calls()) == 1
    assert bot.mixpanel.accounts == {}
    sentence = told(bot, url)
    assert "could not store its token in etl-vault (the bot is not allowed to write there)" in sentence
    assert "deleted the account again" in sentence and "Traceback" not in sentence
    [request] = (
        [r for r in bot.runtime.manage.records.all_requests() if r.requester_id == ALICE]
        if hasattr(bot.runtime.manage.records, "all_requests")
        else [None]
    )
    assert request is None or request.state is RequestState.DELETED


def test_an_unreachable_store_deletes_the_account(bots, vault):
    bot = vault_bot(bots, vault)
    _, view, url = bot.open_form()
    vault.stop()

    bot.submit(view, to_store("etl-vault"))
    bot.wait_idle()

    assert len(bot.mixpanel.create_calls()) == 1 and bot.mixpanel.accounts == {}
    assert "could not store its token in etl-vault (the bot could not reach it)" in told(bot, url)


def test_a_timeout_after_the_write_is_settled_by_reading_back_never_by_writing_twice(bots, vault):
    bot = vault_bot(bots, vault)
    vault.apply_then_drop(1, method="POST", path_contains="/data/mixpanel/etl-nightly")

    _, url = create(bot, to_store("etl-vault"))

    writes = vault.calls("POST", "/data/mixpanel/etl-nightly")
    assert len(writes) == 1
    _, token = the_account(bot)
    assert vault.secret("secret", "mixpanel/etl-nightly")["secret"] == token
    assert "Stored in Vault etl-vault at secret/mixpanel/etl-nightly (version 1)" in told(bot, url)
    [request] = bot.runtime.manage.records.delivered(ALICE)
    assert request.state is RequestState.DELIVERED


def test_a_timeout_where_nothing_landed_deletes_the_account(bots, vault):
    bot = vault_bot(bots, vault)
    vault.drop_next(1, method="POST", path_contains="/data/mixpanel/etl-nightly")

    _, url = create(bot, to_store("etl-vault"))

    assert vault.secret("secret", "mixpanel/etl-nightly") is None
    assert bot.mixpanel.accounts == {}
    assert "reading back showed nothing stored" in told(bot, url)


def test_a_required_destination_hides_to_me_and_refuses_a_forged_to_me(bots, vault):
    bot = vault_bot(bots, vault, required=DestinationRequirement(everyone=True))
    _, view, _ = bot.open_form()
    element = next(b for b in view["blocks"] if b.get("block_id") == views.BLOCK_DESTINATION)["element"]
    assert [o["value"] for o in element["options"]] == ["etl-vault"]

    forged = to_store(views.TO_ME_VALUE)
    ack = bot.submit(view, forged)

    assert ack.json()["response_action"] == "errors"
    assert views.BLOCK_DESTINATION in ack.json()["errors"]
    bot.wait_idle()
    assert bot.mixpanel.create_calls() == []


def test_replace_writes_a_new_version_of_the_same_secret_and_keeps_the_old_account(bots, vault, debug_logs):
    bot = vault_bot(bots, vault)
    create(bot, to_store("etl-vault"))
    [old] = bot.runtime.manage.records.delivered(ALICE)
    form = open_replace(bot, old.id)
    assert "new version of the same secret" in json.dumps(form)

    values = form_values(projects=[3001], expires_on=clock.form_expiry(60))
    bot.submit(form, values)
    bot.wait_idle()

    versions = vault.versions("secret", "mixpanel/etl-nightly")
    assert len(versions) == 2
    new = next(r for r in bot.runtime.manage.records.delivered(ALICE) if r.id != old.id)
    assert versions[-1]["data"]["account_id"] == new.mixpanel_account_id
    assert versions[-1]["data"]["secret"] == bot.mixpanel.tokens[new.mixpanel_account_id]
    assert vault.calls("POST", "/data/mixpanel/etl-nightly")[-1].json["options"] == {"cas": 1}
    assert old.mixpanel_account_id in bot.mixpanel.accounts  # deleted only when its owner confirms
    offer = bot.slack.wait_for(
        lambda c: c.method == "response_url" and "Delete the old account" in json.dumps(c.args)
    )
    assert offer
    for token in bot.mixpanel.tokens.values():
        assert_token_nowhere_but_the_store(bot, token, debug_logs)


def test_missing_credentials_stop_the_start_naming_the_destination_and_the_setting(bots, vault):
    from bot.settings import SettingsError

    policy = Policy(destinations=[DestinationPolicy(name="etl-vault", kind="vault_kv2", url=vault.url)])
    with pytest.raises(SettingsError) as stopped:
        bots.start(policy=policy)
    assert "destination etl-vault (vault_kv2): VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID" in str(
        stopped.value
    )


def test_destination_credentials_are_redacted_from_logs(bots, vault, caplog):
    token = vault.add_token(policy=VAULT_POLICY)
    vault_bot(bots, vault, token=token)
    caplog.set_level(logging.INFO)
    logging.getLogger("test").warning("leaking %s", token)
    assert token not in caplog.text


# --- GitHub --------------------------------------------------------------------------------------------


def test_github_end_to_end_seals_both_secrets_and_checks_the_metadata(bots, github, debug_logs):
    bot = github_bot(bots, github)

    _, url = create(bot, to_store("gh-ci"))

    account, token = the_account(bot)
    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_SECRET") == token  # the fake decrypted the sealed box
    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_USERNAME") == account["username"]
    assert github.calls("GET", "/actions/secrets/MP_ETL_NIGHTLY_SECRET")
    assert "Stored in GitHub Actions gh-ci at acme/analytics: MP_ETL_NIGHTLY_USERNAME and" in told(bot, url)
    assert_token_nowhere_but_the_store(bot, token, debug_logs)


def test_github_taken_name_is_refused_inline(bots, github):
    bot = github_bot(bots, github)
    create(bot, to_store("gh-ci"))
    _, view, _ = bot.open_form()

    ack = bot.submit(view, to_store("gh-ci"))

    assert "already exists in gh-ci" in ack.json()["errors"][views.BLOCK_SECRET_NAME]


# --- doctor --------------------------------------------------------------------------------------------


def test_doctor_checks_each_destination_without_writing(bots, vault, github):
    from bot.doctor.destination_checks import destination_checks
    from bot.doctor.report import Status

    policy = Policy(
        destinations=[
            DestinationPolicy(name="etl-vault", kind="vault_kv2", url=vault.url, path_prefix="mixpanel/"),
            DestinationPolicy(name="gh-ci", kind="github_actions", repository=REPO, api_url=github.url),
        ]
    )
    good = bots.settings(vault_token=vault.add_token(policy=VAULT_POLICY), github_token=GITHUB_TOKEN)
    assert [r.status for r in destination_checks(policy, good)] == [Status.PASS, Status.PASS]

    weak = bots.settings(vault_token=vault.add_token(policy={"secret/data/mixpanel/*": ["read"]}))
    vault_result, github_result = destination_checks(policy, weak)
    assert vault_result.status is Status.FAIL and "create" in vault_result.found
    assert github_result.status is Status.FAIL and "GITHUB_TOKEN" in github_result.found
    assert vault.calls("POST", "/data/") == [] and github.calls("PUT") == []


# --- the sweeper ---------------------------------------------------------------------------------------


def _as_if_the_run_died_before_recording(bot, request_id: str, *, write_began: bool) -> None:
    """The request as a run leaves it that crashed after the create (and, with write_began, after the
    write), before recording the delivery."""
    from sqlalchemy import update

    from bot.db.schema import REQUESTS

    values = {"state": str(RequestState.CREATED)}
    if not write_began:
        values["store_started_at"] = None
    with bot.store.engine.begin() as connection:
        connection.execute(update(REQUESTS).where(REQUESTS.c.id == request_id).values(values))


def test_the_sweeper_counts_a_secret_bearing_the_bots_mark_as_delivered(bots, vault):
    bot = vault_bot(bots, vault)
    create(bot, to_store("etl-vault"))
    [request] = bot.runtime.manage.records.delivered(ALICE)
    _as_if_the_run_died_before_recording(bot, request.id, write_began=True)

    bot.runtime.flow.sweep_stale(timedelta(0))

    assert bot.store.get(request.id).state is RequestState.DELIVERED
    assert request.mixpanel_account_id in bot.mixpanel.accounts
    assert bot.mixpanel.delete_calls() == []
    [notice] = direct_messages(bot)
    assert "Stored in Vault etl-vault at secret/mixpanel/etl-nightly (version 1)" in notice
    assert bot.mixpanel.tokens[request.mixpanel_account_id] not in notice


def direct_messages(bot, user: str = ALICE) -> list[str]:
    """The texts of the direct messages (chat.postMessage into the person's DM) the bot sent `user`."""
    dms = {
        c.response["channel"]["id"]
        for c in bot.slack.calls("conversations.open")
        if c.response and c.args.get("users") == user
    }
    return [
        c.args.get("text", "") for c in bot.slack.calls("chat.postMessage") if c.args.get("channel") in dms
    ]


def test_the_sweeper_deletes_an_account_whose_write_never_began_and_tells_the_requester(bots, vault):
    bot = vault_bot(bots, vault)
    create(bot, to_store("etl-vault"))
    [request] = bot.runtime.manage.records.delivered(ALICE)
    _as_if_the_run_died_before_recording(bot, request.id, write_began=False)

    bot.runtime.flow.sweep_stale(timedelta(0))

    assert bot.store.get(request.id).state is RequestState.DELETED
    assert request.mixpanel_account_id not in bot.mixpanel.accounts
    [notice] = direct_messages(bot)
    assert f"`{request.mixpanel_username}`" in notice and "before the token was stored in etl-vault" in notice
    assert "deleted the account again" in notice


def test_the_sweeper_tells_the_requester_the_same_for_a_lost_delivery_to_them(bots):
    bot = bots.start()
    values = form_values(expires_on=clock.form_expiry(30))
    create(bot, values)
    [request] = bot.runtime.manage.records.delivered(ALICE)
    _as_if_the_run_died_before_recording(bot, request.id, write_began=False)

    bot.runtime.flow.sweep_stale(timedelta(0))

    assert bot.store.get(request.id).state is RequestState.DELETED
    [notice] = direct_messages(bot)
    assert "before the token was delivered to you" in notice and "deleted the account again" in notice


# --- governance ----------------------------------------------------------------------------------------


def test_the_posture_counts_an_account_held_in_a_destination(bots, vault):
    bot = vault_bot(bots, vault)
    create(bot, to_store("etl-vault"))
    _, view, _ = bot.open_form(ALICE)
    bot.submit(view, form_values(username="to-me", expires_on=clock.form_expiry(30)))
    bot.wait_idle()

    counts = bot.runtime.governance.job.run_once(dry_run=True).counts

    assert counts["live"] == 2 and counts["in_destination"] == 1
    assert counts["rotated_on_schedule"] == 1  # rotation is on by default for accounts in a store
