"""Approvals under a changing policy, withdrawal, break glass's limits, refusals and people's free text:
through the wire, asserting on what the fakes received."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.approve import messages as text
from bot.approve.states import Refusal
from bot.create import views
from bot.create.messages import refusal_text
from bot.manage.messages import _REFUSALS as MANAGE_REFUSALS
from bot.manage.permissions import ManageRefusal
from bot.models import Role
from bot.policy.access import RefusalReason
from bot.policy.file import ApprovalPolicy, ApprovalTriggers, ExpiryPolicy, PersonSelector, Policy
from tests.conftest import ALICE, dump_database
from tests.test_approvals import (
    APPROVER,
    BOB,
    CHANNEL,
    SECOND,
    approval_policy,
    approve_and_get_claim,
    approver_posts,
    button_ids,
    choices,
    claim,
    click,
    events,
    request_admin,
    start,
    state,
    told,
    updates_with,
)

THIRD = "UAPPROVER3"
FOURTH = "UAPPROVER4"


@pytest.fixture
def people(slack):
    for user in (APPROVER, SECOND, BOB):
        slack.add_user(user, name=user.lower())
    return slack


def policy_of(approvers: list[str], needed: int, **extra: Any) -> Policy:
    return Policy(
        max_role=Role.ADMIN,
        expiry=ExpiryPolicy(max_days=365, allow_never=True),
        approval=ApprovalPolicy(
            required_for=ApprovalTriggers(roles=[Role.ADMIN]),
            approvers=PersonSelector(users=approvers),
            approvals_needed=needed,
            channel=CHANNEL,
        ),
        **extra,
    )


def add_approvers(people) -> None:
    for user in (THIRD, FOURTH):
        people.add_user(user, name=user.lower())


def modal_texts(bot) -> str:
    return json.dumps([c.args for c in bot.slack.calls("views.update")])


# --- a policy change reaches requests already open ------------------------------------------------


def test_after_a_policy_change_a_yes_from_a_former_approver_no_longer_counts(bots, people):
    """2 of {A1, A2, A3}; A1 says yes. Restarted with 3 of {A2, A3, A4}: A2's click is 1 of 3, not done."""
    add_approvers(people)
    before = bots.start(policy=policy_of([APPROVER, SECOND, THIRD], 2), slack_cache_seconds=0)
    request_id = request_admin(before)
    click(before, APPROVER, text.ACTION_APPROVE, request_id)
    updates_with(before, "1 of 2 approvals")
    after = bots.start(policy=policy_of([SECOND, THIRD, FOURTH], 3), slack_cache_seconds=0)

    click(after, SECOND, text.ACTION_APPROVE, request_id)

    updates_with(after, f"1 of 3 approvals: <@{SECOND}>")
    assert state(after, request_id) == "pending_approval"
    trail = [r["detail"] for r in after.store.audit_trail() if r["event"] == "approved"]
    assert trail == ["1 of 2 approvals", "1 of 3 approvals"]
    click(after, THIRD, text.ACTION_APPROVE, request_id)
    updates_with(after, "2 of 3 approvals")
    assert state(after, request_id) == "pending_approval"
    click(after, FOURTH, text.ACTION_APPROVE, request_id)
    updates_with(after, f"Approved by <@{SECOND}>, <@{THIRD}>, <@{FOURTH}>")
    assert state(after, request_id) == "approved"


def test_an_approval_that_lapsed_is_not_claimed_but_goes_back_to_todays_approvers(bots, people):
    add_approvers(people)
    before = bots.start(policy=policy_of([APPROVER, SECOND], 1), slack_cache_seconds=0)
    request_id = request_admin(before)
    approve_and_get_claim(before, request_id)
    after = bots.start(policy=policy_of([SECOND, THIRD], 1), slack_cache_seconds=0)
    asked_before = len(approver_posts(after))

    claim(after, ALICE, request_id)

    after.slack.wait_for(
        lambda c: c.method == "views.update" and text.REFUSALS[Refusal.APPROVALS_LAPSED] in json.dumps(c.args)
    )
    after.wait_idle()
    assert after.mixpanel.create_calls() == []
    assert state(after, request_id) == "pending_approval"
    assert ("approval_reopened", None) in events(after)
    asked_again = approver_posts(after)[asked_before:]
    assert [c.args["channel"] for c in asked_again] == [CHANNEL]
    requester_dm = after.slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.args["channel"] == f"D{ALICE}"
            and "The approval policy changed" in json.dumps(c.args)
        )
    )[0].args
    assert button_ids(requester_dm) == [text.ACTION_CANCEL]
    # A former approver's click is refused; today's approver decides, and the claim then creates.
    assert (
        told(after, click(after, APPROVER, text.ACTION_APPROVE, request_id))
        == (text.REFUSALS[Refusal.NOT_AN_APPROVER])
    )
    approve_by = click(after, SECOND, text.ACTION_APPROVE, request_id)
    updates_with(after, f"Approved by <@{SECOND}>")
    assert after.slack.response_url_posts(approve_by) == []
    claim(after, ALICE, request_id)
    after.mixpanel.wait_for("create")
    after.wait_idle()
    assert state(after, request_id) == "delivered"


