"""Approvals through the wire: signed clicks in, what the fakes received out."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot.approve import messages as text
from bot.create import messages, views
from bot.models import Role
from bot.policy.file import ApprovalPolicy, ApprovalTriggers, ExpiryPolicy, PersonSelector, Policy
from tests import clock
from tests.conftest import ALICE, dump_database, form_values
from tests.fakes.mixpanel import respond
from tests.lifecycle import assert_within_block_kit

APPROVER = "UAPPROVER1"
SECOND = "UAPPROVER2"
BOB = "UBOB"  # a member who is no approver
CHANNEL = "C0APPROVALS"


def approval_policy(*, needed: int = 1, channel: str | None = CHANNEL, break_glass: bool = False) -> Policy:
    return Policy(
        max_role=Role.ADMIN,
        expiry=ExpiryPolicy(max_days=365, allow_never=True),
        approval=ApprovalPolicy(
            required_for=ApprovalTriggers(roles=[Role.ADMIN]),
            approvers=PersonSelector(users=[APPROVER, SECOND]),
            approvals_needed=needed,
            channel=channel,
            break_glass=break_glass,
        ),
    )


@pytest.fixture
def people(slack):
    for user in (APPROVER, SECOND, BOB):
        slack.add_user(user, name=user.lower())
    return slack


def start(bots, people, **policy_options: Any):
    return bots.start(policy=approval_policy(**policy_options), slack_cache_seconds=0)


def choices(role: str = "admin", **extra: Any) -> dict[str, Any]:
    return form_values(role=role, expires_on=None if extra.get("never") else clock.form_expiry(30), **extra)


def request_admin(bot, requester: str = ALICE, reason: str = "The nightly export needs admin") -> str:
    """Fill in the form as `requester`, asking for admin; return the request id from the approvers' post."""
    _, view, _ = bot.open_form(requester)
    values = choices()
    values[views.BLOCK_REASON] = reason
    before = len(approver_posts(bot))
    ack = bot.submit(view, values, user_id=requester)
    assert ack.json()["response_action"] == "update", ack.text
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.args["channel"] == f"D{requester}")
    posted = approver_posts(bot)
    assert len(posted) > before
    return button_value(posted[-1].args, text.ACTION_APPROVE)


def approver_posts(bot) -> list:
    return [
        c
        for c in bot.slack.calls("chat.postMessage")
        if any(button_ids(c.args)) and text.ACTION_APPROVE in button_ids(c.args)
    ]


def button_ids(message: dict) -> list[str]:
    blocks = message.get("blocks") or []
    return [e["action_id"] for b in blocks if b.get("type") == "actions" for e in b["elements"]]


def button_value(message: dict, action_id: str) -> str:
    for b in message.get("blocks") or []:
        for element in b.get("elements", []) if b.get("type") == "actions" else []:
            if element["action_id"] == action_id:
                return element["value"]
    raise AssertionError(f"no {action_id} in {message}")


def click(bot, user: str, action_id: str, request_id: str, channel: str = CHANNEL):
    """A click; returns the response_url the app would answer the clicker on."""
    response_url = bot.slack.new_response_url()
    result = bot.sender.block_actions(
        user_id=user,
        actions=[{"action_id": action_id, "value": request_id, "block_id": text.BLOCK_CONTROLS}],
        channel_id=channel,
        container={"type": "message", "message_ts": "1.1", "channel_id": channel, "is_ephemeral": False},
        response_url=response_url,
    )
    assert result.status == 200 and result.elapsed < 3
    return response_url


def told(bot, response_url: str) -> str:
    return bot.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == response_url)[
        0
    ].args["text"]


def updates_with(bot, needle: str, count: int = 1) -> list:
    return bot.slack.wait_for(
        lambda c: c.method == "chat.update" and needle in json.dumps(c.args), count=count
    )


def events(bot) -> list[tuple[str, str | None]]:
    return [(r["event"], r["actor_id"]) for r in bot.store.audit_trail()]


def state(bot, request_id: str) -> str:
    return bot.runtime.approvals.store.get(request_id).request.state


def approve_and_get_claim(bot, request_id: str) -> None:
    click(bot, APPROVER, text.ACTION_APPROVE, request_id)
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and text.ACTION_CLAIM in button_ids(c.args))


def claim(bot, user: str = ALICE, request_id: str = "") -> str:
    return click(bot, user, text.ACTION_CLAIM, request_id, channel=f"D{ALICE}")


# --- the form and the request -----------------------------------------------------------------------


