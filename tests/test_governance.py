"""Governance through the wire: the real app, the Slack and Mixpanel fakes, and an injected clock (the
flows' shared `clock`, moved forward by the test). What the fakes received is what is asserted: idle
accounts, people who leave, accounts made outside the bot, reviews and the posture."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.db.schema import AuditEvent
from bot.govern import messages as say
from bot.govern.store import GovernanceStore, OwnershipState
from bot.manage.views import ACTION_ADOPT, ACTION_DELETE, ACTION_REPLACE
from bot.policy.file import IdleDeletion
from tests.conftest import ALICE, GUEST, ORG_ID, dump_database
from tests.governance_harness import (
    CAROL,
    DAVE,
    DAY,
    SUCCESSORS,
    answer_at,
    button,
    click,
    dms,
    no_token_anywhere,
    on_clock,
    opened_view,
    posts_to,
    press,
    start,
    user_change,
)
from tests.lifecycle import ADMIN, AUDIT, BOB, audit_events, mint, run_list, text_of

# --- 1. idle accounts ------------------------------------------------------------------------------


def test_an_idle_account_is_told_once_kept_with_a_reason_and_then_idle_again(bots, slack):
    bot, clock = start(bots, slack, idle_days=30)
    request = mint(bot, days=90)
    since = len(bot.slack.calls())
    on_clock(bot, clock)
    job = bot.runtime.governance.job

    clock.now += 29 * DAY
    assert not any("idle notice" in a for a in job.run_once().actions)
    clock.now += 2 * DAY
    assert [a for a in job.run_once().actions if "idle notice" in a] == [
        f"{request.mixpanel_username}: idle notice to {ALICE}"
    ]
    assert [a for a in job.run_once().actions if "idle notice" in a] == []  # once per period
    idle = [m for m in dms(bot, ALICE) if "idle" in text_of(m)]
    assert len(idle) == 1 and "never used" in text_of(idle[0]) and "android App" in text_of(idle[0])
    assert button(idle[0], ACTION_DELETE)[1]["value"] == f"r:{request.id}"
    assert ":zzz: *idle*" in text_of(run_list(bot))  # `list` marks it, and so does the App Home
    bot.sender.event_callback({"type": "app_home_opened", "user": ALICE, "channel": "DALICE", "tab": "home"})
    home = bot.slack.wait_for(lambda c: c.method == "views.publish" and c.args.get("user_id") == ALICE)[-1]
    assert ":zzz: *idle*" in json.dumps(home.args)

    view = opened_view(bot, press(bot, ALICE, idle[0], say.ACTION_KEEP))
    assert view["private_metadata"] == f"r:{request.id}"
    empty = bot.submit(view, {say.BLOCK_KEEP_REASON: " "}, ALICE)
    assert empty.json()["errors"] == {say.BLOCK_KEEP_REASON: say.KEEP_REASON_MISSING}
    reason = "the quarterly finance export <!channel>"
    assert bot.submit(view, {say.BLOCK_KEEP_REASON: reason}, ALICE).status == 200
    bot.wait_idle()
    kept = audit_events(bot, AuditEvent.KEPT)
    bot.wait_idle()
    assert len(kept) == 1 and "the quarterly finance export" in kept[0]["detail"]
    [announced] = posts_to(bot, AUDIT, "the quarterly finance export")
    # The person's words only as plain_text, never as mrkdwn nor in the notification text.
    assert reason not in announced["text"]
    assert [b["text"]["type"] for b in announced["blocks"] if reason in b["text"]["text"]] == ["plain_text"]
    assert ":zzz: *idle*" not in text_of(run_list(bot))

    clock.now += 29 * DAY  # counts as used at the keep: not idle within idle_days of it
    assert [a for a in job.run_once().actions if "idle notice" in a] == []
    clock.now += 2 * DAY
    assert [a for a in job.run_once().actions if "idle notice" in a] != []  # a new idle period
    assert len([m for m in dms(bot, ALICE) if "idle" in text_of(m)]) == 2
    assert bot.mixpanel.delete_calls() == []  # notify: never without a click
    no_token_anywhere(bot, since)


def test_a_used_account_is_not_idle(bots, slack):
    bot, clock = start(bots, slack, idle_days=30)
    request = mint(bot)
    on_clock(bot, clock)
    clock.now += 40 * DAY
    bot.mixpanel.use_account(request.mixpanel_account_id, (clock.now - 2 * DAY).isoformat())
    bot.runtime.manage.listing.forget()
    assert [a for a in bot.runtime.governance.job.run_once().actions if "idle" in a] == []


def test_an_idle_account_is_deleted_after_the_grace_period_with_both_warnings(bots, slack):
    bot, clock = start(bots, slack, idle_days=30, idle_action=IdleDeletion(delete_after_days=3))
    request = mint(bot, days=90)
    since = len(bot.slack.calls())
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    name = request.mixpanel_username

    clock.now += 31 * DAY
    job.run_once()  # the idle notice
    clock.now += 1 * DAY
    assert not [a for a in job.run_once().actions if name in a]
    clock.now += 1 * DAY  # a day before the deadline
    assert [a for a in job.run_once().actions if "warned" in a] == [
        f"{name}: warned of its deletion tomorrow"
    ]
    assert len([m for m in dms(bot, ALICE) if "will be deleted by the bot" in text_of(m)]) == 1
    bot.wait_idle()  # the audit channel is told in the background
    assert len(posts_to(bot, AUDIT, "will be deleted by the bot")) == 1
    clock.now += 12 * timedelta(hours=1)  # the deadline is a day after the warning, not before
    assert not any("deleted" in a or "warned" in a for a in job.run_once().actions)
    assert bot.mixpanel.delete_calls() == []

    clock.now += 12 * timedelta(hours=1)
    assert any(a.startswith(f"{name}: deleted") for a in job.run_once().actions)
    bot.wait_idle()
    assert len(bot.mixpanel.delete_calls()) == 1
    assert request.mixpanel_account_id not in bot.mixpanel.accounts
    assert len([m for m in dms(bot, ALICE) if "The bot deleted" in text_of(m)]) == 1
    deleted = audit_events(bot, AuditEvent.ACCOUNT_DELETED)
    assert len(deleted) == 1 and "governance" in deleted[0]["detail"]
    bot.slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.args.get("channel") == AUDIT
            and "deleted" in json.dumps(c.args)
        )
    )
    clock.now += 1 * DAY
    job.run_once()
    assert len(bot.mixpanel.delete_calls()) == 1
    no_token_anywhere(bot, since)


# --- 2. people who leave ---------------------------------------------------------------------------


def test_a_user_change_the_re_fetch_contradicts_changes_nothing(bots, slack):
    bot, _ = start(bots, slack, successor=SUCCESSORS)
    request = mint(bot, BOB, username="bobs-pipeline")
    lookups = len([c for c in slack.calls("users.info") if c.args.get("user") == BOB])

    user_change(bot, {"id": BOB, "deleted": True, "is_restricted": False})

    assert len([c for c in slack.calls("users.info") if c.args.get("user") == BOB]) == lookups + 1
    assert GovernanceStore(bot.store).ownership(request.mixpanel_account_id) is None
    assert dms(bot, CAROL) == [] and posts_to(bot, AUDIT, "needs a new owner") == []
    assert bot.store.get(request.id).owner == BOB


def test_a_real_departure_is_taken_over_by_a_successor_and_a_forged_take_over_changes_nothing(bots, slack):
    bot, _ = start(bots, slack, successor=SUCCESSORS)
    request = mint(bot, BOB, username="bobs-pipeline")
    since = len(bot.slack.calls())
    slack.add_user(BOB, deleted=True, name="bob")

    user_change(bot, {"id": BOB, "deleted": True})
    user_change(bot, {"id": BOB, "deleted": True})  # Slack repeats itself: still one offer

    offers = [m for m in dms(bot, CAROL) if "needs a new owner" in text_of(m)]
    assert len(offers) == 1 and request.mixpanel_username in text_of(offers[0])
    for action in (say.ACTION_TAKE_OVER, ACTION_DELETE, ACTION_REPLACE):
        assert button(offers[0], action)[1]["value"] == f"r:{request.id}"  # only an id
    assert bot.mixpanel.delete_calls() == []  # an event never deletes anything

    for forger in (DAVE, GUEST):  # not in the successor group; not a full member
        url = click(bot, forger, offers[0], say.ACTION_TAKE_OVER)
        assert "nothing changed" in answer_at(bot, url)
    assert bot.store.get(request.id).owner == BOB
    assert len(audit_events(bot, AuditEvent.MANAGE_REFUSED)) >= 2

    url = click(bot, CAROL, offers[0], say.ACTION_TAKE_OVER)
    assert "You now own" in answer_at(bot, url)
    assert bot.store.get(request.id).owner == CAROL and bot.store.get(request.id).requester_id == BOB
    assert GovernanceStore(bot.store).ownership(request.mixpanel_account_id).state is OwnershipState.TAKEN
    assert request.mixpanel_username in text_of(run_list(bot, CAROL))
    url = click(bot, ADMIN, offers[0], say.ACTION_TAKE_OVER)  # too late: first come, first served
    assert "nothing changed" in answer_at(bot, url)
    assert bot.store.get(request.id).owner == CAROL
    assert len(audit_events(bot, AuditEvent.OWNER_CHANGED)) == 1
    no_token_anywhere(bot, since)


def test_the_periodic_sweep_finds_an_owner_who_left_while_the_bot_was_down(bots, slack):
    bot, _ = start(bots, slack)  # no successor group: the admins, through the audit channel
    request = mint(bot, BOB, username="bobs-pipeline")
    slack.remove_user(BOB)
    run = bot.runtime.governance.job.run_once()
    assert any("ownership opened" in a for a in run.actions)
    assert len(posts_to(bot, AUDIT, "needs a new owner")) == 1
    assert run.counts["without_owner"] == 1
    lookups = [c for c in slack.calls("users.info") if c.args.get("user") == BOB]
    bot.runtime.governance.job.run_once()
    assert len(posts_to(bot, AUDIT, "needs a new owner")) == 1
    assert len([c for c in slack.calls("users.info") if c.args.get("user") == BOB]) == len(lookups)  # cached
    assert bot.store.get(request.id).owner == BOB


# --- 3. accounts made outside the bot ----------------------------------------------------------------


def test_an_unmanaged_account_is_reported_once_and_adopted(bots, slack):
    bot, _ = start(bots, slack, unmanaged="notify")
    soon = (datetime.now(UTC) + 3 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    made = bot.mixpanel.add_account(
        ORG_ID, "made-by-hand", role="analyst", projects=[{"id": 3001, "role": "analyst"}], expires=soon
    )
    job = bot.runtime.governance.job
    job.run_once()
    job.run_once()
    bot.wait_idle()
    notices = posts_to(bot, AUDIT, "New service account(s) made outside the bot")
    assert len(notices) == 1 and made["username"] in json.dumps(notices[0])

    listing = run_list(bot, ADMIN, "list all")
    assert "made in Mixpanel by Mixpanel user" in text_of(listing)
    block_id, adopt = button(listing, ACTION_ADOPT)
    assert adopt["value"] == f"a:{made['id']}"
    forged = bot.sender.block_actions(
        user_id=ALICE, actions=[{"action_id": ACTION_ADOPT, "block_id": block_id, "value": adopt["value"]}]
    )
    assert forged.status == 200
    clicked = bot.sender.block_actions(
        user_id=ADMIN, actions=[{"action_id": ACTION_ADOPT, "block_id": block_id, "value": adopt["value"]}]
    )
    view = opened_view(bot, clicked)
    assert forged.trigger_id not in str(bot.slack.calls("views.open"))  # Alice got no form
    assert bot.submit(view, {say.BLOCK_ADOPT_OWNER: ALICE}, ADMIN).status == 200
    bot.wait_idle()
    adopted = bot.runtime.manage.records.by_account_ids([made["id"]])[made["id"]]
    assert adopted.owner == ALICE and adopted.requester_id == ADMIN and adopted.project_ids == (3001,)
    assert made["username"] in text_of(run_list(bot, ALICE))
    assert len(audit_events(bot, AuditEvent.ADOPTED)) == 1
    assert bot.submit(view, {say.BLOCK_ADOPT_OWNER: BOB}, ADMIN).status == 200  # a replay: still Alice's
    bot.wait_idle()
    assert bot.runtime.manage.records.by_account_ids([made["id"]])[made["id"]].owner == ALICE
    assert job.run_once().counts["unmanaged"] == 0
    # Reminded like the bot's own: its new owner hears of its expiry.
    reminded = bot.runtime.reminders.run_once()
    assert [r.entry.username for r in reminded] == [made["username"]]
    assert any(made["username"] in text_of(m) and "expires" in text_of(m) for m in dms(bot, ALICE))
    assert made["token"] not in bot.slack.all_recorded_text() + dump_database(bot.store)


# --- 4. reviews ------------------------------------------------------------------------------------


def test_a_review_round_with_one_confirmed_and_one_unconfirmed_account(bots, slack, monkeypatch, capsys):
    bot, clock = start(bots, slack, review_every_days=90, review_grace_days=7)
    first = mint(bot, username="etl-a")
    second = mint(bot, username="etl-b")
    on_clock(bot, clock)
    job = bot.runtime.governance.job
    job.run_once()
    job.run_once()
    rounds = [m for m in dms(bot, ALICE) if "Periodic review" in text_of(m)]
    assert len(rounds) == 1
    assert first.mixpanel_username in text_of(rounds[0]) and second.mixpanel_username in text_of(rounds[0])
    keep_value = next(
        e["value"]
        for b in rounds[0]["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == say.ACTION_REVIEW_KEEP and e["value"].endswith(f":{first.mixpanel_account_id}")
    )
    url = click(bot, BOB, rounds[0], say.ACTION_REVIEW_KEEP, value=keep_value)  # not Bob's
    assert "nothing changed" in answer_at(bot, url)
    url = click(bot, ALICE, rounds[0], say.ACTION_REVIEW_KEEP, value=keep_value)
    assert "still needed" in answer_at(bot, url)

    clock.now += 8 * DAY
    job.run_once()
    job.run_once()
    overdue = posts_to(bot, AUDIT, "has not confirmed")
    assert len(overdue) == 1 and second.mixpanel_username in json.dumps(overdue[0])
    assert first.mixpanel_username not in json.dumps(overdue[0])
    assert bot.mixpanel.delete_calls() == []  # review_action report

    from bot.govern.cli import reviews_export

    monkeypatch.setenv("DATABASE_URL", bot.runtime.settings.database_url)
    assert reviews_export(output_format="json") == 0
    rows = {row["username"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[first.mixpanel_username]["answer"] == "still_needed"
    assert rows[first.mixpanel_username]["answered_by"] == ALICE
    assert rows[second.mixpanel_username]["answer"] is None


# --- 5. the posture --------------------------------------------------------------------------------


def test_the_posture_counts_a_known_organization(bots, slack):
    bot, clock = start(bots, slack, idle_days=30)
    alice_old = mint(bot, username="alice-old", days=10)  # expires within 14 days
    mint(bot, username="alice-new", days=60)
    mint(bot, BOB, username="bobs-pipeline", days=60)
    never = (datetime.now(UTC) - 400 * DAY).isoformat()
    bot.mixpanel.add_account(ORG_ID, "by-hand-forever", created=never)  # never expires, idle
    soon = (datetime.now(UTC) + 5 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    by_hand = bot.mixpanel.add_account(ORG_ID, "by-hand-soon", expires=soon)
    bot.mixpanel.use_account(by_hand["id"])
    slack.add_user(BOB, deleted=True, name="bob")
    on_clock(bot, clock)
    clock.now += 2 * DAY
    bot.mixpanel.use_account(alice_old.mixpanel_account_id, clock.now.isoformat())

    run = bot.runtime.governance.job.run_once()

    assert run.counts == {
        "live": 5,
        "owned_by_active_member": 2,
        "in_destination": 0,
        "rotated_on_schedule": 0,
        "idle": 1,
        "unmanaged": 2,
        "without_owner": 1,
        "expiring_within_14_days": 2,
        "never_expiring": 1,
    }
    summary = posts_to(bot, AUDIT, "Service accounts this week")
    assert len(summary) == 1 and "2 owned by an active member" in json.dumps(summary[0])
    bot.runtime.governance.job.run_once()
    assert len(posts_to(bot, AUDIT, "Service accounts this week")) == 1  # weekly, once

    bot.sender.event_callback({"type": "app_home_opened", "user": ADMIN, "channel": "DADMIN", "tab": "home"})
    home = bot.slack.wait_for(lambda c: c.method == "views.publish" and c.args.get("user_id") == ADMIN)[-1]
    assert "owned by an active member" in json.dumps(home.args)
    bot.sender.event_callback({"type": "app_home_opened", "user": ALICE, "channel": "DALICE", "tab": "home"})
    mine = bot.slack.wait_for(lambda c: c.method == "views.publish" and c.args.get("user_id") == ALICE)[-1]
    assert "owned by an active member" not in json.dumps(mine.args)
