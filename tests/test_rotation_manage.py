"""Rotation and a person's Delete: a successor deleted by its owner during the overlap leaves the old account
as the one that works, so the rotation keeps it (and says so) instead of deleting it too."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.db.schema import RequestState
from bot.rotate.states import RotationState
from tests.conftest import ALICE
from tests.fakes.vault import FakeVault
from tests.lifecycle import click_delete
from tests.rotation_harness import dms_to, due, mint, rotating_bot, run, successor_of
from tests.test_rotation_approval import wait_until

S = RotationState


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def test_a_successor_deleted_during_the_overlap_keeps_the_old_account(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack, overlap_hours=24)
    old = mint(bot)
    due(old, clock)
    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]
    successor = successor_of(bot, old)

    assert click_delete(bot, ALICE, {"value": f"r:{successor.id}"}).status == 200
    wait_until(lambda: bot.store.get(successor.id).state is RequestState.CLOSED)
    bot.wait_idle()
    clock.advance(hours=25)

    assert run(bot) == [S.OLD_KEPT]

    assert old.mixpanel_account_id in bot.mixpanel.accounts  # the one account that still works
    assert bot.store.get(old.id).state is RequestState.DELIVERED
    told = dms_to(bot, ALICE)[-1]
    assert successor.mixpanel_username in told and "kept" in told

    # Nothing replaces it now: its expiry reminder is the usual one, with Replace….
    reminders = bot.runtime.flow.d.policy.reminders.days_before
    clock.at = old.expires_at - timedelta(days=min(reminders)) + timedelta(minutes=1)
    sent = bot.runtime.reminders.run_once(clock())
    assert [r.entry.account_id for r in sent] == [old.mixpanel_account_id] and sent[0].rotated_to is None