def test_the_form_asks_for_a_reason_required_exactly_when_approval_is_needed(bots, people):
    bot = start(bots, people)
    _, view, _ = bot.open_form()
    reason = next(b for b in view["blocks"] if b.get("block_id") == views.BLOCK_REASON)
    assert reason["label"]["text"] == "Reason"

    refused = bot.submit(view, choices())
    assert refused.json() == {
        "response_action": "errors",
        "errors": {views.BLOCK_REASON: text.REASON_REQUIRED},
    }

    plain = bot.submit(view, choices("analyst"))  # needs no approval: created as today
    assert "Creating" in json.dumps(plain.json())
    bot.wait_idle()
    assert len(bot.mixpanel.create_calls()) == 1


def test_a_request_needing_approval_creates_nothing_and_asks_the_approvers(bots, people):
    bot = start(bots, people)
    _, view, _ = bot.open_form()
    values = choices()
    values[views.BLOCK_REASON] = "Backfill needs admin"
    ack = bot.submit(view, values)
    assert f"<@{APPROVER}>" in json.dumps(ack.json())  # the modal says who decides
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.args["channel"] == f"D{ALICE}")
    bot.wait_idle()

    posted = approver_posts(bot)[0].args
    request_id = button_value(posted, text.ACTION_APPROVE)
    assert posted["channel"] == CHANNEL
    assert button_value(posted, text.ACTION_DENY) == request_id  # the id alone
    summary = json.dumps(posted["blocks"])
    for shown in (f"<@{ALICE}>", "etl-nightly", "admin", "3001", "Backfill needs admin"):
        assert shown in summary
    dm = next(c.args for c in bot.slack.calls("chat.postMessage") if c.args["channel"] == f"D{ALICE}")
    assert button_ids(dm) == [text.ACTION_CANCEL]
    assert bot.mixpanel.create_calls() == []
    assert state(bot, request_id) == "pending_approval"
    assert events(bot) == [("approval_requested", ALICE)]
    assert bot.store.recent_count(ALICE) == 1  # counted when made


def test_a_two_second_rate_limit_on_the_approvers_post_is_waited_out(bots, people):
    """The post to the approvers comes after the ack: it may wait out a 429 (unlike a trigger-window call)."""
    bot = start(bots, people)
    bot.slack.set_http_status("chat.postMessage", 429, times=1, retry_after="2")
    request_id = request_admin(bot)
    bot.wait_idle()

    posts = [c for c in bot.slack.calls("chat.postMessage") if c.args["channel"] == CHANNEL]
    assert [c.status for c in posts] == [429, 200]
    assert state(bot, request_id) == "pending_approval"
    assert events(bot) == [("approval_requested", ALICE)]


def test_a_database_failure_opening_the_request_tells_the_requester_plainly(bots, people, monkeypatch):
    bot = start(bots, people)

    def unreachable_database(**_: Any):
        raise OperationalError("INSERT INTO requests", {}, Exception("connection refused"))

    monkeypatch.setattr(bot.runtime.approvals.store, "open", unreachable_database)
    _, view, _ = bot.open_form(ALICE)
    values = choices()
    values[views.BLOCK_REASON] = "needs admin"
    assert bot.submit(view, values, user_id=ALICE).json()["response_action"] == "update"
    sentence = messages.UNEXPECTED_FAILURE.format(contact=bot.runtime.policy.contact)
    bot.slack.wait_for(lambda c: c.method == "response_url" and c.args.get("text") == sentence)
    bot.slack.wait_for(
        lambda c: c.method == "views.update" and sentence in json.dumps(c.args, ensure_ascii=False)
    )
    assert approver_posts(bot) == []


def test_without_a_channel_each_approver_gets_a_dm(bots, people):
    bot = start(bots, people, channel=None)
    request_admin(bot)
    assert {c.args["channel"] for c in approver_posts(bot)} == {f"D{APPROVER}", f"D{SECOND}"}


# --- deciding -----------------------------------------------------------------------------------------


def test_self_approval_is_refused_even_for_an_approver(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot, requester=APPROVER)
    assert f"D{APPROVER}" not in {c.args["channel"] for c in approver_posts(bot)}
    answer = told(bot, click(bot, APPROVER, text.ACTION_APPROVE, request_id))
    assert answer == text.REFUSALS[text.Refusal.OWN_REQUEST]
    assert state(bot, request_id) == "pending_approval"
    assert bot.slack.calls("chat.update") == []


