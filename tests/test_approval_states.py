"""The pure approval state machine: a table of who may do what, and a Hypothesis stateful test."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bot.approve.states import (
    FINAL_STATES,
    Action,
    ApprovalRequest,
    ApprovalState,
    Refusal,
    TodaysPolicy,
    start,
    step,
)

REQUESTER = "UREQ"
APPROVERS = frozenset({"UA1", "UA2", "UA3"})
OUTSIDER = "UOUT"


def pending(needed: int = 1, **changes) -> ApprovalRequest:
    return ApprovalRequest(requester_id=REQUESTER, approvals_needed=needed, **changes)


def approved(needed: int = 1, by: frozenset[str] = frozenset({"UA1"})) -> ApprovalRequest:
    return pending(needed, state=ApprovalState.APPROVED, approved_by=by)


@pytest.mark.parametrize(
    ("request_", "action", "actor", "is_approver", "expected"),
    [
        (pending(), Action.APPROVE, REQUESTER, True, Refusal.OWN_REQUEST),
        (pending(), Action.DENY, REQUESTER, True, Refusal.OWN_REQUEST),
        (pending(), Action.APPROVE, OUTSIDER, False, Refusal.NOT_AN_APPROVER),
        (pending(), Action.DENY, OUTSIDER, False, Refusal.NOT_AN_APPROVER),
        (pending(), Action.CANCEL, "UA1", True, Refusal.NOT_THE_REQUESTER),
        (pending(), Action.CLAIM, "UA1", True, Refusal.NOT_THE_REQUESTER),
        (pending(), Action.CLAIM, REQUESTER, False, Refusal.NOT_APPROVED),
        (pending(state=ApprovalState.DENIED), Action.APPROVE, "UA1", True, Refusal.NOT_PENDING),
        (pending(state=ApprovalState.APPROVED), Action.DENY, "UA1", True, Refusal.NOT_PENDING),
        (pending(state=ApprovalState.CLAIMED), Action.CLAIM, REQUESTER, False, Refusal.ALREADY_CLAIMED),
        (pending(state=ApprovalState.EXPIRED), Action.CLAIM, REQUESTER, False, Refusal.NOT_PENDING),
        (pending(state=ApprovalState.CLAIMED), Action.CANCEL, REQUESTER, False, Refusal.NOT_PENDING),
        (
            pending(2, approved_by=frozenset({"UA1"})),
            Action.APPROVE,
            "UA1",
            True,
            Refusal.ALREADY_APPROVED_BY_YOU,
        ),
        (pending(), Action.APPROVE, "UA1", True, None),
        (pending(), Action.DENY, "UA1", True, None),
        (pending(), Action.CANCEL, REQUESTER, False, None),
        (approved(), Action.CANCEL, REQUESTER, False, None),
        (approved(), Action.CLAIM, REQUESTER, False, None),
        (approved(), Action.WITHDRAW, "UA2", True, None),
        (approved(), Action.WITHDRAW, OUTSIDER, False, Refusal.NOT_AN_APPROVER),
        (approved(), Action.WITHDRAW, REQUESTER, True, Refusal.OWN_REQUEST),
        (pending(), Action.WITHDRAW, "UA1", True, Refusal.NOT_APPROVED),
        (pending(state=ApprovalState.CLAIMED), Action.WITHDRAW, "UA1", True, Refusal.ALREADY_CLAIMED),
        (pending(state=ApprovalState.DENIED), Action.WITHDRAW, "UA1", True, Refusal.NOT_PENDING),
        (pending(state=ApprovalState.WITHDRAWN), Action.CLAIM, REQUESTER, False, Refusal.NOT_PENDING),
        (pending(state=ApprovalState.WITHDRAWN), Action.CANCEL, REQUESTER, False, Refusal.NOT_PENDING),
        (approved(), Action.REOPEN, "UA1", True, Refusal.NOT_THE_REQUESTER),
    ],
)
def test_who_may_do_what(request_, action, actor, is_approver, expected):
    assert step(request_, action, actor, actor_is_approver=is_approver).refusal == expected


def test_an_admin_who_is_no_approver_may_withdraw_an_approval():
    assert step(approved(), Action.WITHDRAW, OUTSIDER, actor_is_admin=True).request.state is (
        ApprovalState.WITHDRAWN
    )
    late = step(approved(), Action.WITHDRAW, OUTSIDER, actor_is_admin=True, deadline_passed=True)
    assert late.refusal is Refusal.TOO_LATE


def test_a_yes_from_someone_no_longer_an_approver_does_not_count():
    """Needed 2 of {UA1, UA2, UA3}, UA1 said yes; today 3 of {UA2, UA3, UA4}: UA2's yes is the first."""
    today = TodaysPolicy(still_approvers=frozenset(), approvals_needed=3)
    after = step(
        pending(2, approved_by=frozenset({"UA1"})), Action.APPROVE, "UA2", actor_is_approver=True, today=today
    )
    assert after.request.state is ApprovalState.PENDING
    assert after.request.approved_by == {"UA2"} and after.request.approvals_needed == 3


