"""Destinations and approvals through the wire: a request that needs someone's yes, or breaks glass, keeps
its destination from the form to the store, and is judged again with it."""

from __future__ import annotations

import json

import pytest

from bot.approve import messages as text
from bot.create import views
from bot.policy.file import DestinationPolicy, DestinationRequirement
from tests.conftest import ALICE, dump_database
from tests.fakes.vault import FakeVault
from tests.test_approvals import (
    APPROVER,
    approval_policy,
    approve_and_get_claim,
    approver_posts,
    button_value,
    choices,
    claim,
    people,
    state,
)
from tests.test_destinations import VAULT_POLICY

__all__ = ["people"]  # a fixture


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def start(bots, vault, **options):
    # The store is required for admin accounts, the ones that need approval here.
    policy = approval_policy(**options).model_copy(
        update={
            "destinations": [DestinationPolicy(name="etl-vault", kind="vault_kv2", url=vault.url)],
            "destination_required": DestinationRequirement(roles=["admin"]),
        }
    )
    return bots.start(policy=policy, slack_cache_seconds=0, vault_token=vault.add_token(policy=VAULT_POLICY))


def admin_to_vault(reason: str) -> dict:
    values = choices()
    values[views.BLOCK_REASON] = reason
    values[views.BLOCK_DESTINATION] = "etl-vault"
    values[views.BLOCK_SECRET_NAME] = "etl-nightly"
    return values


def assert_only_in_vault(bot, vault, token: str) -> None:
    assert vault.secret("secret", "mixpanel/etl-nightly")["secret"] == token
    assert all(token not in json.dumps(call.args, default=str) for call in bot.slack.calls())
    assert token not in dump_database(bot.store)


def test_an_approved_request_is_claimed_into_its_store(bots, people, vault):
    bot = start(bots, vault)
    _, view, _ = bot.open_form(ALICE)
    assert (
        bot.submit(view, admin_to_vault("The nightly export needs admin")).json()["response_action"]
        == "update"
    )
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and approver_posts(bot))
    request_id = button_value(approver_posts(bot)[-1].args, text.ACTION_APPROVE)
    approve_and_get_claim(bot, request_id)

    claim(bot, ALICE, request_id)

    bot.slack.wait_for(
        lambda c: c.method == "views.update" and "Stored in Vault etl-vault" in json.dumps(c.args)
    )
    bot.wait_idle()
    assert state(bot, request_id) == "delivered"
    [token] = bot.mixpanel.created_tokens()
    assert_only_in_vault(bot, vault, token)


def test_break_glass_keeps_the_destination(bots, people, vault):
    bot = start(bots, vault, channel=None, break_glass=True)
    _, view, _ = bot.open_form(APPROVER)
    values = admin_to_vault("Production incident")
    values[views.BLOCK_BREAK_GLASS] = [views.BREAK_GLASS_VALUE]

    ack = bot.submit(view, values, user_id=APPROVER)

    assert "Break glass" in json.dumps(ack.json())
    bot.wait_idle()
    [token] = bot.mixpanel.created_tokens()
    assert_only_in_vault(bot, vault, token)