def test_a_non_approver_is_refused(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    for action in (text.ACTION_APPROVE, text.ACTION_DENY):
        assert told(bot, click(bot, BOB, action, request_id)) == text.REFUSALS[text.Refusal.NOT_AN_APPROVER]
    assert state(bot, request_id) == "pending_approval"
    assert bot.slack.calls("views.open")[-1].args["view"]["callback_id"] != text.DENY_CALLBACK_ID


def test_a_double_clicked_approve_makes_one_decision_and_the_message_says_who(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    threads = [
        threading.Thread(target=click, args=(bot, APPROVER, text.ACTION_APPROVE, request_id))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    updates_with(bot, f"Approved by <@{APPROVER}>")
    bot.wait_idle()
    assert [e for e in events(bot) if e[0] == "approved"] == [("approved", APPROVER)]
    assert state(bot, request_id) == "approved"
    updated = [c.args for c in bot.slack.calls("chat.update") if c.args["channel"] == CHANNEL][-1]
    assert button_ids(updated) == [text.ACTION_WITHDRAW]  # decided: no more Approve/Deny, only Withdraw


def test_a_late_approver_is_told_who_decided(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    click(bot, APPROVER, text.ACTION_APPROVE, request_id)
    updates_with(bot, f"Approved by <@{APPROVER}>")
    answer = told(bot, click(bot, SECOND, text.ACTION_APPROVE, request_id))
    assert f"<@{APPROVER}>" in answer and "already settled" in answer


def test_two_approvals_needed_come_from_two_distinct_approvers(bots, people):
    bot = start(bots, people, needed=2)
    request_id = request_admin(bot)
    click(bot, APPROVER, text.ACTION_APPROVE, request_id)
    updates_with(bot, "1 of 2 approvals")
    assert state(bot, request_id) == "pending_approval"
    again = told(bot, click(bot, APPROVER, text.ACTION_APPROVE, request_id))
    assert again == text.REFUSALS[text.Refusal.ALREADY_APPROVED_BY_YOU]
    click(bot, SECOND, text.ACTION_APPROVE, request_id)
    updates_with(bot, f"Approved by <@{APPROVER}>, <@{SECOND}>")
    claim_dm = bot.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and text.ACTION_CLAIM in button_ids(c.args)
    )[0].args
    assert claim_dm["channel"] == f"D{ALICE}" and text.CLAIM_LABEL in json.dumps(claim_dm)
    assert [e for e in events(bot) if e[0] == "approved"] == [("approved", APPROVER), ("approved", SECOND)]


def test_deny_asks_for_a_reason_and_tells_the_requester(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    click(bot, APPROVER, text.ACTION_DENY, request_id)
    modal = bot.slack.wait_for(
        lambda c: c.method == "views.open" and c.args["view"]["callback_id"] == text.DENY_CALLBACK_ID
    )[0]
    assert modal.args["view"]["private_metadata"] == request_id
    bot.sender.view_submission(
        modal.response["view"], user_id=APPROVER, values={text.DENY_REASON_BLOCK: "Use the analyst role"}
    )
    dm = bot.slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.args["channel"] == f"D{ALICE}"
            and "Use the analyst role" in json.dumps(c.args)
        )
    )[0].args
    assert f"Denied by <@{APPROVER}>" in json.dumps(dm) and button_ids(dm) == []
    updates_with(bot, f"Denied by <@{APPROVER}>")
    assert ("denied", APPROVER) in events(bot)
    trail = [r for r in bot.store.audit_trail() if r["event"] == "denied"]
    assert trail[0]["detail"] == "Use the analyst role"
    assert bot.mixpanel.create_calls() == []


def test_cancel_works_for_the_requester_alone(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    refused = told(bot, click(bot, APPROVER, text.ACTION_CANCEL, request_id, channel=f"D{ALICE}"))
    assert refused == text.REFUSALS[text.Refusal.NOT_THE_REQUESTER]
    assert state(bot, request_id) == "pending_approval"
    click(bot, ALICE, text.ACTION_CANCEL, request_id, channel=f"D{ALICE}")
    updates_with(bot, "Cancelled by the requester", count=2)  # the approvers' post and the DM
    assert state(bot, request_id) == "cancelled"
    assert ("cancelled", ALICE) in events(bot)
    late = told(bot, click(bot, APPROVER, text.ACTION_APPROVE, request_id))
    assert "already settled" in late


def test_an_undecided_request_expires_and_the_requester_is_told(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    bot.runtime.flow.d.clock = lambda: datetime.now(UTC) + timedelta(hours=25)
    assert bot.runtime.approvals.expire_due() == 1
    assert bot.runtime.approvals.expire_due() == 0
    updates_with(bot, "Expired at")
    assert state(bot, request_id) == "expired"
    bot.slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.args["channel"] == f"D{ALICE}"
            and "Expired" in json.dumps(c.args)
        )
    )
    assert told(bot, click(bot, APPROVER, text.ACTION_APPROVE, request_id)).startswith(
        "This request was already"
    )
    assert ("expired", None) in events(bot)


def test_one_reminder_goes_to_the_request_thread_after_remind_after_hours(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    assert bot.runtime.approvals.remind_due() == 0
    bot.runtime.flow.d.clock = lambda: datetime.now(UTC) + timedelta(hours=5)
    assert bot.runtime.approvals.remind_due() == 1
    assert bot.runtime.approvals.remind_due() == 0
    post = approver_posts(bot)[0]
    reminders = [c.args for c in bot.slack.calls("chat.postMessage") if c.args.get("thread_ts")]
    assert len(reminders) == 1
    assert reminders[0]["thread_ts"] == post.response["ts"] and reminders[0]["channel"] == CHANNEL
    assert f"<@{APPROVER}>" in reminders[0]["text"] and f"<@{SECOND}>" in reminders[0]["text"]
    assert state(bot, request_id) == "pending_approval"


def test_an_approved_request_left_unclaimed_expires(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)
    bot.runtime.flow.d.clock = lambda: datetime.now(UTC) + timedelta(hours=73)
    assert bot.runtime.approvals.expire_due() == 1
    assert "Expired at" in told(bot, claim(bot, request_id=request_id))
    assert state(bot, request_id) == "expired"
    assert bot.mixpanel.create_calls() == []


# --- claiming -----------------------------------------------------------------------------------------


def token_of(bot) -> str:
    tokens = bot.mixpanel.created_tokens()
    assert len(tokens) == 1
    return tokens[0]


def test_the_requesters_click_shows_the_token_in_the_modal_once(bots, people, debug_logs):
    bot = start(bots, people)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)

    refused = told(bot, claim(bot, BOB, request_id))
    assert refused == text.REFUSALS[text.Refusal.NOT_THE_REQUESTER]
    assert bot.mixpanel.create_calls() == []

    claim(bot, ALICE, request_id)
    shown = bot.slack.wait_for(
        lambda c: c.method == "views.update" and c.args["view"]["callback_id"] == text.CLAIM_CALLBACK_ID
    )[0]
    bot.wait_idle()
    token = token_of(bot)
    opened = next(c for c in bot.slack.calls("views.open") if "Creating" in json.dumps(c.args["view"]))
    assert shown.args["view_id"] == opened.response["view"]["id"]
    modal = json.dumps(shown.args["view"])
    full_username = bot.mixpanel.create_calls() and bot.store.get(request_id).mixpanel_username
    for content in (token, full_username, "shown only this once", "curl --user"):
        assert content in modal
    assert state(bot, request_id) == "delivered"
    assert ("claimed", ALICE) in events(bot)
    updates_with(bot, "was created and its token shown to you once")

    second = told(bot, claim(bot, ALICE, request_id))
    assert second == text.REFUSALS[text.Refusal.ALREADY_CLAIMED]
    assert len(bot.mixpanel.create_calls()) == 1

    # The token went to one place: that modal. Nowhere else, not in the database, not in the logs.
    carrying = [c for c in bot.slack.calls() if token in json.dumps(c.args, default=str)]
    assert carrying == [shown]
    assert token not in dump_database(bot.store)
    assert token not in debug_logs.text


def test_a_claim_after_the_requester_became_a_guest_is_refused(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)
    people.add_user(ALICE, is_restricted=True, name="alice")
    claim(bot, ALICE, request_id)
    bot.slack.wait_for(
        lambda c: c.method == "views.update" and "You may no longer create this account" in json.dumps(c.args)
    )
    assert bot.mixpanel.create_calls() == []
    assert state(bot, request_id) == "approved"


def test_a_claim_with_the_modal_closed_falls_back_to_an_ephemeral_message(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)
    bot.slack.fail(
        "views.update", "not_found", when=lambda args: args["view"]["callback_id"] == text.CLAIM_CALLBACK_ID
    )
    response_url = claim(bot, ALICE, request_id)
    bot.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == response_url)
    bot.wait_idle()
    token = token_of(bot)
    posts = [c for c in bot.slack.calls() if token in json.dumps(c.args, default=str)]
    assert [c.method for c in posts if c.status == 200 and (c.response == "ok" or c.response.get("ok"))] == [
        "response_url"
    ]
    assert posts[-1].args["_url"] == response_url and posts[-1].args["response_type"] == "ephemeral"
    assert state(bot, request_id) == "delivered"


def test_a_claim_whose_token_cannot_be_delivered_anywhere_deletes_the_account(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)
    bot.slack.fail(
        "views.update", "not_found", when=lambda args: args["view"]["callback_id"] == text.CLAIM_CALLBACK_ID
    )
    bot.slack.fail_response_urls()
    bot.slack.fail("chat.postEphemeral", "user_not_in_channel")
    claim(bot, ALICE, request_id)
    bot.mixpanel.wait_for("delete")
    bot.wait_idle()
    assert len(bot.mixpanel.create_calls()) == 1
    assert len(bot.mixpanel.delete_calls()) == 1
    assert bot.mixpanel.tokens == {}
    assert state(bot, request_id) == "deleted"
    updates_with(bot, text.CLAIM_NOT_COMPLETED)


def test_a_claim_that_mixpanel_refuses_says_so_in_the_modal(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)
    bot.mixpanel.script("create", respond(400, {"status": "error", "error": "username taken"}))
    claim(bot, ALICE, request_id)
    bot.slack.wait_for(lambda c: c.method == "views.update" and "username taken" in json.dumps(c.args))
    bot.wait_idle()
    assert state(bot, request_id) == "failed"
    assert bot.mixpanel.created_tokens() == []


# --- break glass --------------------------------------------------------------------------------------


def test_break_glass_creates_at_once_expiring_24_hours_later_and_tells_every_approver(bots, people):
    bot = start(bots, people, channel=None, break_glass=True)
    now = datetime.now(UTC)
    bot.runtime.flow.d.clock = lambda: now  # the test's one clock
    _, view, _ = bot.open_form(APPROVER)
    values = choices(never=True)
    values[views.BLOCK_REASON] = "Production incident"
    values[views.BLOCK_BREAK_GLASS] = [views.BREAK_GLASS_VALUE]
    ack = bot.submit(view, values, user_id=APPROVER)
    assert "Break glass" in json.dumps(ack.json())
    bot.wait_idle()
    bot.slack.wait_for("response_url")
    created = bot.mixpanel.create_calls()
    assert len(created) == 1
    assert created[0].json["expires"] == (now + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    notices = [c.args for c in bot.slack.calls("chat.postMessage") if "broke glass" in c.args.get("text", "")]
    assert {n["channel"] for n in notices} == {f"D{SECOND}"}
    assert ("break_glass", APPROVER) in events(bot)


def test_break_glass_is_not_offered_to_people_who_are_not_approvers(bots, people):
    bot = start(bots, people, break_glass=True)
    _, view, _ = bot.open_form(ALICE)
    assert views.BLOCK_BREAK_GLASS not in [b.get("block_id") for b in view["blocks"]]


# --- two instances ------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_approvals_on_two_instances_sharing_postgres_make_one_decision(
    bots, people, fresh_postgres_url
):
    policy = approval_policy()
    first = bots.start(policy=policy, database_url=fresh_postgres_url)
    second = bots.start(policy=policy, database_url=fresh_postgres_url)
    request_id = request_admin(first)
    barrier = threading.Barrier(2)
    answers: dict[str, str] = {}

    def approve(bot, who):
        barrier.wait()
        answers[who] = click(bot, who, text.ACTION_APPROVE, request_id)

    threads = [
        threading.Thread(target=approve, args=(first, APPROVER)),
        threading.Thread(target=approve, args=(second, SECOND)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] in answers.values())
    first.wait_idle()
    second.wait_idle()
    approvals = [e for e in events(first) if e[0] == "approved"]
    assert len(approvals) == 1
    winner = approvals[0][1]
    loser = SECOND if winner == APPROVER else APPROVER
    assert f"<@{winner}>" in told(first, answers[loser])
    assert first.slack.response_url_posts(answers[winner]) == []
    assert state(first, request_id) == "approved"


# --- audit --------------------------------------------------------------------------------------------

AUDIT = "C0AUDIT"


def test_every_transition_reaches_the_audit_channel_and_the_export_names_the_approver(
    bots, people, capsys, monkeypatch
):
    policy = approval_policy().model_copy(update={"audit_channel": AUDIT})
    bot = bots.start(policy=policy, slack_cache_seconds=0)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)
    claim(bot, ALICE, request_id)
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.args["channel"] == AUDIT, count=4)
    bot.wait_idle()
    audit_texts = [c.args["text"] for c in bot.slack.calls("chat.postMessage") if c.args["channel"] == AUDIT]
    assert any(f"<@{ALICE}> asked for approval" in t for t in audit_texts)
    assert any(f"<@{APPROVER}> approved" in t for t in audit_texts)
    assert any(f"<@{ALICE}> claimed" in t for t in audit_texts)
    token = token_of(bot)
    assert token not in json.dumps([c.args for c in bot.slack.calls("chat.postMessage")])

    from bot.__main__ import main as audit_main

    monkeypatch.setenv("DATABASE_URL", bot.runtime.settings.database_url)
    assert audit_main(["audit", "--since", clock.days_from_now(-1).isoformat(), "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [(r["event"], r["actor_id"]) for r in exported][:3] == [
        ("approval_requested", ALICE),
        ("approved", APPROVER),
        ("claimed", ALICE),
    ]


# --- requests nobody could decide -------------------------------------------------------------------


def test_a_request_that_reaches_no_approver_is_ended_and_the_requester_told(bots, people):
    policy = approval_policy().model_copy(update={"audit_channel": "C0AUDIT"})
    bot = bots.start(policy=policy, slack_cache_seconds=0)
    bot.slack.fail("chat.postMessage", "not_in_channel", when=lambda args: args.get("channel") == CHANNEL)
    _, view, _ = bot.open_form(ALICE)
    values = choices()
    values[views.BLOCK_REASON] = "The nightly export needs admin"

    ack = bot.submit(view, values)

    assert ack.json()["response_action"] == "update"
    told_in_modal = bot.slack.wait_for(
        lambda c: c.method == "views.update" and "could not reach any approver" in json.dumps(c.args)
    )
    assert told_in_modal
    bot.wait_idle()
    request = bot.store.audit_trail()[-1]["request_id"]
    assert state(bot, request) == "expired"
    assert ("expired", None) in events(bot)
    announced = bot.slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.args["channel"] == "C0AUDIT"
            and "reached no approver" in json.dumps(c.args)
        )
    )
    assert announced
    # No "waiting for approval" DM with a Cancel control promises a decision that cannot come.
    waiting = [c for c in bot.slack.calls("chat.postMessage") if "waiting for approval" in json.dumps(c.args)]
    assert waiting == []
    assert bot.mixpanel.create_calls() == []


