"""Expiry reminders: the pure threshold choice, then runs against the fakes with an injected clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.db.schema import AuditEvent
from bot.manage.views import ACTION_DELETE
from bot.policy.file import PersonSelector, Policy, PolicyError, ReminderPolicy, load_policy
from bot.remind.flow import due_threshold
from tests.conftest import ALICE, ORG_ID, SIGNING_SECRET, dump_database
from tests.fakes import bot_environment
from tests.lifecycle import ADMIN, AUDIT, BOB, POLICY, audit_events, managed, mint, text_of

__all__ = ["managed"]  # a fixture

ROOT = Path(__file__).resolve().parents[1]
EXPIRES = datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC)
PARTNER_TEAM = "T0PARTNER"
OUTSIDER = "UOUTSIDER"


@pytest.mark.parametrize(
    ("before_expiry", "thresholds", "due"),
    [
        (timedelta(days=30), [7, 1], None),
        (timedelta(days=7, seconds=1), [7, 1], None),
        (timedelta(days=7), [7, 1], 7),
        (timedelta(days=3), [7, 1], 7),
        (timedelta(hours=23), [7, 1], 1),  # past both at once: one reminder, the nearest
        (timedelta(seconds=1), [7, 1], 1),
        (timedelta(0), [7, 1], None),  # expired: too late to remind
        (-timedelta(days=1), [7, 1], None),
        (timedelta(days=2), [], None),  # reminders turned off
        (timedelta(days=20), [30, 14, 3], 30),
    ],
)
def test_which_reminder_is_due(before_expiry, thresholds, due):
    assert due_threshold(EXPIRES, EXPIRES - before_expiry, thresholds) == due


@given(
    st.lists(st.integers(1, 365), unique=True, max_size=5),
    st.integers(-10 * 86400, 400 * 86400),
    st.integers(0, 400 * 86400),
)
def test_reminders_only_ever_get_nearer(thresholds, seconds_before, later_by):
    now = EXPIRES - timedelta(seconds=seconds_before)
    first = due_threshold(EXPIRES, now, thresholds)
    later = due_threshold(EXPIRES, now + timedelta(seconds=later_by), thresholds)
    if first is not None:
        assert first in thresholds and EXPIRES - now <= timedelta(days=first)
        assert all(EXPIRES - now > timedelta(days=t) for t in thresholds if t < first)
        # Time passing never brings back a farther threshold than one already due.
        assert later is None or later <= first
    assert due_threshold(None, now, thresholds) is None


def test_the_policy_validates_reminder_days(tmp_path):
    assert Policy().reminders.days_before == [7, 1]
    assert ReminderPolicy(days_before=[1, 14]).days_before == [14, 1]
    path = tmp_path / "policy.yml"
    path.write_text("reminders:\n  days_before: [7, 7]\n")
    with pytest.raises(PolicyError, match="distinct"):
        load_policy(path)
    path.write_text("reminders:\n  every: 3\n")
    with pytest.raises(PolicyError, match="unknown key"):
        load_policy(path)


def dms_to(bot, user: str) -> list:
    return [
        c
        for c in bot.slack.calls("chat.postMessage")
        if c.args.get("channel") == "D" + user and c.response and c.response.get("ok")
    ]


def test_one_reminder_per_threshold_and_never_twice(managed):
    request = mint(managed)
    jobs = managed.runtime.reminders

    assert jobs.run_once(request.expires_at - timedelta(days=8)) == []
    sent = jobs.run_once(request.expires_at - timedelta(days=6))
    assert [r.days_before for r in sent] == [7]
    assert jobs.run_once(request.expires_at - timedelta(days=5)) == []
    assert [r.days_before for r in jobs.run_once(request.expires_at - timedelta(hours=12))] == [1]
    assert jobs.run_once(request.expires_at - timedelta(hours=1)) == []

    reminders = dms_to(managed, ALICE)
    assert len(reminders) == 2
    text = json.dumps(reminders[0].args)
    assert request.mixpanel_username in text and "android App" in text and "never used" in text
    assert all(token not in text for token in managed.mixpanel.created_tokens())
    assert len(audit_events(managed, AuditEvent.REMINDED)) == 2


def test_an_account_past_several_thresholds_gets_one_reminder_and_a_restart_sends_none(managed, bots):
    request = mint(managed)
    at = request.expires_at - timedelta(hours=12)
    assert len(managed.runtime.reminders.run_once(at)) == 1
    restarted = bots.start(policy=managed.runtime.policy)  # the same database
    assert restarted.runtime.reminders.run_once(at) == []
    assert restarted.runtime.reminders.run_once(at + timedelta(hours=1)) == []
    assert len(dms_to(managed, ALICE)) == 1


def test_dry_run_sends_and_records_nothing(managed):
    request = mint(managed)
    planned = managed.runtime.reminders.run_once(request.expires_at - timedelta(days=2), dry_run=True)
    assert [r.days_before for r in planned] == [7]
    assert dms_to(managed, ALICE) == [] and audit_events(managed, AuditEvent.REMINDED) == []
    assert len(managed.runtime.reminders.run_once(request.expires_at - timedelta(days=2))) == 1


@pytest.mark.parametrize("how", ["deactivated", "left"])
def test_a_departed_owners_account_is_announced_in_the_audit_channel(managed, how):
    request = mint(managed, BOB, username="bobs-pipeline")
    if how == "deactivated":
        managed.slack.add_user(BOB, deleted=True)
    else:
        managed.slack.remove_user(BOB)

    sent = managed.runtime.reminders.run_once(request.expires_at - timedelta(days=3))

    assert [r.owner_status for r in sent] == [how]
    posted = [
        c
        for c in managed.slack.calls("chat.postMessage")
        if c.args.get("channel") == AUDIT and "Someone should take it over" in json.dumps(c.args)
    ]
    assert len(posted) == 1
    assert request.mixpanel_username in json.dumps(posted[0].args) and how in json.dumps(posted[0].args)
    assert dms_to(managed, BOB) == []


def announced_in_audit_channel(bot, needle: str) -> list:
    return [
        c
        for c in bot.slack.calls("chat.postMessage")
        if c.args.get("channel") == AUDIT and needle in json.dumps(c.args)
    ]


def assert_told_the_audit_channel_and_the_admins_only(bot, request, creator: str, why: str) -> None:
    """The creator hears nothing of the account; the audit channel and the admin hear it all."""
    assert dms_to(bot, creator) == []
    [posted] = announced_in_audit_channel(bot, "Someone should take it over")
    assert request.mixpanel_username in json.dumps(posted.args) and why in json.dumps(posted.args)
    [to_admin] = dms_to(bot, ADMIN)
    assert request.mixpanel_username in json.dumps(to_admin.args) and why in json.dumps(to_admin.args)
    [reminded] = audit_events(bot, AuditEvent.REMINDED)
    assert AUDIT in reminded["detail"] and ADMIN in reminded["detail"]


def test_a_creator_demoted_to_guest_is_not_reminded_the_audit_channel_and_admins_are(managed):
    request = mint(managed, BOB, username="bobs-pipeline")
    managed.slack.add_user(BOB, tz="UTC", name="bob", is_restricted=True)  # now a guest

    sent = managed.runtime.reminders.run_once(request.expires_at - timedelta(days=3))

    assert [r.owner_status for r in sent] == ["not_a_member"]
    assert_told_the_audit_channel_and_the_admins_only(
        managed, request, BOB, "is no longer a full member of the workspace"
    )


def test_a_creator_from_a_workspace_no_longer_admitted_is_not_reminded(bots, slack):
    slack.add_user(OUTSIDER, tz="UTC", name="partner", team_id=PARTNER_TEAM)
    slack.add_user(ADMIN, tz="UTC", name="admin")
    admitting = bots.start(policy=POLICY.model_copy(update={"external_teams": [PARTNER_TEAM]}))
    request = mint(admitting, OUTSIDER, username="partner-feed")
    later = bots.start(policy=POLICY)  # the same database; the policy no longer admits the partner team

    sent = later.runtime.reminders.run_once(request.expires_at - timedelta(days=3))

    assert [r.owner_status for r in sent] == ["external"]
    assert_told_the_audit_channel_and_the_admins_only(
        later, request, OUTSIDER, "is from a workspace the policy does not admit"
    )


def test_the_reminder_job_makes_no_per_project_call(managed):
    managed.mixpanel.add_account(ORG_ID, "made-by-hand", projects=[{"id": 3001}])  # not made by the bot
    request = mint(managed)
    managed.runtime.manage.entries(None)  # `list all` asks each project who is in it
    project_calls = len(managed.mixpanel.calls(path_contains="/projects/"))
    assert project_calls > 0

    sent = managed.runtime.reminders.run_once(request.expires_at - timedelta(days=3))

    assert [r.days_before for r in sent] == [7]
    assert len(managed.mixpanel.calls(path_contains="/projects/")) == project_calls


def test_an_account_deleted_outside_the_bot_gets_no_reminder(managed):
    request = mint(managed)
    managed.mixpanel.delete_outside(request.mixpanel_account_id)
    assert managed.runtime.reminders.run_once(request.expires_at - timedelta(days=3)) == []
    assert dms_to(managed, ALICE) == []


def test_delete_now_in_the_reminder_deletes_once(managed):
    request = mint(managed)
    managed.runtime.reminders.run_once(request.expires_at - timedelta(days=3))
    message = dms_to(managed, ALICE)[0].args
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    button = next(e for e in actions["elements"] if e["action_id"] == ACTION_DELETE)
    assert button["action_id"] == ACTION_DELETE and button["value"] == f"r:{request.id}"
    url = managed.slack.new_response_url()

    managed.sender.block_actions(
        user_id=ALICE,
        actions=[{"action_id": ACTION_DELETE, "block_id": actions["block_id"], "value": button["value"]}],
        channel_id="D" + ALICE,
        response_url=url,
    )

    answer = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert "was deleted from Mixpanel" in text_of(answer.args)
    managed.wait_idle()
    assert len(managed.mixpanel.delete_calls()) == 1


@pytest.mark.postgres
def test_two_instances_sharing_postgres_send_one_dm(bots, slack, fresh_postgres_url):
    slack.add_user(ADMIN, tz="UTC")
    policy = Policy(admins=PersonSelector(users=[ADMIN]))
    first = bots.start(database_url=fresh_postgres_url, policy=policy)
    second = bots.start(database_url=fresh_postgres_url, policy=policy)
    request = mint(first)
    at = request.expires_at - timedelta(days=3)
    results: list = []
    barrier = threading.Barrier(4)

    def run(bot) -> None:
        barrier.wait()
        results.append(bot.runtime.reminders.run_once(at))

    threads = [threading.Thread(target=run, args=(bot,)) for bot in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(len(r) for r in results) == 1
    assert len(dms_to(first, ALICE)) == 1
    # Under the lease, only one instance runs the periodic job at all.
    leased = [bot.runtime.reminders.run_under_lease(900, at) for bot in (first, second)]
    assert leased.count(None) == 1


def test_python_m_bot_remind_as_a_subprocess(bots, slack, mixpanel, tmp_path):
    bot = bots.start()
    request = mint(bot)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MIXPANEL_", "POLICY_"))},
        **bot_environment(slack, mixpanel, signing_secret=SIGNING_SECRET),
        "DATABASE_URL": bot.runtime.settings.database_url,
    }
    when = (request.expires_at - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def remind(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bot", "remind", "--now", when, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = remind("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would send: {request.mixpanel_username}: 7-day reminder" in dry.stdout
    assert dms_to(bot, ALICE) == []

    real = remind()
    assert real.returncode == 0, real.stderr
    assert "1 reminder(s) sent" in real.stdout
    assert len(dms_to(bot, ALICE)) == 1

    again = remind()
    assert again.returncode == 0 and "0 reminder(s) sent" in again.stdout
    assert len(dms_to(bot, ALICE)) == 1


READ_ONLY_SLACK_METHODS = {"auth.test", "users.info", "usergroups.users.list"}


def test_python_m_bot_remind_dry_run_changes_nothing_with_an_account_gone(managed, tmp_path):
    due = mint(managed)
    gone = mint(managed, BOB, username="bobs-gone")
    managed.mixpanel.delete_outside(gone.mixpanel_account_id)
    policy_file = tmp_path / "policy.yml"
    policy_file.write_text(f"audit_channel: {AUDIT}\nadmins:\n  users: [{ADMIN}]\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MIXPANEL_", "POLICY_"))},
        **bot_environment(managed.slack, managed.mixpanel, signing_secret=SIGNING_SECRET),
        "DATABASE_URL": managed.runtime.settings.database_url,
        "POLICY_FILE": str(policy_file),
    }
    database = dump_database(managed.store)
    slack_calls = len(managed.slack.calls())
    mixpanel_calls = len(managed.mixpanel.calls())
    when = (due.expires_at - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")

    dry = subprocess.run(
        [sys.executable, "-m", "bot", "remind", "--dry-run", "--now", when],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert dry.returncode == 0, dry.stderr
    assert f"would send: {due.mixpanel_username}: 7-day reminder" in dry.stdout
    assert dump_database(managed.store) == database  # every table: the gone account's record stays open
    made_in_slack = {c.method for c in managed.slack.calls()[slack_calls:]}
    assert made_in_slack <= READ_ONLY_SLACK_METHODS, made_in_slack
    assert {c.method for c in managed.mixpanel.calls()[mixpanel_calls:]} == {"GET"}
    # A real run then closes the gone account's record, as `list` would.
    assert len(managed.runtime.reminders.run_once(due.expires_at - timedelta(days=3))) == 1
    assert [r["request_id"] for r in audit_events(managed, AuditEvent.FOUND_GONE)] == [gone.id]


@pytest.mark.postgres
def test_the_periodic_job_runs_on_one_instance_under_the_lease(bots, fresh_postgres_url):
    first = bots.start(database_url=fresh_postgres_url)
    second = bots.start(database_url=fresh_postgres_url)
    request = mint(first, days=3)  # due for its 7-day reminder now, by the real clock
    lists_before = len(first.mixpanel.list_calls())
    stopping = threading.Event()
    try:
        for bot in (first, second):
            bot.runtime.reminders.start(0.05, stopping)
        # Only the lease holder lists accounts; several of its rounds have passed once it listed thrice.
        first.mixpanel.wait_for("list", count=lists_before + 3)
        first.slack.wait_for(
            lambda c: c.method == "chat.postMessage" and c.args.get("channel") == "D" + ALICE
        )
    finally:
        stopping.set()
    assert len(dms_to(first, ALICE)) == 1
    assert request.mixpanel_username in json.dumps(dms_to(first, ALICE)[0].args)
