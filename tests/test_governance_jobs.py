"""Governance as a job: dry runs, two runs at once, the calls one run makes, the CLI, review and orphan
reports, forged clicks and ownerless accounts."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from bot.db.schema import AuditEvent
from bot.govern import messages as say
from bot.govern.store import GovernanceStore
from bot.manage.views import ACTION_DELETE
from bot.policy.file import GovernancePolicy, PersonSelector, Policy
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
from tests.lifecycle import ADMIN, AUDIT, BOB, audit_events, mint, text_of

# --- every job -------------------------------------------------------------------------------------


def test_a_dry_run_writes_and_sends_nothing(bots, slack):
    bot, clock = start(bots, slack, idle_days=30, unmanaged="notify")
    mint(bot, days=90)
    bot.mixpanel.add_account(ORG_ID, "made-by-hand")
    on_clock(bot, clock)
    clock.now += 31 * DAY
    posts = len(slack.calls("chat.postMessage"))
    run = bot.runtime.governance.job.run_once(dry_run=True)
    assert any("idle notice" in a for a in run.actions) and any("unmanaged" in a for a in run.actions)
    assert len(slack.calls("chat.postMessage")) == posts
    assert GovernanceStore(bot.store).postures() == []


@pytest.mark.postgres
def test_two_govern_runs_at_once_send_one_notice(bots, slack, fresh_postgres_url):
    slack.add_user(ADMIN, tz="UTC")
    policy = Policy(
        admins=PersonSelector(users=[ADMIN]), audit_channel=AUDIT, governance=GovernancePolicy(idle_days=30)
    )
    first = bots.start(database_url=fresh_postgres_url, policy=policy)
    second = bots.start(database_url=fresh_postgres_url, policy=policy)
    mint(first, days=90)
    clock = Clock()
    clock.now += 31 * DAY
    for bot in (first, second):
        on_clock(bot, clock)
    barrier = threading.Barrier(4)
    results: list = []

    def run(bot) -> None:
        barrier.wait()
        results.append(bot.runtime.governance.job.run_once())

    threads = [threading.Thread(target=run, args=(bot,)) for bot in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len([a for a in r.actions if "idle notice" in a]) for r in results) == 1
    assert len([m for m in dms(first, ALICE) if "idle" in text_of(m)]) == 1
    assert len(posts_to(first, AUDIT, "Service accounts this week")) == 1
    # In the app, one instance at a time runs the job, under its own lease.
    leased = [bot.runtime.governance.job.run_under_lease(900) for bot in (first, second)]
    assert leased.count(None) == 1


def test_one_listing_and_one_lookup_per_owner_per_run(bots, slack):
    """Measured: however many accounts, a run lists the organization once and asks users.info once per
    owner (the shared listing and the single-flight owner check)."""
    bot, _ = start(bots, slack, idle_days=30, review_every_days=30)
    for index in range(3):
        mint(bot, username=f"alice-{index}")
    mint(bot, BOB, username="bobs-pipeline")
    bot.mixpanel.add_account(ORG_ID, "made-by-hand")
    bot.runtime.manage.listing.forget()
    lists, lookups = len(bot.mixpanel.list_calls()), len(slack.calls("users.info"))
    bot.runtime.governance.job.run_once()
    assert len(bot.mixpanel.list_calls()) - lists == 1
    asked = [c.args.get("user") for c in slack.calls("users.info")[lookups:]]
    assert sorted(set(asked)) == [ALICE, BOB] and len(asked) == 2


@pytest.mark.subprocess
def test_python_m_bot_govern_and_inventory_as_subprocesses(bots, slack, mixpanel):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import SIGNING_SECRET
    from tests.fakes import bot_environment

    bot, _ = start(bots, slack)
    mint(bot)
    made = mixpanel.add_account(ORG_ID, "made-by-hand")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MIXPANEL_", "POLICY_"))},
        **bot_environment(slack, mixpanel, signing_secret=SIGNING_SECRET),
        "DATABASE_URL": bot.runtime.settings.database_url,
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    posts = len(slack.calls("chat.postMessage"))
    report = run("govern", "--report", "--format", "json")
    assert report.returncode == 0, report.stderr
    counts = json.loads(report.stdout)["counts"]
    assert counts["live"] == 2 and counts["unmanaged"] == 1 and counts["owned_by_active_member"] == 1
    dry = run("govern", "--dry-run")
    assert dry.returncode == 0 and "would do: " in dry.stdout and "1 unmanaged" in dry.stdout
    assert len(slack.calls("chat.postMessage")) == posts  # --report and --dry-run send nothing
    assert GovernanceStore(bot.store).postures() == []
    inventory = run("inventory", "--format", "json")
    assert inventory.returncode == 0, inventory.stderr
    assert [row["username"] for row in json.loads(inventory.stdout)] == [made["username"]]
    real = run("govern")
    assert real.returncode == 0 and "1 live accounts" not in real.stdout and "2 live accounts" in real.stdout
    assert len(GovernanceStore(bot.store).postures()) == 1
    reviews = run("audit", "--reviews")
    assert reviews.returncode == 0 and reviews.stdout.startswith("period,started_at,owner_id")
    assert run("audit").returncode == 2  # neither --since nor --reviews


def test_an_unconfirmed_review_is_deleted_with_the_warnings_when_the_policy_says_so(bots, slack):
    bot, clock = start(bots, slack, review_every_days=90, review_grace_days=7, review_action="delete")
    request = mint(bot)
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    job.run_once()
    clock.now += 6 * DAY
    assert any("warned" in a for a in job.run_once().actions)
    assert len([m for m in dms(bot, ALICE) if "will be deleted by the bot" in text_of(m)]) == 1
    clock.now += 12 * timedelta(hours=1)
    assert not any("deleted" in a for a in job.run_once().actions)
    clock.now += 12 * timedelta(hours=1)
    assert any("deleted" in a for a in job.run_once().actions)
    bot.wait_idle()
    assert len(bot.mixpanel.delete_calls()) == 1
    assert request.mixpanel_account_id not in bot.mixpanel.accounts


def test_an_owner_gone_past_orphan_days_is_in_the_weekly_summary(bots, slack):
    bot, clock = start(bots, slack, orphan_days=3)
    request = mint(bot, BOB, username="bobs-pipeline")
    slack.add_user(BOB, deleted=True, name="bob")
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    job.run_once()
    first = posts_to(bot, AUDIT, "Service accounts this week")
    assert len(first) == 1 and "Without an owner for too long" not in json.dumps(first[0])
    clock.now += 7 * DAY  # the next week
    job.run_once()
    summaries = posts_to(bot, AUDIT, "Service accounts this week")
    assert len(summaries) == 2
    assert "Without an owner for too long" in json.dumps(summaries[1])
    assert request.mixpanel_username in json.dumps(summaries[1])
    assert "1 without an owner (±0)" in json.dumps(summaries[1], ensure_ascii=False)  # the trend


def test_forged_keep_and_review_clicks_change_nothing(bots, slack):
    bot, clock = start(bots, slack, idle_days=30, review_every_days=90)
    request = mint(bot, days=90)
    on_clock(bot, clock)
    clock.now += 31 * DAY
    bot.runtime.governance.job.run_once()
    idle = next(m for m in dms(bot, ALICE) if "idle" in text_of(m))
    review = next(m for m in dms(bot, ALICE) if "Periodic review" in text_of(m))

    before = len(bot.slack.calls("views.open"))
    url = click(bot, BOB, idle, say.ACTION_KEEP)
    assert "only the service accounts you own" in answer_at(bot, url)
    assert len(bot.slack.calls("views.open")) == before  # no form for Bob
    # A keep form submitted by hand, naming Alice's account: judged again, refused, not kept.
    forged = {**say.keep_modal(f"r:{request.id}"), "id": "VFORGED"}
    assert bot.submit(forged, {say.BLOCK_KEEP_REASON: "mine now"}, BOB).status == 200
    bot.wait_idle()
    assert audit_events(bot, AuditEvent.KEPT) == []

    url = click(bot, BOB, review, say.ACTION_REVIEW_DELETE)
    assert "nothing changed" in answer_at(bot, url)
    url = click(
        bot, ALICE, review, say.ACTION_REVIEW_KEEP, value="0" * 32 + f":{request.mixpanel_account_id}"
    )
    assert "nothing changed" in answer_at(bot, url)  # a round that does not exist
    assert bot.mixpanel.delete_calls() == []
    assert bot.store.get(request.id).state.value == "delivered"


def test_an_ownerless_account_an_admin_deletes_is_no_longer_listed(bots, slack):
    bot, clock = start(bots, slack, orphan_days=1)  # no successor group: the offer is in the audit channel
    request = mint(bot, BOB, username="bobs-pipeline")
    slack.remove_user(BOB)
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    job.run_once()
    [offer] = posts_to(bot, AUDIT, "needs a new owner")
    clock.now += 2 * DAY
    assert [name for name, _, _ in job.orphans_overdue(clock.now)] == [request.mixpanel_username]

    url = click(bot, ADMIN, offer, ACTION_DELETE)
    assert "was deleted from Mixpanel" in answer_at(bot, url)
    bot.wait_idle()
    assert job.orphans_overdue(clock.now) == []
    assert job.run_once().counts["without_owner"] == 0