# --- withdrawing an approval ----------------------------------------------------------------------


def test_an_approver_withdraws_an_unclaimed_approval_and_the_requester_is_told(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)
    assert (
        told(bot, click(bot, BOB, text.ACTION_WITHDRAW, request_id)) == text.REFUSALS[Refusal.NOT_AN_APPROVER]
    )
    assert state(bot, request_id) == "approved"

    click(bot, SECOND, text.ACTION_WITHDRAW, request_id)

    updates_with(bot, f"withdrawn by <@{SECOND}>")
    assert state(bot, request_id) == "withdrawn"
    assert ("approval_withdrawn", SECOND) in events(bot)
    dm = bot.slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.args["channel"] == f"D{ALICE}"
            and f"withdrawn by <@{SECOND}>" in json.dumps(c.args)
        )
    )[0].args
    assert button_ids(dm) == []
    approvers_view = [c.args for c in bot.slack.calls("chat.update") if c.args["channel"] == CHANNEL][-1]
    assert button_ids(approvers_view) == []
    assert "already settled" in told(bot, claim(bot, ALICE, request_id))
    assert bot.mixpanel.create_calls() == []


def test_an_admin_who_is_no_approver_may_withdraw_but_not_after_the_claim(bots, people):
    policy = approval_policy().model_copy(update={"admins": PersonSelector(users=[BOB])})
    bot = bots.start(policy=policy, slack_cache_seconds=0)
    first = request_admin(bot)
    approve_and_get_claim(bot, first)
    click(bot, BOB, text.ACTION_WITHDRAW, first)
    updates_with(bot, f"withdrawn by <@{BOB}>")
    assert state(bot, first) == "withdrawn"

    _, view, _ = bot.open_form(ALICE)
    values = choices(username="second-one")
    values[views.BLOCK_REASON] = "Another export"
    bot.submit(view, values)
    second = bot.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and "second-one" in json.dumps(c.args)
    )
    second_id = next(
        e["value"] for b in second[0].args["blocks"] if b.get("type") == "actions" for e in b["elements"]
    )
    click(bot, APPROVER, text.ACTION_APPROVE, second_id)
    bot.slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and second_id in json.dumps(c.args)
            and text.ACTION_CLAIM in button_ids(c.args)
        )
    )
    claim(bot, ALICE, second_id)
    bot.mixpanel.wait_for("create")
    bot.wait_idle()
    answer = told(bot, click(bot, BOB, text.ACTION_WITHDRAW, second_id))
    assert answer == text.REFUSALS[Refusal.ALREADY_CLAIMED]
    assert state(bot, second_id) == "delivered"


# --- break glass ------------------------------------------------------------------------------------


def break_glass(bot, user: str = APPROVER):
    _, view, _ = bot.open_form(user)
    values = choices(never=True)
    values[views.BLOCK_REASON] = "Production incident"
    values[views.BLOCK_BREAK_GLASS] = [views.BREAK_GLASS_VALUE]
    return bot.submit(view, values, user_id=user)


def test_break_glass_that_no_other_approver_hears_of_creates_nothing(bots, people):
    bot = start(bots, people, channel=None, break_glass=True)
    bot.slack.fail(
        "chat.postMessage", "channel_not_found", when=lambda args: args.get("channel") == f"D{SECOND}"
    )

    ack = break_glass(bot)

    assert ack.json()["response_action"] == "update"
    sentence = text.BREAK_GLASS_UNANNOUNCED.format(contact=bot.runtime.policy.contact)
    bot.slack.wait_for(lambda c: c.method == "views.update" and sentence in json.dumps(c.args))
    bot.wait_idle()
    assert bot.mixpanel.create_calls() == []
    refused = [r for r in bot.store.audit_trail() if r["event"] == "break_glass_refused"]
    assert len(refused) == 1 and refused[0]["requester_id"] == APPROVER
    assert bot.store.get(refused[0]["request_id"]).state == "failed"


