"""Expiry reminders of accounts the bot rotates: no "replace it" while the rotation will do that, the usual
reminder once a rotation has stopped, and an old account a rotation kept (delete_old: never) is told as
replaced already, with Delete now only. Through the wire, with the rotation's clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.manage.views import ACTION_DELETE, ACTION_REPLACE
from bot.policy.file import ReminderPolicy
from bot.rotate.states import RotationState
from tests.conftest import ALICE
from tests.fakes.mixpanel import respond
from tests.fakes.vault import FakeVault
from tests.rotation_harness import due, mint, rotating_bot, run, successor_of
from tests.test_approvals import button_ids

S = RotationState


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def reminders_at(bot, days_before: list[int]) -> None:
    deps = bot.runtime.flow.d
    deps.policy = deps.policy.model_copy(update={"reminders": ReminderPolicy(days_before=days_before)})


def reminder_dms(bot, user: str = ALICE) -> list[dict]:
    return [
        call.args
        for call in bot.slack.calls("chat.postMessage")
        if call.args.get("channel") == "D" + user and ":alarm_clock:" in str(call.args.get("text"))
    ]


def test_an_account_the_bot_will_rotate_gets_no_replace_reminder_until_its_rotation_stops(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack, days_before_expiry=14)
    reminders_at(bot, [20, 7])
    old = mint(bot)
    clock.at = old.expires_at - timedelta(days=19)  # the 20-day reminder is due; the rotation is not yet

    assert bot.runtime.reminders.run_once(clock()) == []
    assert reminder_dms(bot) == []

    bot.mixpanel.script("create", respond(400, {"status": "error", "error": "project 3001 is gone"}))
    due(old, clock)
    assert run(bot) == [S.FAILED]
    clock.at = old.expires_at - timedelta(days=6)

    sent = bot.runtime.reminders.run_once(clock())

    assert [(r.entry.account_id, r.days_before) for r in sent] == [(old.mixpanel_account_id, 7)]
    [reminder] = reminder_dms(bot)
    assert ACTION_REPLACE in button_ids(reminder)  # the rotation stopped: replacing is the owner's again


def test_an_old_account_a_rotation_kept_is_reminded_as_replaced_with_delete_only(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack, delete_old="never", overlap_hours=1)
    reminders_at(bot, [7])
    old = mint(bot)
    due(old, clock)
    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING, S.OLD_KEPT]
    successor = successor_of(bot, old)
    clock.at = old.expires_at - timedelta(days=6)

    sent = bot.runtime.reminders.run_once(clock())

    assert [r.entry.account_id for r in sent] == [old.mixpanel_account_id]  # the successor is not due
    [reminder] = reminder_dms(bot)
    assert button_ids(reminder) == [ACTION_DELETE]
    text = str(reminder["blocks"])
    assert "It was rotated" in text and successor.mixpanel_username in text and "expires on its own" in text


def test_an_old_account_waiting_for_its_deletion_after_a_rotation_gets_no_reminder(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack, days_before_expiry=14, overlap_hours=24 * 10)
    reminders_at(bot, [7])
    old = mint(bot)
    due(old, clock)
    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]
    clock.at = old.expires_at - timedelta(days=6)  # still in its overlap: the rotation deletes it

    assert bot.runtime.reminders.run_once(clock()) == []
    assert reminder_dms(bot) == []


def test_an_account_whose_rotation_never_began_is_reminded_as_usual(bots, vault, slack):
    """No rotation job ran (none scheduled, no cron): a rotation more than a day overdue tells the owner."""
    bot, clock = rotating_bot(bots, vault, slack, days_before_expiry=14)
    reminders_at(bot, [7])
    old = mint(bot)
    clock.at = old.expires_at - timedelta(days=6)

    sent = bot.runtime.reminders.run_once(clock())

    assert [r.entry.account_id for r in sent] == [old.mixpanel_account_id]
    assert ACTION_REPLACE in button_ids(reminder_dms(bot)[0])
