"""Vault destinations through the wire with AppRole and namespaces (tests/test_destinations.py has the
VAULT_TOKEN cases): the fake answers as Vault's API docs say, and records every call."""

from __future__ import annotations

from bot.policy.file import DestinationPolicy, Policy
from tests.conftest import ALICE
from tests.fakes.vault import FakeVault
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