def test_an_approvers_own_request_with_too_few_other_approvers_is_refused_plainly(bots, people):
    bot = start(bots, people, needed=2)  # approvers: APPROVER and SECOND; APPROVER asks
    _, view, _ = bot.open_form(APPROVER)
    values = choices()
    values[views.BLOCK_REASON] = "I need admin myself"

    ack = bot.submit(view, values, user_id=APPROVER)

    assert "does not name enough other approvers" in json.dumps(ack.json())
    bot.wait_idle()
    assert approver_posts(bot) == []
    assert [e for e, _ in events(bot) if e == "approval_requested"] == []
    # Someone who is no approver has two others, and may ask.
    assert request_admin(bot, ALICE)


def test_an_approver_from_a_workspace_no_longer_admitted_cannot_approve(bots, people):
    people.add_user(APPROVER, name="approver", team_id="T2", is_stranger=True)
    bot = start(bots, people)
    request_id = request_admin(bot)

    answer = told(bot, click(bot, APPROVER, text.ACTION_APPROVE, request_id))

    assert answer == text.REFUSALS[text.Refusal.NOT_AN_APPROVER]
    assert state(bot, request_id) == "pending_approval"


def test_a_request_for_many_long_named_projects_stays_within_block_kit(bots, people, mixpanel):
    ids = list(range(6000, 6070))
    for pid in ids:
        name = f"Marketing analytics EMEA subsidiary {pid} production"
        mixpanel.projects[pid] = {"id": pid, "name": name, "organization_id": 1234}
    bot = start(bots, people)
    _, view, _ = bot.open_form(ALICE)
    values = choices(projects=ids)
    values[views.BLOCK_REASON] = "r" * 500

    assert bot.submit(view, values).json()["response_action"] == "update"

    posted = bot.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and text.ACTION_APPROVE in button_ids(c.args)
    )[-1]
    assert_within_block_kit(posted.args)
    assert "and 60 more" in json.dumps(posted.args)
