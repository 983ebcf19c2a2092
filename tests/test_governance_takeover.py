"""After a takeover, through the wire: the new owner answers for the account from then on, so nothing the
bot asked the former owner (an idle notice, a review line) can lead to a deletion the new owner was never
asked about."""

from __future__ import annotations

import threading

from bot.govern import messages as say
from bot.govern.store import GovernanceStore, OwnershipState
from bot.policy.file import IdleDeletion
from tests.governance_harness import (
    CAROL,
    DAY,
    SUCCESSORS,
    answer_at,
    click,
    dms,
    lookups_of,
    on_clock,
    posts_to,
    start,
    user_change,
)
from tests.lifecycle import AUDIT, BOB, mint, text_of


def take_over_as_carol(bot, slack, request) -> None:
    slack.add_user(BOB, deleted=True, name="bob")
    user_change(bot, {"id": BOB, "deleted": True})
    [offer] = [m for m in dms(bot, CAROL) if "needs a new owner" in text_of(m)]
    assert "You now own" in answer_at(bot, click(bot, CAROL, offer, say.ACTION_TAKE_OVER))
    assert bot.store.get(request.id).owner == CAROL


def test_an_idle_countdown_begun_for_the_former_owner_ends_with_a_takeover(bots, slack):
    bot, clock = start(
        bots, slack, successor=SUCCESSORS, idle_days=30, idle_action=IdleDeletion(delete_after_days=3)
    )
    request = mint(bot, BOB, username="bobs-pipeline", days=90)
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    clock.now += 31 * DAY
    assert any("idle notice" in a for a in job.run_once().actions)  # to Bob, whose Keep it Carol never got
    take_over_as_carol(bot, slack, request)

    for _ in range(4):
        clock.now += DAY
        assert not any("warned" in a or "deleted" in a for a in job.run_once().actions)
    assert bot.mixpanel.delete_calls() == []
    clock.now += 30 * DAY  # idle again, now in Carol's time: she is told, with her own Keep it
    job.run_once()
    assert [m for m in dms(bot, CAROL) if "idle" in text_of(m) and request.mixpanel_username in text_of(m)]


def test_a_review_line_the_former_owner_left_unanswered_deletes_nothing_the_new_owner_confirmed(bots, slack):
    bot, clock = start(
        bots, slack, successor=SUCCESSORS, review_every_days=90, review_grace_days=7, review_action="delete"
    )
    request = mint(bot, BOB, username="bobs-pipeline", days=90)
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    job.run_once()  # the review DM, to Bob
    take_over_as_carol(bot, slack, request)
    job.run_once()  # Carol is asked in her own round, and confirms
    [review] = [m for m in dms(bot, CAROL) if "Periodic review" in text_of(m)]
    assert "is still needed" in answer_at(bot, click(bot, CAROL, review, say.ACTION_REVIEW_KEEP))

    for _ in range(10):  # Bob's line stays unanswered: it is no longer his to answer
        clock.now += DAY
        assert not any("warned" in a or "deleted" in a for a in job.run_once().actions)
    assert bot.mixpanel.delete_calls() == []
    assert not [m for m in dms(bot, CAROL) if "will be deleted by the bot" in text_of(m)]


def test_a_burst_of_user_change_events_for_one_person_costs_at_most_two_lookups(bots, slack):
    bot, _ = start(bots, slack, successor=SUCCESSORS)
    request = mint(bot, BOB, username="bobs-pipeline")
    slack.add_user(BOB, deleted=True, name="bob")
    before = lookups_of(bot, BOB)
    slack.delay("users.info", 2.0)  # the first re-check is still asking Slack while the rest arrive
    event = {"type": "user_change", "user": {"id": BOB, "deleted": True}, "event_ts": "1700000000.1"}
    results: list = []
    senders = [
        threading.Thread(target=lambda: results.append(bot.sender.event_callback(event))) for _ in range(6)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert [r.status for r in results] == [200] * 6 and all(r.elapsed < 3 for r in results)
    bot.slack.wait_for(lambda c: c.method == "users.info" and c.args.get("user") == BOB, count=before + 1)
    bot.wait_idle()

    assert 1 <= lookups_of(bot, BOB) - before <= 2  # one, and one more for the events that came meanwhile
    assert GovernanceStore(bot.store).ownership(request.mixpanel_account_id).state is OwnershipState.OPEN
    assert len([m for m in dms(bot, CAROL) if "needs a new owner" in text_of(m)]) == 1


def test_an_owner_who_is_back_owns_their_accounts_again_and_the_old_offer_is_void(bots, slack):
    bot, _ = start(bots, slack, successor=SUCCESSORS)
    request = mint(bot, BOB, username="bobs-pipeline")
    slack.add_user(BOB, deleted=True, name="bob")
    user_change(bot, {"id": BOB, "deleted": True})
    [offer] = [m for m in dms(bot, CAROL) if "needs a new owner" in text_of(m)]

    slack.add_user(BOB, tz="UTC", name="bob")  # reactivated
    bot.runtime.governance.owners._checks.clear()  # the owner checks' 60 s have passed
    run = bot.runtime.governance.job.run_once()
    assert f"{request.mixpanel_username}: owner {BOB} is back; ownership settled" in run.actions
    assert run.counts["without_owner"] == 0 and run.counts["owned_by_active_member"] == 1
    assert GovernanceStore(bot.store).ownership(request.mixpanel_account_id).state is OwnershipState.TAKEN
    bot.wait_idle()
    assert posts_to(bot, AUDIT, "is theirs again")

    assert "nothing changed" in answer_at(bot, click(bot, CAROL, offer, say.ACTION_TAKE_OVER))
    assert bot.store.get(request.id).owner == BOB
