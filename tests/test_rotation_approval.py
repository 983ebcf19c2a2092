"""A successor that today's policy sends for approval: the approvers are asked as for any request, and
once one approves, the rotation goes on by itself; a denial stops it."""

from __future__ import annotations

import pytest

from bot.approve import messages as text
from bot.db.schema import RequestState
from bot.models import Role
from bot.policy.file import ApprovalPolicy, ApprovalTriggers, PersonSelector
from bot.rotate.states import RotationState
from tests.conftest import ALICE
from tests.fakes.vault import FakeVault
from tests.rotation_harness import ADMIN, dms_to, due, mint, rotating_bot, rotation_of, run, successor_of
from tests.test_approvals import approver_posts, button_ids, button_value, click, events

S = RotationState


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def approval_for_long_accounts(days: int) -> ApprovalPolicy:
    return ApprovalPolicy(
        required_for=ApprovalTriggers(expiry_over_days=days), approvers=PersonSelector(users=[ADMIN])
    )


def bot_whose_policy_now_wants_approval(bots, vault, slack):
    """The account was made when 30 days needed no approval; today's policy wants one beyond 10 days."""
    bot, clock = rotating_bot(bots, vault, slack, approval=approval_for_long_accounts(60))
    old = mint(bot)
    deps = bot.runtime.flow.d
    deps.policy = deps.policy.model_copy(update={"approval": approval_for_long_accounts(10)})
    due(old, clock)
    return bot, clock, old


def test_an_approved_successor_is_made_without_the_owner_clicking(bots, vault, slack):
    bot, clock, old = bot_whose_policy_now_wants_approval(bots, vault, slack)

    assert run(bot) == [S.WAITING_FOR_APPROVAL]
    assert len(bot.mixpanel.create_calls()) == 1  # nothing made before the yes
    assert any("approvers have been asked" in message for message in dms_to(bot, ALICE))
    [post] = approver_posts(bot)
    assert post.args["channel"] == "D" + ADMIN and "Rotation: the successor of" in str(post.args)
    assert run(bot) == []  # still waiting

    click(bot, ADMIN, text.ACTION_APPROVE, button_value(post.args, text.ACTION_APPROVE))
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and text.ACTION_CLAIM in button_ids(c.args))
    clock.advance(minutes=15)

    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]
    successor = successor_of(bot, old)
    assert vault.secret("secret", "mixpanel/etl-nightly")["account_id"] == successor.mixpanel_account_id
    claims = [row for row in bot.store.audit_trail() if row["event"] == "claimed"]
    assert [row["request_id"] for row in claims] == [successor.id]


def test_a_denied_successor_stops_the_rotation_and_keeps_the_old_account(bots, vault, slack):
    bot, clock, old = bot_whose_policy_now_wants_approval(bots, vault, slack)
    run(bot)
    request_id = button_value(approver_posts(bot)[-1].args, text.ACTION_APPROVE)
    bot.runtime.approvals.store.deny(request_id, ADMIN, "not any more", now=clock())

    assert run(bot) == [S.FAILED]
    assert "did not approve" in rotation_of(bot, old).failure
    assert old.mixpanel_account_id in bot.mixpanel.accounts and len(bot.mixpanel.create_calls()) == 1
    assert "could not be rotated" in dms_to(bot, ALICE)[-1]


def test_an_owner_who_clicks_create_after_the_approval_does_not_get_a_second_successor(bots, vault, slack):
    from tests.test_approvals import claim

    bot, _, old = bot_whose_policy_now_wants_approval(bots, vault, slack)
    run(bot)
    request_id = button_value(approver_posts(bot)[-1].args, text.ACTION_APPROVE)
    click(bot, ADMIN, text.ACTION_APPROVE, request_id)
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and text.ACTION_CLAIM in button_ids(c.args))
    claim(bot, ALICE, request_id)  # the owner clicks Create and show token before the next run
    making = (RequestState.APPROVED, RequestState.SUBMITTED, RequestState.CREATED)
    wait_until(lambda: bot.store.get(request_id).state not in making)  # the owner's create has ended

    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]
    assert len(bot.mixpanel.create_calls()) == 2  # the original and the one successor
    assert successor_of(bot, old).id == request_id
    assert (
        vault.secret("secret", "mixpanel/etl-nightly")["account_id"]
        == successor_of(bot, old).mixpanel_account_id
    )