def test_the_stored_number_needed_is_kept_when_the_policy_asks_fewer():
    today = TodaysPolicy(still_approvers=frozenset({"UA1"}), approvals_needed=1)
    after = step(
        pending(2, approved_by=frozenset({"UA1"})), Action.APPROVE, "UA2", actor_is_approver=True, today=today
    )
    assert after.request.state is ApprovalState.APPROVED and after.request.approvals_needed == 2
    one = step(pending(2), Action.APPROVE, "UA2", actor_is_approver=True, today=today).request
    assert one.state is ApprovalState.PENDING


def test_an_approval_that_lapsed_cannot_be_claimed_and_the_bot_reopens_it():
    today = TodaysPolicy(still_approvers=frozenset(), approvals_needed=1)
    assert step(approved(), Action.CLAIM, REQUESTER, today=today).refusal is Refusal.APPROVALS_LAPSED
    reopened = step(approved(), Action.REOPEN, None, today=today).request
    assert reopened.state is ApprovalState.PENDING and reopened.approved_by == frozenset()
    still = TodaysPolicy(still_approvers=frozenset({"UA1"}), approvals_needed=1)
    assert step(approved(), Action.REOPEN, None, today=still).refusal is Refusal.STILL_APPROVED
    assert step(approved(), Action.CLAIM, REQUESTER, today=still).allowed


def test_two_approvals_needed_stays_pending_after_the_first():
    first = step(pending(2), Action.APPROVE, "UA1", actor_is_approver=True).request
    assert first.state is ApprovalState.PENDING and first.approved_by == {"UA1"}
    second = step(first, Action.APPROVE, "UA2", actor_is_approver=True).request
    assert second.state is ApprovalState.APPROVED


def test_late_clicks_are_refused_even_before_the_expiry_job_runs():
    assert step(pending(), Action.APPROVE, "UA1", actor_is_approver=True, deadline_passed=True).refusal is (
        Refusal.TOO_LATE
    )
    approved = pending(state=ApprovalState.APPROVED)
    assert step(approved, Action.CLAIM, REQUESTER, deadline_passed=True).refusal is Refusal.TOO_LATE


def test_only_the_bot_expires_requests():
    assert not step(pending(), Action.EXPIRE, REQUESTER).allowed
    assert step(pending(), Action.EXPIRE, None).request.state is ApprovalState.EXPIRED


@pytest.mark.parametrize(
    ("enabled", "is_approver", "claimed"), [(True, True, True), (False, True, False), (True, False, False)]
)
def test_break_glass_needs_the_setting_and_an_approver(enabled, is_approver, claimed):
    result = start(
        REQUESTER, 1, break_glass=True, break_glass_enabled=enabled, requester_is_approver=is_approver
    )
    assert (result.allowed and result.request.state is ApprovalState.CLAIMED) is claimed


@given(
    needed_then=st.integers(min_value=1, max_value=3),
    yes_from=st.lists(st.sampled_from(sorted(APPROVERS | {"UA4"})), unique=True, min_size=1),
    approvers_now=st.frozensets(st.sampled_from(sorted(APPROVERS | {"UA4"}))),
    needed_now=st.integers(min_value=1, max_value=3),
)
def test_a_claim_after_a_policy_change_needs_enough_of_todays_approvers(
    needed_then, yes_from, approvers_now, needed_now
):
    """Approved once (by `yes_from`, against `needed_then`), then the policy changed."""
    request = pending(needed_then, state=ApprovalState.APPROVED, approved_by=frozenset(yes_from))
    today = TodaysPolicy(still_approvers=approvers_now & request.approved_by, approvals_needed=needed_now)
    enough = len(set(yes_from) & approvers_now) >= max(needed_then, needed_now)
    assert step(request, Action.CLAIM, REQUESTER, today=today).allowed is enough
    reopened = step(request, Action.REOPEN, None, today=today)
    assert reopened.allowed is not enough
    if reopened.allowed:
        assert reopened.request.state is ApprovalState.PENDING
        assert reopened.request.approved_by == frozenset(yes_from) & approvers_now


