"""Rotation and Replace…: after a Replace… into the same secret, the secret holds the replacement, so the
replacement is the account rotated; the old one (kept until its owner deletes it) is not rotated, because
writing over a secret that is no longer its own is refused, and would stop it as a failure every day."""

from __future__ import annotations

import pytest

from bot.rotate.messages import ACTION_ROTATE_NOW
from bot.rotate.states import RotationState
from tests import clock as test_clock
from tests.conftest import ALICE, form_values
from tests.fakes.vault import FakeVault
from tests.lifecycle import open_replace
from tests.rotation_harness import ADMIN, SECRET_PATH, dms_to, due, mint, rotating_bot, run, successor_of
from tests.test_rotation_buttons import click

S = RotationState


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Both databases: the compare-and-set and the join below are SQL of their own."""
    return request.getfixturevalue("fresh_postgres_url") if request.param == "postgresql" else None


def replace_into_its_secret(bot, request_id: str, user: str = ALICE) -> None:
    """Replace… on the account list, and the form sent as it opens (the same secret, a new version)."""
    form = open_replace(bot, request_id, user)
    bot.submit(form, form_values(expires_on=test_clock.form_expiry(30)), user)
    bot.wait_idle()


def test_after_a_replace_only_the_account_its_secret_holds_is_rotated(bots, vault, slack, database_url):
    bot, clock = rotating_bot(bots, vault, slack, database_url=database_url)
    first = mint(bot)
    replace_into_its_secret(bot, first.id)
    [replacement] = [r for r in bot.runtime.manage.records.delivered(ALICE) if r.id != first.id]
    assert vault.secret("secret", SECRET_PATH)["account_id"] == replacement.mixpanel_account_id
    due(replacement, clock)  # both are due: the first expires no later than its replacement
    told_admin = len(dms_to(bot, ADMIN))

    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]

    assert (
        vault.secret("secret", SECRET_PATH)["account_id"]
        == successor_of(bot, replacement).mixpanel_account_id
    )
    assert bot.runtime.rotation.rotations.get(first.id) is None  # never tried, so never failed
    assert not any("could not be rotated" in dm for dm in dms_to(bot, ALICE))
    assert len(dms_to(bot, ADMIN)) == told_admin
    assert first.mixpanel_account_id in bot.mixpanel.accounts  # still its owner's to delete

    told = click(bot, ALICE, ACTION_ROTATE_NOW, first.id)
    assert "a newer account holds its secret" in told
    assert bot.runtime.rotation.rotations.get(first.id) is None
