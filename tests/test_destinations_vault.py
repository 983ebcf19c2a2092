"""Vault destinations through the wire with AppRole and namespaces (tests/test_destinations.py has the
VAULT_TOKEN cases): the fake answers as Vault's API docs say, and records every call."""

from __future__ import annotations

import json

from bot.policy.file import DestinationPolicy, Policy
from tests import clock
from tests.conftest import ALICE, form_values
from tests.fakes.vault import FakeVault
from tests.lifecycle import open_replace
from tests.test_destinations import (
    VAULT_POLICY,
    assert_token_nowhere_but_the_store,
    create,
    the_account,
    to_store,
    told,
)

NAMESPACE = "eng/etl"


def vault_policy(vault: FakeVault) -> Policy:
    return Policy(
        destinations=[
            DestinationPolicy(
                name="etl-vault", kind="vault_kv2", url=vault.url, mount="secret", path_prefix="mixpanel/"
            )
        ]
    )


def test_approle_logs_in_on_first_use_and_its_token_never_leaks(bots, debug_logs):
    with FakeVault() as vault:
        role_id, secret_id = vault.add_approle(policy=VAULT_POLICY)
        bot = bots.start(policy=vault_policy(vault), vault_role_id=role_id, vault_secret_id=secret_id)
        assert vault.calls("POST", "auth/approle/login") == [], (
            "logged in at start: a down Vault would stop it"
        )

        _, url = create(bot, to_store("etl-vault"))

        [login] = vault.logins
        writes = vault.calls("POST", "/data/mixpanel/etl-nightly")
        assert writes and all(c.headers.get("X-Vault-Token") == login for c in writes)
        _, token = the_account(bot)
        assert vault.secret("secret", "mixpanel/etl-nightly")["secret"] == token
        assert "Stored in Vault etl-vault at secret/mixpanel/etl-nightly (version 1)" in told(bot, url)
        for leaked in (token, login, secret_id):
            assert_token_nowhere_but_the_store(bot, leaked, debug_logs)


def test_an_approle_token_vault_no_longer_takes_is_renewed_by_logging_in_again(bots):
    with FakeVault() as vault:
        role_id, secret_id = vault.add_approle(policy=VAULT_POLICY)
        bot = bots.start(policy=vault_policy(vault), vault_role_id=role_id, vault_secret_id=secret_id)
        create(bot, to_store("etl-vault"))
        vault.revoke_token(vault.logins[0])  # as when its TTL runs out

        _, url = create(bot, to_store("etl-vault", secret_name="etl-hourly"))

        assert len(vault.logins) == 2
        [second] = [r for r in bot.runtime.manage.records.delivered(ALICE) if r.secret_name == "etl-hourly"]
        stored = vault.secret("secret", "mixpanel/etl-hourly")
        assert stored["account_id"] == second.mixpanel_account_id
        assert len(vault.calls("POST", "/data/mixpanel/etl-hourly")) == 1  # the refused try wrote nothing
        assert "Stored in Vault etl-vault at secret/mixpanel/etl-hourly" in told(bot, url)


def test_a_namespace_goes_with_every_call_and_the_secret_lands_inside_it(bots, debug_logs):
    with FakeVault(namespace=NAMESPACE) as vault:
        token = vault.add_token(policy=VAULT_POLICY)
        bot = bots.start(policy=vault_policy(vault), vault_token=token, vault_namespace=NAMESPACE)

        _, url = create(bot, to_store("etl-vault"))

        calls = vault.calls(path_contains="/mixpanel/etl-nightly")
        assert calls and all(c.headers.get("X-Vault-Namespace") == NAMESPACE for c in calls)
        _, secret = the_account(bot)
        assert vault.secret("secret", "mixpanel/etl-nightly")["secret"] == secret
        assert "Stored in Vault etl-vault" in told(bot, url)
        assert_token_nowhere_but_the_store(bot, secret, debug_logs)


def test_without_its_namespace_a_namespaced_vault_refuses_and_the_account_is_deleted(bots):
    with FakeVault(namespace=NAMESPACE) as vault:
        token = vault.add_token(policy=VAULT_POLICY)
        bot = bots.start(policy=vault_policy(vault), vault_token=token)  # VAULT_NAMESPACE forgotten

        _, url = create(bot, to_store("etl-vault"))

        assert vault.secret("secret", "mixpanel/etl-nightly") is None
        assert len(bot.mixpanel.create_calls()) == 1 and bot.mixpanel.accounts == {}
        assert "could not store its token in etl-vault (the bot is not allowed to write there)" in told(
            bot, url
        )


def _replace(bot, old) -> None:
    """Click Replace… on `old` in the list and submit the form it opens."""
    form = open_replace(bot, old.id)
    values = form_values(projects=[3001], expires_on=clock.form_expiry(60))
    bot.submit(form, values)
    bot.wait_idle()


