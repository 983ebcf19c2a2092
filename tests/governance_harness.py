"""What the governance tests share: the bot with a governance policy on an injected clock, and ways to
read what the Slack fake received and to click what it shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.policy.file import GovernancePolicy, PersonSelector, Policy
from tests.conftest import dump_database
from tests.lifecycle import ADMIN, AUDIT, BOB, text_of

CAROL = "UCAROL"  # in the successor group
DAVE = "UDAVE"  # a member, but not in it
SUCCESSORS = "S0DATA"
DAY = timedelta(days=1)


class Clock:
    """One clock per test: the app's, set by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def start(bots, slack, **governance) -> tuple:
    slack.add_user(BOB, tz="UTC", name="bob")
    slack.add_user(ADMIN, tz="UTC", name="admin")
    slack.add_user(CAROL, tz="UTC", name="carol")
    slack.add_user(DAVE, tz="UTC", name="dave")
    slack.set_usergroup(SUCCESSORS, [CAROL])
    policy = Policy(
        admins=PersonSelector(users=[ADMIN]), audit_channel=AUDIT, governance=GovernancePolicy(**governance)
    )
    bot = bots.start(policy=policy)
    clock = Clock()
    return bot, clock


def on_clock(bot, clock: Clock) -> None:
    bot.runtime.manage.d.clock = clock  # every flow shares these dependencies


def dms(bot, user: str) -> list[dict]:
    return [
        c.args
        for c in bot.slack.calls("chat.postMessage")
        if c.args.get("channel") == "D" + user and c.response and c.response.get("ok")
    ]


def posts_to(bot, channel: str, words: str) -> list[dict]:
    return [
        c.args
        for c in bot.slack.calls("chat.postMessage")
        if c.args.get("channel") == channel and words in json.dumps(c.args)
    ]


def button(message: dict, action_id: str) -> tuple[str, dict]:
    for block in message.get("blocks", []):
        for element in block.get("elements", []) + ([block["accessory"]] if "accessory" in block else []):
            if element.get("action_id") == action_id:
                return block["block_id"], element
    raise AssertionError(f"no {action_id} in {message}")


def press(bot, user: str, message: dict, action_id: str, *, value: str | None = None, url: str = ""):
    """Click a button of ``message`` as ``user``; return the app's answer (its trigger_id included)."""
    block_id, element = button(message, action_id)
    result = bot.sender.block_actions(
        user_id=user,
        actions=[{"action_id": action_id, "block_id": block_id, "value": value or element["value"]}],
        channel_id="D" + user,
        response_url=url or bot.slack.new_response_url(),
    )
    assert result.status == 200 and result.elapsed < 3
    return result


def click(bot, user: str, message: dict, action_id: str, *, value: str | None = None) -> str:
    """Click a button; return the response_url the app answers at."""
    url = bot.slack.new_response_url()
    press(bot, user, message, action_id, value=value, url=url)
    return url


def answer_at(bot, url: str) -> str:
    return text_of(
        bot.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1].args
    )


def no_token_anywhere(bot, since: int = 0) -> None:
    """No token in anything Slack received after `since` calls (the token's own private delivery comes
    before), nor in the database."""
    text = json.dumps([c.args for c in bot.slack.calls()[since:]]) + dump_database(bot.store)
    assert bot.mixpanel.created_tokens()
    assert all(token not in text for token in bot.mixpanel.created_tokens())


def opened_view(bot, clicked) -> dict:
    """The modal a click (a SlackResult) opened."""
    opened = bot.slack.opened_by(clicked.trigger_id)
    assert opened.response["ok"], opened.response
    return opened.response["view"]


def lookups_of(bot, user_id: str) -> int:
    return len([c for c in bot.slack.calls("users.info") if c.args.get("user") == user_id])


def user_change(bot, user: dict):
    """Send the event; return once the bot has looked the person up again and finished what followed."""
    before = lookups_of(bot, user["id"])
    result = bot.sender.event_callback({"type": "user_change", "user": user, "event_ts": "1700000000.1"})
    assert result.status == 200 and result.elapsed < 3
    bot.slack.wait_for(
        lambda c: c.method == "users.info" and c.args.get("user") == user["id"], count=before + 1
    )
    bot.wait_idle()
