"""Periodic reviews for an owner of many accounts, through the wire: every account is asked (in DMs of at
most REVIEW_MAX lines), the DM says what happens to an unanswered one, and a line whose DM Slack refused
is never deleted unasked."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.govern import messages as say
from bot.govern.inventory_store import InventoryStore
from bot.govern.review_store import ReviewStore
from bot.models import Role
from tests.conftest import ALICE, ORG_ID
from tests.governance_harness import (
    DAY,
    answer_at,
    click,
    dms,
    on_clock,
    start,
)
from tests.lifecycle import ADMIN, mint, text_of


def owned_by_alice(bot, count: int) -> list[int]:
    """`count` accounts made in Mixpanel and adopted for Alice (the setup: the form's daily limit is 10)."""
    ids = []
    for number in range(count):
        made = bot.mixpanel.add_account(ORG_ID, f"etl-{number:02d}", role="analyst", projects=[])
        InventoryStore(bot.store).adopt(
            account_id=made["id"],
            username=made["username"],
            role=Role.ANALYST,
            project_ids=(),
            expires_at=None,
            created_at=datetime.now(UTC),
            mixpanel_creator=None,
            admin_id=ADMIN,
            owner_id=ALICE,
            now=datetime.now(UTC),
        )
        ids.append(made["id"])
    return ids


def reviews_to_alice(bot) -> list[dict]:
    return [m for m in dms(bot, ALICE) if "Periodic review" in text_of(m)]


def asked(messages: list[dict]) -> set[int]:
    return {
        int(element["value"].rpartition(":")[2])
        for message in messages
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == say.ACTION_REVIEW_KEEP
    }


def test_every_account_of_an_owner_of_many_is_asked_and_told_what_happens_unanswered(bots, slack):
    bot, clock = start(bots, slack, review_every_days=90, review_grace_days=7, review_action="delete")
    ids = owned_by_alice(bot, say.REVIEW_MAX + 3)
    on_clock(bot, clock)
    bot.runtime.governance.job.run_once()

    messages = reviews_to_alice(bot)
    assert len(messages) == 2 and asked(messages) == set(ids)
    assert "part 1 of 2" in text_of(messages[0]) and "part 2 of 2" in text_of(messages[1])
    assert all("deleted by the bot, after a warning" in text_of(m) for m in messages)
    assert not any("reported to the admins" in text_of(m) for m in messages)
    assert {item.account_id for item in ReviewStore(bot.store).items()} == set(ids)


def test_a_review_line_whose_dm_failed_is_never_deleted_unasked(bots, slack):
    bot, clock = start(bots, slack, review_every_days=90, review_grace_days=7, review_action="delete")
    ids = owned_by_alice(bot, say.REVIEW_MAX + 3)
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    sent = {"count": 0}

    def second_review_dm(args: dict) -> bool:
        if args.get("channel") == "D" + ALICE and "Periodic review" in str(args.get("text")):
            sent["count"] += 1
            return sent["count"] == 2
        return False

    bot.slack.fail("chat.postMessage", "channel_not_found", when=second_review_dm)
    job.run_once()
    bot.slack.clear_faults()
    [delivered] = reviews_to_alice(bot)
    in_round = {item.account_id for item in ReviewStore(bot.store).items()}
    assert in_round == asked([delivered]) and len(in_round) == say.REVIEW_MAX

    for _ in range(9):
        clock.now += DAY
        job.run_once()
    bot.wait_idle()
    assert len(bot.mixpanel.delete_calls()) == len(in_round)  # the lines Alice was asked about, once each
    assert {i for i in ids if i in bot.mixpanel.accounts} == set(ids) - in_round  # never asked: still there


def test_still_needed_on_a_review_line_whose_account_is_gone_records_nothing(bots, slack):
    bot, _ = start(bots, slack, review_every_days=90)
    request = mint(bot, days=90)
    job = bot.runtime.governance.job
    job.run_once()
    [review] = reviews_to_alice(bot)
    bot.mixpanel.delete_outside(request.mixpanel_account_id)  # deleted in Mixpanel's UI
    job.run_once()  # the record is closed
    assert bot.store.get(request.id).state.value != "delivered"

    url = click(bot, ALICE, review, say.ACTION_REVIEW_KEEP)
    assert "nothing changed" in answer_at(bot, url)
    assert [item.answer for item in ReviewStore(bot.store).items()] == [None]
