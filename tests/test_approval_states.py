"""The pure approval state machine: a table of who may do what, and a Hypothesis stateful test."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bot.approve.states import (
    Action,
    ApprovalRequest,
    ApprovalState,
    Refusal,
    start,
    step,
)

REQUESTER = "UREQ"
APPROVERS = frozenset({"UA1", "UA2", "UA3"})
OUTSIDER = "UOUT"


def pending(needed: int = 1, **changes) -> ApprovalRequest:
    return ApprovalRequest(requester_id=REQUESTER, approvals_needed=needed, **changes)


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
        (pending(state=ApprovalState.APPROVED), Action.CANCEL, REQUESTER, False, None),
        (pending(state=ApprovalState.APPROVED), Action.CLAIM, REQUESTER, False, None),
    ],
)
def test_who_may_do_what(request_, action, actor, is_approver, expected):
    assert step(request_, action, actor, actor_is_approver=is_approver).refusal == expected


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


PEOPLE = st.sampled_from([REQUESTER, OUTSIDER, *sorted(APPROVERS)])


class ApprovalMachine(RuleBasedStateMachine):
    """Any sequence of clicks, by anyone, in any order: "claimed" needs enough distinct other approvers."""

    @initialize(
        needed=st.integers(min_value=1, max_value=3),
        requester_is_approver=st.booleans(),
        break_glass=st.booleans(),
        break_glass_enabled=st.booleans(),
    )
    def open_request(self, needed, requester_is_approver, break_glass, break_glass_enabled):
        self.approvers = APPROVERS | ({REQUESTER} if requester_is_approver else set())
        result = start(
            REQUESTER,
            needed,
            break_glass=break_glass,
            break_glass_enabled=break_glass_enabled,
            requester_is_approver=requester_is_approver,
        )
        self.request = result.request or ApprovalRequest(REQUESTER, needed)
        self.yes_from: set[str] = set()  # every actor whose approve click was accepted

    def _do(self, action: Action, actor: str | None, deadline_passed: bool = False) -> None:
        result = step(
            self.request,
            action,
            actor,
            actor_is_approver=actor in self.approvers,
            deadline_passed=deadline_passed,
        )
        if result.allowed:
            if action is Action.APPROVE:
                self.yes_from.add(actor)
            self.request = result.request

    @rule(actor=PEOPLE, late=st.booleans())
    def approve(self, actor, late):
        self._do(Action.APPROVE, actor, late)

    @rule(actor=PEOPLE)
    def deny(self, actor):
        self._do(Action.DENY, actor)

    @rule(actor=PEOPLE)
    def cancel(self, actor):
        self._do(Action.CANCEL, actor)

    @rule(actor=PEOPLE, late=st.booleans())
    def claim(self, actor, late):
        self._do(Action.CLAIM, actor, late)

    @rule()
    def expire(self):
        self._do(Action.EXPIRE, None)

    @invariant()
    def approvals_come_from_other_approvers(self):
        assert REQUESTER not in self.yes_from
        assert self.yes_from <= APPROVERS
        assert self.request.approved_by == self.yes_from

    @invariant()
    def nothing_is_created_without_enough_approvals_or_break_glass(self):
        if (
            self.request.state in (ApprovalState.CLAIMED, ApprovalState.APPROVED)
            and not self.request.break_glass
        ):
            assert len(self.yes_from) >= self.request.approvals_needed

    @invariant()
    def final_states_stay_final(self):
        if not hasattr(self, "seen_final"):
            self.seen_final = None
        if self.seen_final is not None:
            assert self.request.state is self.seen_final
        elif self.request.state in (ApprovalState.DENIED, ApprovalState.CANCELLED, ApprovalState.EXPIRED):
            self.seen_final = self.request.state


TestApprovalMachine = ApprovalMachine.TestCase