def test_replace_never_overwrites_a_version_someone_else_added_over_the_bots_secret(bots):
    with FakeVault() as vault:
        bot = bots.start(policy=vault_policy(vault), vault_token=vault.add_token(policy=VAULT_POLICY))
        create(bot, to_store("etl-vault"))
        [old] = bot.runtime.manage.records.delivered(ALICE)
        # A person adds a version by hand; the key's custom_metadata (the bot's mark) stays as it was.
        vault.seed("secret", "mixpanel/etl-nightly", {"hand": "written"})

        _replace(bot, old)

        assert vault.secret("secret", "mixpanel/etl-nightly") == {"hand": "written"}
        assert len(vault.versions("secret", "mixpanel/etl-nightly")) == 2
        assert list(bot.mixpanel.accounts) == [old.mixpanel_account_id]  # the new account deleted again


def test_a_replace_whose_mark_cannot_be_set_keeps_the_new_account_it_wrote(bots):
    with FakeVault() as vault:
        bot = bots.start(policy=vault_policy(vault), vault_token=vault.add_token(policy=VAULT_POLICY))
        create(bot, to_store("etl-vault"))
        [old] = bot.runtime.manage.records.delivered(ALICE)
        vault.fail_next(2, status=503, method="POST", path_contains="/metadata/mixpanel/etl-nightly")

        _replace(bot, old)

        new = next(r for r in bot.runtime.manage.records.delivered(ALICE) if r.id != old.id)
        current = vault.secret("secret", "mixpanel/etl-nightly")
        # The store's current version is the new account, and that account is alive: never a dead one.
        assert current["account_id"] == new.mixpanel_account_id
        assert current["secret"] == bot.mixpanel.tokens[new.mixpanel_account_id]
        assert new.mixpanel_account_id in bot.mixpanel.accounts


# --- Socket Mode ---------------------------------------------------------------------------------------


def test_socket_mode_stores_in_vault_and_refuses_a_taken_name_in_the_ack(bots, slack, debug_logs):
    import time

    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from app import create_app
    from bot.create import views
    from tests.fakes.socket_mode import FakeSocketModeServer
    from tests.slack_requests import build_payload_slash_command, build_payload_view_submission

    app_token = "xapp-1-A1-test-app-token"
    with FakeVault() as vault, FakeSocketModeServer() as socket_mode:
        slack.socket_mode_url, slack.app_token = socket_mode.url, app_token
        bot = bots.start(policy=vault_policy(vault), vault_token=vault.add_token(policy=VAULT_POLICY))
        handler = SocketModeHandler(create_app(bot.runtime), app_token=app_token)
        handler.connect()
        try:

            def submit(values: dict) -> tuple[dict, float]:
                response_url = slack.new_response_url()
                command = build_payload_slash_command(ALICE, response_url=response_url)
                socket_mode.send_envelope("slash_commands", command)
                opened = slack.opened_by(command["trigger_id"])
                payload = build_payload_view_submission(opened.response["view"], user_id=ALICE, values=values)
                started = time.monotonic()
                ack = socket_mode.send_envelope("interactive", payload)
                return ack, time.monotonic() - started

            ack, elapsed = submit(to_store("etl-vault"))
            assert ack["payload"]["response_action"] == "update" and elapsed < 3
            bot.wait_idle()
            _, token = the_account(bot)
            assert vault.secret("secret", "mixpanel/etl-nightly")["secret"] == token

            ack, elapsed = submit(to_store("etl-vault"))
            assert ack["payload"]["response_action"] == "errors" and elapsed < 3
            assert "already exists in etl-vault" in ack["payload"]["errors"][views.BLOCK_SECRET_NAME]
        finally:
            handler.close()
        bot.wait_idle()
        assert len(bot.mixpanel.create_calls()) == 1
        assert all(token not in json.dumps(message) for message in socket_mode.received)
        assert_token_nowhere_but_the_store(bot, token, debug_logs)


def test_a_replace_into_a_store_no_longer_open_to_the_person_is_refused_in_the_modal(bots):
    with FakeVault() as vault:
        token = vault.add_token(policy=VAULT_POLICY)
        first = bots.start(policy=vault_policy(vault), vault_token=token)
        create(first, to_store("etl-vault"))
        [old] = first.runtime.manage.records.delivered(ALICE)
        first.stop()
        bots.running.remove(first)
        # Today's policy: etl-vault is someone else's now.
        closed = Policy(
            destinations=[
                DestinationPolicy(
                    name="etl-vault", kind="vault_kv2", url=vault.url, allowed={"users": ["USOMEONEELSE"]}
                )
            ]
        )
        bot = bots.start(policy=closed, vault_token=token)
        form = open_replace(bot, old.id)
        values = form_values(projects=[3001], expires_on=clock.form_expiry(60))

        ack = bot.submit(form, values)

        answer = ack.json()
        assert answer["response_action"] == "update"
        assert "which you may no longer deliver to" in json.dumps(answer["view"])
        bot.wait_idle()
        assert len(bot.mixpanel.create_calls()) == 1  # only the first account
        assert len(vault.versions("secret", "mixpanel/etl-nightly")) == 1
