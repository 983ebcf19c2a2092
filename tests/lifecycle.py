"""Shared by the lifecycle tests: a bot with admins and an audit channel, and ways to drive it."""

from __future__ import annotations

import json

import pytest

from bot.db.schema import AuditEvent, RequestState, StoredRequest
from bot.manage.views import ACTION_DELETE, ACTION_REPLACE
from bot.policy.file import PersonSelector, Policy
from tests import clock
from tests.conftest import ALICE, GENERAL, RunningBot, form_values

BOB = "UBOB"
ADMIN = "UADMIN"
AUDIT = "C0AUDIT"
POLICY = Policy(admins=PersonSelector(users=[ADMIN]), audit_channel=AUDIT)


@pytest.fixture
def managed(bots, slack) -> RunningBot:
    slack.add_user(BOB, tz="UTC", name="bob")
    slack.add_user(ADMIN, tz="UTC", name="admin")
    return bots.start(policy=POLICY)


def mint(
    bot: RunningBot, user: str = ALICE, username: str = "etl-nightly", days: int | None = 30
) -> StoredRequest:
    """Create an account the way a person does (`days` None: one that never expires, where the policy
    allows it), and return its stored request once delivered."""
    _, view, _ = bot.open_form(user)
    expiry = None if days is None else clock.form_expiry(days)
    values = form_values(username=username, projects=[3001, 3002], expires_on=expiry, never=days is None)
    ack = bot.submit(view, values, user)
    assert ack.status == 200
    bot.wait_idle()
    delivered = [
        r
        for r in bot.runtime.manage.records.delivered(user)
        if r.username == username and r.state is RequestState.DELIVERED
    ]
    assert len(delivered) == 1, delivered
    return delivered[-1]


def run_list(bot: RunningBot, user: str = ALICE, text: str = "list") -> dict:
    """Type the command; return the private answer posted to its response_url."""
    url = bot.slack.new_response_url()
    result = bot.sender.slash_command(user, text=text, response_url=url)
    assert result.status == 200 and result.elapsed < 3
    return bot.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1].args


def text_of(message: dict) -> str:
    return json.dumps(message.get("blocks") or message.get("text"), ensure_ascii=False)


def delete_buttons(message: dict) -> dict[str, dict]:
    """Each account section's Delete button, by the account's block id."""
    return {
        block["block_id"]: block["accessory"]
        for block in message.get("blocks", [])
        if block.get("accessory", {}).get("action_id") == ACTION_DELETE
    }


def click_delete(bot: RunningBot, user: str, button: dict, block_id: str = "mine:0", response_url=None):
    return bot.sender.block_actions(
        user_id=user,
        actions=[{"action_id": ACTION_DELETE, "block_id": block_id, "value": button["value"]}],
        channel_id=GENERAL,
        response_url=response_url or bot.slack.new_response_url(),
    )


def audit_events(bot: RunningBot, *events: AuditEvent) -> list[dict]:
    wanted = {str(event) for event in events}
    return [row for row in bot.store.audit_trail() if row["event"] in wanted]


def assert_within_block_kit(message: dict) -> None:
    """Slack refuses a whole message if one block breaks its limits: check each block as slack_sdk does,
    and each confirmation dialog's text (at most 300 characters), which slack_sdk leaves unchecked."""
    from slack_sdk.models.blocks import Block

    for block in message.get("blocks") or []:
        Block.parse(block).validate_json()

    def confirms(node):
        if isinstance(node, dict):
            if isinstance(node.get("confirm"), dict) and "title" in node["confirm"]:  # a confirmation dialog
                yield node["confirm"]
            for value in node.values():
                yield from confirms(value)
        elif isinstance(node, list):
            for value in node:
                yield from confirms(value)

    for confirm in confirms(message):
        assert len(confirm["text"]["text"]) <= 300, confirm


def click_replace(bot, user: str, value: str, response_url: str | None = None):
    """Replace… on the account list (``value`` as the button carries it, "r:<request id>")."""
    return bot.sender.block_actions(
        user_id=user,
        actions=[{"action_id": ACTION_REPLACE, "block_id": "mine:1:more", "value": value}],
        channel_id=GENERAL,
        response_url=response_url or bot.slack.new_response_url(),
    )


def open_replace(bot, request_id: str, user: str = ALICE) -> dict:
    """Click Replace… on `request_id`; return the prefilled form it opened."""
    return bot.slack.opened_by(click_replace(bot, user, f"r:{request_id}").trigger_id).response["view"]
