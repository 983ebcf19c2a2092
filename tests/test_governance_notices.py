"""Governance's notices when Slack fails to take them, through the wire: a notice whose send failed is sent
on a later run, never counted as sent, and a deletion by the bot waits until both its warnings (to the
owner and to the audit channel) were actually delivered."""

from __future__ import annotations

import json

from bot.govern.store import GovernanceStore, OwnershipState
from bot.policy.file import IdleDeletion
from tests.conftest import ALICE, ORG_ID
from tests.governance_harness import (
    CAROL,
    DAY,
    SUCCESSORS,
    dms,
    on_clock,
    posts_to,
    start,
    user_change,
)
from tests.lifecycle import AUDIT, BOB, mint, text_of

WARNING = "will be deleted by the bot"


def to_channel(channel: str):
    return lambda args: args.get("channel") == channel


def delivered_to(bot, channel: str, words: str) -> list[dict]:
    return [
        c.args
        for c in bot.slack.calls("chat.postMessage")
        if c.args.get("channel") == channel and words in json.dumps(c.args) and c.response.get("ok")
    ]


def test_an_idle_deletion_waits_for_the_audit_channel_warning_and_the_owner_is_warned_once(bots, slack):
    bot, clock = start(bots, slack, idle_days=30, idle_action=IdleDeletion(delete_after_days=3))
    request = mint(bot, days=90)
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    clock.now += 31 * DAY
    job.run_once()  # the idle notice
    clock.now += 2 * DAY  # a day before the deadline: the warnings are due
    bot.slack.fail("chat.postMessage", "channel_not_found", when=to_channel(AUDIT))
    assert not any("warned" in a for a in job.run_once().actions)
    assert len([m for m in dms(bot, ALICE) if WARNING in text_of(m)]) == 1  # the owner has it
    assert delivered_to(bot, AUDIT, WARNING) == []

    clock.now += 3 * DAY  # well past the deadline, but the audit channel was never warned
    assert not any("deleted" in a for a in job.run_once().actions)
    assert bot.mixpanel.delete_calls() == []

    bot.slack.clear_faults()
    assert any("warned" in a for a in job.run_once().actions)
    assert len(delivered_to(bot, AUDIT, WARNING)) == 1
    assert len([m for m in dms(bot, ALICE) if WARNING in text_of(m)]) == 1  # not warned twice
    clock.now += 12 * DAY / 24
    assert not any("deleted" in a for a in job.run_once().actions)  # a day after both were warned
    clock.now += 12 * DAY / 24
    assert any("deleted" in a for a in job.run_once().actions)
    bot.wait_idle()
    assert request.mixpanel_account_id not in bot.mixpanel.accounts


def test_a_review_deletion_waits_until_the_owner_got_the_warning(bots, slack):
    bot, clock = start(bots, slack, review_every_days=90, review_grace_days=7, review_action="delete")
    request = mint(bot)
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    job.run_once()  # the review DM
    clock.now += 6 * DAY
    bot.slack.fail("chat.postMessage", "channel_not_found", when=to_channel("D" + ALICE))
    assert not any("warned" in a for a in job.run_once().actions)
    clock.now += 3 * DAY  # past the grace days and a day after the failed warning
    assert not any("deleted" in a for a in job.run_once().actions)
    assert bot.mixpanel.delete_calls() == []

    bot.slack.clear_faults()
    assert any("warned" in a for a in job.run_once().actions)
    assert len([m for m in dms(bot, ALICE) if WARNING in text_of(m)]) == 1
    assert not any("deleted" in a for a in job.run_once().actions)
    clock.now += DAY
    assert any("deleted" in a for a in job.run_once().actions)
    bot.wait_idle()
    assert request.mixpanel_account_id not in bot.mixpanel.accounts


def test_an_ownership_offer_nobody_could_be_sent_is_offered_on_the_next_run(bots, slack):
    bot, _ = start(bots, slack, successor=SUCCESSORS)
    request = mint(bot, BOB, username="bobs-pipeline")
    slack.add_user(BOB, deleted=True, name="bob")
    bot.slack.fail("chat.postMessage", "channel_not_found", when=to_channel("D" + CAROL))

    user_change(bot, {"id": BOB, "deleted": True})
    ownership = GovernanceStore(bot.store).ownership(request.mixpanel_account_id)
    assert ownership is not None and ownership.state is OwnershipState.OPEN
    assert [m for m in dms(bot, CAROL) if "needs a new owner" in text_of(m)] == []

    bot.slack.clear_faults()
    job = bot.runtime.governance.job
    assert f"{request.mixpanel_username}: ownership offered again" in job.run_once().actions
    assert len([m for m in dms(bot, CAROL) if "needs a new owner" in text_of(m)]) == 1
    assert not any("offered" in a for a in job.run_once().actions)  # once per opening
    assert len([m for m in dms(bot, CAROL) if "needs a new owner" in text_of(m)]) == 1


def test_an_unmanaged_notice_whose_post_failed_is_posted_on_the_next_run(bots, slack):
    bot, _ = start(bots, slack, unmanaged="notify")
    made = bot.mixpanel.add_account(ORG_ID, "made-by-hand", role="analyst", projects=[])
    job = bot.runtime.governance.job
    bot.slack.fail("chat.postMessage", "channel_not_found", when=to_channel(AUDIT))
    job.run_once()
    bot.slack.clear_faults()
    job.run_once()
    job.run_once()
    bot.wait_idle()
    told = delivered_to(bot, AUDIT, "New service account(s) made outside the bot")
    assert len(told) == 1 and made["username"] in json.dumps(told[0])
    assert posts_to(bot, AUDIT, "Service accounts this week")  # the summary, too, once it could be posted
