"""Rotation and governance: the current owner (StoredRequest.owner, a takeover's) is the rotation's owner, and
the successor's. Through the wire against the fakes; the takeover itself is governance's compare-and-set."""

from __future__ import annotations

import pytest

from bot.govern.store import GovernanceStore
from bot.rotate.states import RotationState
from tests.conftest import ALICE
from tests.fakes.vault import FakeVault
from tests.rotation_harness import dms_to, due, mint, rotating_bot, run, successor_of

S = RotationState
CAROL = "UCAROL"


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Both databases: the compare-and-set and the join below are SQL of their own."""
    return request.getfixturevalue("fresh_postgres_url") if request.param == "postgresql" else None


def take_over(bot, request, new_owner: str, now) -> None:
    governance = GovernanceStore(bot.store)
    current = bot.store.get(request.id)
    assert governance.open_ownership(current, detail="owner left", now=now)
    assert governance.take_over(current, former_owner=current.owner, new_owner=new_owner, now=now)


def test_an_account_taken_over_before_its_rotation_rotates_for_its_new_owner(bots, vault, slack):
    slack.add_user(CAROL, tz="UTC", name="carol")
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    take_over(bot, old, CAROL, clock())
    due(old, clock)
    told_alice = len(dms_to(bot, ALICE))

    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]

    successor = successor_of(bot, old)
    assert successor.owner == CAROL
    assert any(successor.mixpanel_username in dm for dm in dms_to(bot, CAROL))
    assert len(dms_to(bot, ALICE)) == told_alice  # the former owner hears nothing of it


def test_a_takeover_during_the_overlap_hands_the_successor_to_the_new_owner(bots, vault, slack, database_url):
    slack.add_user(CAROL, tz="UTC", name="carol")
    bot, clock = rotating_bot(bots, vault, slack, database_url=database_url, overlap_hours=24)
    old = mint(bot)
    due(old, clock)
    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]
    assert successor_of(bot, old).owner == ALICE
    take_over(bot, old, CAROL, clock())  # ALICE left while both accounts worked; CAROL took it over
    clock.advance(hours=25)

    assert run(bot) == [S.OLD_DELETED]

    successor = successor_of(bot, old)
    assert successor.owner == CAROL and successor.requester_id == ALICE
    assert "was deleted" in dms_to(bot, CAROL)[-1]
    changes = [
        r
        for r in bot.store.audit_trail()
        if r["event"] == "owner_changed" and r["request_id"] == successor.id
    ]
    assert len(changes) == 1 and changes[0]["actor_id"] == "rotation"


def test_a_successor_taken_over_on_its_own_is_not_handed_back(bots, vault, slack):
    slack.add_user(CAROL, tz="UTC", name="carol")
    bot, clock = rotating_bot(bots, vault, slack, overlap_hours=24)
    old = mint(bot)
    due(old, clock)
    run(bot)
    take_over(bot, successor_of(bot, old), CAROL, clock())  # the successor's owner changed, the old's not
    clock.advance(hours=25)

    assert run(bot) == [S.OLD_DELETED]

    assert successor_of(bot, old).owner == CAROL
    assert bot.store.get(old.id).owner == ALICE
