"""An account whose token was shown in Slack is not rotated; its expiry reminder offers Move into a secret
store…: Replace… with only the secret stores on offer. The replacement then lives in the store."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.create import views
from bot.manage.views import ACTION_MOVE_TO_STORE
from tests import clock
from tests.conftest import ALICE, form_values
from tests.fakes.vault import FakeVault
from tests.lifecycle import mint as mint_in_slack
from tests.rotation_harness import rotating_bot


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def reminder_buttons(bot) -> dict[str, dict]:
    [reminder] = [c for c in bot.slack.calls("chat.postMessage") if c.args.get("channel") == "D" + ALICE]
    return {
        element["action_id"]: element
        for block in reminder.args["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    }


def test_the_reminder_offers_a_move_into_a_store_and_the_replacement_lands_there(bots, vault, slack):
    bot, _ = rotating_bot(bots, vault, slack)
    old = mint_in_slack(bot, days=20)
    bot.runtime.reminders.run_once(old.expires_at - timedelta(days=6))
    move = reminder_buttons(bot)[ACTION_MOVE_TO_STORE]

    result = bot.sender.block_actions(
        user_id=ALICE,
        actions=[{"action_id": ACTION_MOVE_TO_STORE, "block_id": "reminder", "value": move["value"]}],
        trigger_id=slack.issue_trigger_id(),
        channel_id="D" + ALICE,
        response_url=slack.new_response_url(),
    )
    assert result.status == 200 and result.elapsed < 3
    view = slack.opened_by(result.trigger_id).response["view"]
    [deliver] = [block for block in view["blocks"] if block.get("block_id") == views.BLOCK_DESTINATION]
    assert [option["value"] for option in deliver["element"]["options"]] == ["etl-vault"]  # no "To me"

    values = form_values(expires_on=clock.form_expiry(30), projects=[3001, 3002])
    values[views.BLOCK_DESTINATION] = "etl-vault"
    values[views.BLOCK_SECRET_NAME] = "etl-nightly"
    ack = bot.submit(view, values)
    assert ack.status == 200
    bot.wait_idle()

    stored = vault.secret("secret", "mixpanel/etl-nightly")
    assert stored is not None and stored["account_id"] != old.mixpanel_account_id
    [new] = [r for r in bot.runtime.manage.records.delivered(ALICE) if r.destination == "etl-vault"]
    assert new.replaces_request_id == old.id
    assert stored["secret"] not in json.dumps([c.args for c in slack.calls()])


def test_an_account_already_in_a_store_is_not_offered_the_move(bots, vault, slack):
    from tests.rotation_harness import mint

    bot, _ = rotating_bot(bots, vault, slack)
    old = mint(bot)
    bot.runtime.reminders.run_once(old.expires_at - timedelta(days=6))
    assert ACTION_MOVE_TO_STORE not in reminder_buttons(bot)
