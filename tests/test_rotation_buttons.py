"""The rotation's buttons through the wire: Rotate now in the account list, Keep the old one a day longer
in the owner's DM; each judged again on the server, a forged or stale click changing nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.rotate.messages import ACTION_KEEP_LONGER, ACTION_ROTATE_NOW
from bot.rotate.states import RotationState
from tests.conftest import ALICE, GENERAL
from tests.fakes.vault import FakeVault
from tests.lifecycle import run_list, text_of
from tests.rotation_harness import dms_to, due, mint, rotating_bot, rotation_of, run
from tests.test_home import open_home

BOB = "UBOB"


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def buttons(message: dict, action_id: str) -> list[dict]:
    return [
        element
        for block in message.get("blocks", [])
        for element in block.get("elements", [])
        if element.get("action_id") == action_id
    ]


def click(bot, user: str, action_id: str, value: str, channel: str = GENERAL) -> str:
    """Click; return what the clicker was told."""
    url = bot.slack.new_response_url()
    result = bot.sender.block_actions(
        user_id=user,
        actions=[{"action_id": action_id, "block_id": "rotation", "value": value}],
        channel_id=channel,
        response_url=url,
    )
    assert result.status == 200 and result.elapsed < 3
    answer = bot.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    bot.wait_idle()  # what the click started (Rotate now's rotation)
    return str(answer.args)


def test_the_list_shows_the_next_rotation_and_rotate_now_rotates_at_once(bots, vault, slack):
    bot, _ = rotating_bot(bots, vault, slack)
    old = mint(bot)
    listing = run_list(bot)
    assert f"rotates {old.expires_at - timedelta(days=14):%Y-%m-%d}" in text_of(listing)
    [button] = buttons(listing, ACTION_ROTATE_NOW)
    assert button["value"] == old.id  # only an id

    told = click(bot, ALICE, ACTION_ROTATE_NOW, button["value"])

    assert "Rotating" in told
    assert rotation_of(bot, old).state is RotationState.OVERLAPPING  # weeks before it was due
    assert "rotated; the old account is deleted soon" in text_of(run_list(bot))
    home = json.dumps(open_home(bot))
    assert "rotated; the old account is deleted soon" in home and ACTION_ROTATE_NOW in home


def test_rotate_now_by_someone_else_or_for_an_unknown_id_changes_nothing(bots, vault, slack):
    slack.add_user(BOB, tz="UTC", name="bob")
    bot, _ = rotating_bot(bots, vault, slack)
    old = mint(bot)

    assert "no_entry" in click(bot, BOB, ACTION_ROTATE_NOW, old.id)
    assert "not one the bot rotates" in click(bot, ALICE, ACTION_ROTATE_NOW, "f" * 32)

    assert bot.runtime.rotation.rotations.get(old.id) is None
    assert len(bot.mixpanel.create_calls()) == 1


def test_keep_the_old_one_a_day_longer_postpones_the_deletion_once_per_click(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack, overlap_hours=24)
    old = mint(bot)
    due(old, clock)
    run(bot)
    [written] = [text for text in dms_to(bot, ALICE) if ACTION_KEEP_LONGER in text]
    assert old.id in written

    told = click(bot, ALICE, ACTION_KEEP_LONGER, old.id, channel="D" + ALICE)

    kept_until = rotation_of(bot, old).kept_until
    assert kept_until == rotation_of(bot, old).verified_at + timedelta(hours=24) + timedelta(days=1)
    assert f"{kept_until:%Y-%m-%d %H:%M}" in told
    clock.advance(hours=25)
    assert run(bot) == []  # the overlap has passed, but the old one is kept
    assert old.mixpanel_account_id in bot.mixpanel.accounts
    clock.at = kept_until + timedelta(minutes=1)
    assert run(bot) == [RotationState.OLD_DELETED]

    assert "no longer waiting" in click(bot, ALICE, ACTION_KEEP_LONGER, old.id, channel="D" + ALICE)
    assert [row["actor_id"] for row in bot.store.audit_trail() if row["event"] == "rotation_kept_longer"] == [
        ALICE
    ]
