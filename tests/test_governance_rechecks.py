"""What the governance job judges again right before it acts on its own, through the wire: an automatic
deletion is decided on Mixpanel's fresh word and the latest keep, not on the run's shared cached listing."""

from __future__ import annotations

from bot.db.schema import AuditEvent
from bot.govern import messages as say
from bot.manage.views import ACTION_DELETE
from bot.policy.file import GovernancePolicy, IdleDeletion, PersonSelector, Policy
from tests.conftest import ALICE, ORG_ID
from tests.governance_harness import (
    DAY,
    Clock,
    answer_at,
    click,
    dms,
    on_clock,
    posts_to,
    start,
)
from tests.lifecycle import ADMIN, AUDIT, audit_events, mint, text_of


def test_an_account_used_since_the_cached_listing_is_not_deleted_as_idle(bots, slack):
    governance = GovernancePolicy(idle_days=30, idle_action=IdleDeletion(delete_after_days=3))
    policy = Policy(admins=PersonSelector(users=[ADMIN]), audit_channel=AUDIT, governance=governance)
    bot = bots.start(policy=policy, mixpanel_list_cache_seconds=60)  # the shared listing, as in production
    clock = Clock()
    request = mint(bot, days=90)
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    clock.now += 31 * DAY
    job.run_once()  # the idle notice
    clock.now += 2 * DAY
    assert any("warned" in a for a in job.run_once().actions)
    clock.now += 2 * DAY  # past the deadline, a day after the warnings
    # Used just now in Mixpanel; the shared listing the run reads was cached before that.
    bot.runtime.manage.listing.accounts(bot.runtime.manage.d.catalog.organization_id())
    bot.mixpanel.use_account(request.mixpanel_account_id, (clock.now - DAY / 24).isoformat())

    assert not any("deleted" in a for a in job.run_once().actions)
    assert bot.mixpanel.delete_calls() == []
    assert request.mixpanel_account_id in bot.mixpanel.accounts
    assert bot.store.get(request.id).state.value == "delivered"


def test_an_expired_account_mixpanel_still_lists_is_neither_counted_nor_told_about(bots, slack):
    bot, clock = start(bots, slack, idle_days=10, review_every_days=90, unmanaged="notify")
    expired = mint(bot, days=20)
    live = mint(bot, username="etl-live", days=60)
    on_clock(bot, clock)
    clock.now += 25 * DAY  # the first has expired; Mixpanel still lists it
    by_hand = (clock.now - DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    bot.mixpanel.add_account(ORG_ID, "made-by-hand-expired", role="analyst", projects=[], expires=by_hand)
    assert expired.mixpanel_account_id in bot.mixpanel.accounts

    run = bot.runtime.governance.job.run_once()
    assert run.counts["live"] == 1 and run.counts["unmanaged"] == 0 and run.counts["idle"] == 1
    assert not any(expired.mixpanel_username in a or "made-by-hand" in a for a in run.actions)
    told = [text_of(m) for m in dms(bot, ALICE)]
    assert any(live.mixpanel_username in t and "idle" in t for t in told)
    assert not any(expired.mixpanel_username in t for t in told if "idle" in t or "Periodic review" in t)


def test_keep_it_on_an_old_idle_message_after_the_account_was_deleted_changes_nothing(bots, slack):
    bot, clock = start(bots, slack, idle_days=30)
    request = mint(bot, days=90)
    on_clock(bot, clock)
    clock.now += 31 * DAY
    bot.runtime.governance.job.run_once()
    [idle] = [m for m in dms(bot, ALICE) if "idle" in text_of(m)]
    url = click(bot, ALICE, idle, ACTION_DELETE)
    assert "was deleted from Mixpanel" in answer_at(bot, url)
    bot.wait_idle()

    before = len(bot.slack.calls("views.open"))
    url = click(bot, ALICE, idle, say.ACTION_KEEP)  # the old message's other button
    assert "nothing was changed" in answer_at(bot, url)
    assert len(bot.slack.calls("views.open")) == before  # no form
    form = {**say.keep_modal(f"r:{request.id}"), "id": "VOLD"}  # a form opened before the deletion
    assert bot.submit(form, {say.BLOCK_KEEP_REASON: "still needed"}, ALICE).status == 200
    bot.wait_idle()
    assert audit_events(bot, AuditEvent.KEPT) == []
    assert posts_to(bot, AUDIT, "kept idle") == []