def wait_until(condition, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- the approvals of a successor are judged by today's policy, like any request's -----------------------

SECOND_APPROVER = "UAPPROVER2"


def approve_the_successor(bot, clock) -> str:
    """The rotation asks; ADMIN approves; the owner's Create button has gone out. The successor's id."""
    assert run(bot) == [S.WAITING_FOR_APPROVAL]
    request_id = button_value(approver_posts(bot)[-1].args, text.ACTION_APPROVE)
    click(bot, ADMIN, text.ACTION_APPROVE, request_id)
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and text.ACTION_CLAIM in button_ids(c.args))
    clock.advance(minutes=15)
    return request_id


def test_a_successor_whose_approver_is_no_approver_today_is_not_claimed_but_asked_again(bots, vault, slack):
    """Approved by ADMIN; restarted with a policy whose only approver is another person: the rotation may not
    claim on a yes that no longer counts. It goes back to pending, today's approver is asked, and once they
    say yes the rotation goes on."""
    slack.add_user(SECOND_APPROVER, tz="UTC", name="second")
    before, clock, old = bot_whose_policy_now_wants_approval(bots, vault, slack)
    request_id = approve_the_successor(before, clock)
    today = ApprovalPolicy(
        required_for=ApprovalTriggers(expiry_over_days=10), approvers=PersonSelector(users=[SECOND_APPROVER])
    )
    after, _ = rotating_bot(bots, vault, slack, approval=today)
    after.runtime.flow.d.clock = clock
    asked_before = len(approver_posts(after))

    assert run(after) == []

    assert len(after.mixpanel.create_calls()) == 1  # only the old account, ever
    assert after.store.get(request_id).state is RequestState.PENDING_APPROVAL
    assert rotation_of(after, old).state is S.WAITING_FOR_APPROVAL
    assert ("approval_reopened", None) in events(after)
    assert [c.args["channel"] for c in approver_posts(after)[asked_before:]] == ["D" + SECOND_APPROVER]

    click(after, SECOND_APPROVER, text.ACTION_APPROVE, request_id)
    wait_until(lambda: after.store.get(request_id).state is RequestState.APPROVED)
    after.wait_idle()
    assert run(after) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]
    assert successor_of(after, old).id == request_id


def test_a_successor_that_needs_more_approvals_today_waits_for_them(bots, vault, slack):
    """One yes sufficed when it was given; today's policy needs two: the rotation does not claim."""
    slack.add_user(SECOND_APPROVER, tz="UTC", name="second")
    before, clock, old = bot_whose_policy_now_wants_approval(bots, vault, slack)
    request_id = approve_the_successor(before, clock)
    today = ApprovalPolicy(
        required_for=ApprovalTriggers(expiry_over_days=10),
        approvers=PersonSelector(users=[ADMIN, SECOND_APPROVER]),
        approvals_needed=2,
    )
    after, _ = rotating_bot(bots, vault, slack, approval=today)
    after.runtime.flow.d.clock = clock

    assert run(after) == []

    assert len(after.mixpanel.create_calls()) == 1
    assert after.store.get(request_id).state is RequestState.PENDING_APPROVAL
    assert rotation_of(after, old).state is S.WAITING_FOR_APPROVAL


def test_a_withdrawn_successor_approval_stops_the_rotation_and_keeps_the_old_account(bots, vault, slack):
    bot, clock, old = bot_whose_policy_now_wants_approval(bots, vault, slack)
    request_id = approve_the_successor(bot, clock)
    click(bot, ADMIN, text.ACTION_WITHDRAW, request_id)
    wait_until(lambda: bot.store.get(request_id).state is RequestState.WITHDRAWN)

    assert run(bot) == [S.FAILED]

    assert "did not approve" in rotation_of(bot, old).failure
    assert old.mixpanel_account_id in bot.mixpanel.accounts and len(bot.mixpanel.create_calls()) == 1
    assert "could not be rotated" in dms_to(bot, ALICE)[-1]


def test_an_approved_successor_that_todays_policy_refuses_is_not_claimed(bots, vault, slack):
    """Approved while the policy allowed analysts; by the next run it allows consumers only: as for a
    person's claim, the successor is judged again, nothing is made, and the rotation stops, told."""
    bot, clock, old = bot_whose_policy_now_wants_approval(bots, vault, slack)
    request_id = approve_the_successor(bot, clock)
    deps = bot.runtime.flow.d
    deps.policy = deps.policy.model_copy(update={"max_role": Role.CONSUMER})

    assert run(bot) == [S.FAILED]

    assert len(bot.mixpanel.create_calls()) == 1
    assert bot.store.get(request_id).state is RequestState.CANCELLED
    assert "today's policy would not allow" in rotation_of(bot, old).failure
    assert "could not be rotated" in dms_to(bot, ALICE)[-1]