PEOPLE = st.sampled_from([REQUESTER, OUTSIDER, "UA4", *sorted(APPROVERS)])
LATE = st.sampled_from([False, False, False, True])  # mostly in time, so that runs get somewhere
EVER_APPROVERS = APPROVERS | {"UA4"}  # a policy change may name a new approver


class ApprovalMachine(RuleBasedStateMachine):
    """Any sequence of clicks, by anyone, in any order, with the policy changing in between: "claimed"
    needs enough distinct other people who are approvers at the moment of the claim."""

    @initialize(
        needed=st.integers(min_value=1, max_value=3),
        requester_is_approver=st.booleans(),
        break_glass=st.booleans(),
        break_glass_enabled=st.booleans(),
    )
    def open_request(self, needed, requester_is_approver, break_glass, break_glass_enabled):
        self.requester_is_approver = requester_is_approver
        self.approvers = APPROVERS | ({REQUESTER} if requester_is_approver else set())
        self.needed_now = needed
        result = start(
            REQUESTER,
            needed,
            break_glass=break_glass,
            break_glass_enabled=break_glass_enabled,
            requester_is_approver=requester_is_approver,
        )
        self.request = result.request or ApprovalRequest(REQUESTER, needed)
        self.yes_from: set[str] = set()  # every actor whose approve click was accepted
        self.seen_final: ApprovalState | None = None

    def _do(self, action: Action, actor: str | None, deadline_passed: bool = False, admin: bool = False):
        today = TodaysPolicy(
            still_approvers=frozenset(self.request.approved_by & self.approvers),
            approvals_needed=self.needed_now,
        )
        result = step(
            self.request,
            action,
            actor,
            actor_is_approver=actor in self.approvers,
            actor_is_admin=admin,
            deadline_passed=deadline_passed,
            today=today,
        )
        if result.allowed:
            if action is Action.APPROVE:
                self.yes_from.add(actor)
            if action is Action.CLAIM:  # enough of today's approvers, and max(stored, today's) of them
                needed = max(self.request.approvals_needed, self.needed_now)
                assert len(self.yes_from & self.approvers) >= needed
            if action is Action.WITHDRAW:
                assert admin or actor in self.approvers
            self.request = result.request

    @rule(
        approvers=st.frozensets(st.sampled_from(sorted(EVER_APPROVERS)), min_size=1),
        needed=st.integers(min_value=1, max_value=3),
    )
    def change_policy(self, approvers, needed):
        self.approvers = set(approvers) | ({REQUESTER} if self.requester_is_approver else set())
        self.needed_now = needed

    @rule(actor=PEOPLE, late=LATE)
    def approve(self, actor, late):
        self._do(Action.APPROVE, actor, late)

    # Deny, cancel and expire end a request: one rule between them, so that runs live long enough to
    # reach an approval, a policy change and a claim.
    @rule(action=st.sampled_from([Action.DENY, Action.CANCEL, Action.EXPIRE]), actor=PEOPLE)
    def end(self, action, actor):
        self._do(action, None if action is Action.EXPIRE else actor)

    @rule(actor=st.sampled_from([REQUESTER, "UA1"]), late=LATE)  # mostly the requester's to make
    def claim(self, actor, late):
        self._do(Action.CLAIM, actor, late)

    @rule(actor=PEOPLE, admin=st.booleans(), late=LATE)
    def withdraw(self, actor, admin, late):
        self._do(Action.WITHDRAW, actor, late, admin=admin)

    @rule()
    def reopen(self):
        self._do(Action.REOPEN, None)

    @invariant()
    def approvals_come_from_other_approvers(self):
        assert REQUESTER not in self.yes_from
        assert self.yes_from <= EVER_APPROVERS
        assert self.request.approved_by <= self.yes_from

    @invariant()
    def nothing_is_created_without_enough_approvals_or_break_glass(self):
        if (
            self.request.state in (ApprovalState.CLAIMED, ApprovalState.APPROVED)
            and not self.request.break_glass
        ):
            assert len(self.request.approved_by) >= self.request.approvals_needed

    @invariant()
    def final_states_stay_final(self):
        if self.seen_final is not None:
            assert self.request.state is self.seen_final
        elif self.request.state in FINAL_STATES:
            self.seen_final = self.request.state

    @invariant()
    def claimed_stays_claimed(self):
        if getattr(self, "seen_claimed", False):
            assert self.request.state is ApprovalState.CLAIMED
        self.seen_claimed = self.request.state is ApprovalState.CLAIMED


TestApprovalMachine = ApprovalMachine.TestCase
