"""An account made for less time than `days_before_expiry`: rotated once, after half its lifetime, and its
successor likewise; never a new account on every run."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.create import views
from bot.rotate.states import RotationState
from tests import clock as test_clock
from tests.conftest import ALICE, form_values
from tests.fakes.vault import FakeVault
from tests.rotation_harness import rotating_bot, run, successor_of
from tests.test_destinations import create

S = RotationState


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def test_a_short_lived_account_is_rotated_once_after_half_its_life_not_on_every_run(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack, days_before_expiry=14, overlap_hours=1)
    values = form_values(expires_on=test_clock.form_expiry(7))
    values[views.BLOCK_DESTINATION] = "etl-vault"
    values[views.BLOCK_SECRET_NAME] = "etl-nightly"
    create(bot, values)
    [old] = bot.runtime.manage.records.delivered(ALICE)
    half_life = old.created_at + (old.expires_at - old.created_at) / 2

    for _ in range(3):  # hourly runs in its first day: nothing is due yet
        assert run(bot) == []
        clock.advance(hours=1)
    assert len(bot.mixpanel.create_calls()) == 1

    clock.at = half_life + timedelta(minutes=1)
    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]
    clock.advance(hours=2)
    assert run(bot) == [S.OLD_DELETED]  # and the successor, made for the same lifetime, is not due yet
    assert len(bot.mixpanel.create_calls()) == 2

    successor = successor_of(bot, old)
    clock.at = successor.created_at + (successor.expires_at - successor.created_at) / 2 + timedelta(minutes=1)
    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]
    assert len(bot.mixpanel.create_calls()) == 3