def test_break_glass_heard_only_by_the_audit_channel_goes_ahead(bots, people):
    policy = approval_policy(channel=None, break_glass=True).model_copy(update={"audit_channel": "C0AUDIT"})
    bot = bots.start(policy=policy, slack_cache_seconds=0)
    bot.slack.fail(
        "chat.postMessage", "channel_not_found", when=lambda args: args.get("channel") == f"D{SECOND}"
    )

    break_glass(bot)

    bot.mixpanel.wait_for("create")
    bot.wait_idle()
    audit = [c for c in bot.slack.calls("chat.postMessage") if c.args["channel"] == "C0AUDIT"]
    assert any("broke glass" in c.args["text"] and c.status == 200 for c in audit)
    assert len(bot.mixpanel.create_calls()) == 1


# --- refusals have sentences everywhere -----------------------------------------------------------


def test_a_claim_by_a_requester_from_a_workspace_no_longer_admitted_is_refused_and_audited(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    approve_and_get_claim(bot, request_id)
    people.add_user(ALICE, name="alice", team_id="T2", is_stranger=True)

    claim(bot, ALICE, request_id)

    sentence = text.CLAIM_REFUSED.format(
        why=text.WHY_REFUSED[RefusalReason.EXTERNAL], contact=bot.runtime.policy.contact
    )
    bot.slack.wait_for(lambda c: c.method == "views.update" and sentence in json.dumps(c.args))
    bot.wait_idle()
    refusals = [r["detail"] for r in bot.store.audit_trail() if r["event"] == "refused"]
    assert refusals == [f"claim refused: {text.WHY_REFUSED[RefusalReason.EXTERNAL]}"]
    assert state(bot, request_id) == "approved"
    assert bot.mixpanel.create_calls() == []


def test_every_refusal_reason_has_its_own_sentence_in_every_map():
    assert set(text.WHY_REFUSED) == set(RefusalReason)
    assert len(set(text.WHY_REFUSED.values())) == len(RefusalReason)
    assert set(text.REFUSALS) == set(Refusal) - {Refusal.NOT_PENDING}  # NOT_PENDING says who settled it
    assert set(MANAGE_REFUSALS) == set(ManageRefusal)
    sentences = {reason: refusal_text(reason, contact="#help", quota=3) for reason in RefusalReason}
    assert len(set(sentences.values())) == len(RefusalReason)


# --- people's free text ---------------------------------------------------------------------------

HOSTILE = "Nightly export\n*Approved by:* <@USECURITY> _at once_ &amp; <!channel>"


def text_objects(blocks: list[dict]) -> list[dict]:
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and "text" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def test_a_hostile_reason_reaches_the_approvers_only_as_plain_text(bots, people):
    bot = start(bots, people)
    request_admin(bot, reason=HOSTILE)

    blocks = approver_posts(bot)[-1].args["blocks"]

    objects = text_objects(blocks)
    assert [o["text"] for o in objects if o["type"] == "plain_text" and HOSTILE in o["text"]]
    assert not [o for o in objects if o["type"] == "mrkdwn" and "Approved by:" in o["text"]]


def test_a_deny_reason_is_capped_on_the_server_and_shown_as_plain_text(bots, people):
    bot = start(bots, people)
    request_id = request_admin(bot)
    click(bot, APPROVER, text.ACTION_DENY, request_id)
    modal = bot.slack.wait_for(
        lambda c: c.method == "views.open" and c.args["view"]["callback_id"] == text.DENY_CALLBACK_ID
    )[0]
    too_long = "x" * (views.REASON_MAX_LENGTH + 1)

    refused = bot.sender.view_submission(
        modal.response["view"], user_id=APPROVER, values={text.DENY_REASON_BLOCK: too_long}
    )

    assert refused.json() == {
        "response_action": "errors",
        "errors": {text.DENY_REASON_BLOCK: text.DENY_REASON_TOO_LONG},
    }
    assert state(bot, request_id) == "pending_approval"
    assert too_long not in dump_database(bot.store)

    bot.sender.view_submission(
        modal.response["view"], user_id=APPROVER, values={text.DENY_REASON_BLOCK: HOSTILE}
    )
    dm = bot.slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage" and c.args["channel"] == f"D{ALICE}" and "Denied" in c.args["text"]
        )
    )[0].args
    objects = text_objects(dm["blocks"])
    assert [o for o in objects if o["type"] == "plain_text" and HOSTILE in o["text"]]
    assert not [o for o in objects if o["type"] == "mrkdwn" and "Approved by:" in o["text"]]
    assert state(bot, request_id) == "denied"
