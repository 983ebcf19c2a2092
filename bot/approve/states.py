"""The approval state machine, pure: states, the allowed transitions, and who may trigger each.

Nothing here touches Slack or the database. The flow asks `step` whether a click may happen and what it
leads to; the store then makes that one transition with a compare-and-set, so a stale answer loses.

    pending_approval --approve (the last one needed)--> approved --claim--> claimed (creation runs)
    pending_approval --approve (more needed)----------> pending_approval
    pending_approval --deny--> denied
    pending_approval | approved --cancel--> cancelled
    pending_approval | approved --expire--> expired
    approved --withdraw (an approver or an admin)--> withdrawn
    approved --reopen (the bot: today's policy finds too few approvals)--> pending_approval
    (new request) --break glass--> claimed

A policy can change while requests wait. Every judgement sees the stored request through `TodaysPolicy`:
only yeses from people who are approvers today count, and a request needs the more of what it needed
when made and what the policy asks today. So a lapsed approval never completes or claims anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class ApprovalState(StrEnum):
    PENDING = "pending_approval"
    APPROVED = "approved"  # enough approvals; waiting for the requester's click
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    CLAIMED = "claimed"  # the requester clicked (or broke glass): creation takes over from here
    WITHDRAWN = "withdrawn"  # an approver or an admin took the approval back before the claim


FINAL_STATES = frozenset(
    {ApprovalState.DENIED, ApprovalState.CANCELLED, ApprovalState.EXPIRED, ApprovalState.WITHDRAWN}
)


class Action(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    CANCEL = "cancel"
    EXPIRE = "expire"
    CLAIM = "claim"
    WITHDRAW = "withdraw"
    REOPEN = "reopen"  # the bot's own: an approved request whose approvals no longer suffice


class Refusal(StrEnum):
    NOT_AN_APPROVER = "not_an_approver"
    OWN_REQUEST = "own_request"  # approvers never decide their own requests
    NOT_THE_REQUESTER = "not_the_requester"
    ALREADY_APPROVED_BY_YOU = "already_approved_by_you"
    NOT_PENDING = "not_pending"  # someone decided, cancelled, or it expired
    NOT_APPROVED = "not_approved"  # a claim before (or without) approval
    ALREADY_CLAIMED = "already_claimed"
    TOO_LATE = "too_late"  # its deadline passed; the expiry job has not caught up yet
    BREAK_GLASS_NOT_ALLOWED = "break_glass_not_allowed"
    APPROVALS_LAPSED = "approvals_lapsed"  # approved once, but today's policy finds too few approvals
    STILL_APPROVED = "still_approved"  # a reopen of a request whose approvals still suffice


@dataclass(frozen=True)
class ApprovalRequest:
    requester_id: str
    approvals_needed: int
    state: ApprovalState = ApprovalState.PENDING
    approved_by: frozenset[str] = frozenset()
    break_glass: bool = False

    @property
    def enough_approvals(self) -> bool:
        return len(self.approved_by) >= self.approvals_needed


@dataclass(frozen=True)
class TodaysPolicy:
    """What the policy says today about a stored request."""

    still_approvers: frozenset[str] | None = None  # who of its approvers still are; None: all of them
    approvals_needed: int = 1


def as_seen_today(request: ApprovalRequest, today: TodaysPolicy | None) -> ApprovalRequest:
    """Only yeses from today's approvers count, and the request needs max(stored, today's) approvals."""
    if today is None:
        return request
    approved_by = request.approved_by
    if today.still_approvers is not None:
        approved_by = approved_by & today.still_approvers
    needed = max(request.approvals_needed, today.approvals_needed)
    return replace(request, approved_by=approved_by, approvals_needed=needed)


@dataclass(frozen=True)
class Step:
    """Either the request after the action, or why the action may not happen."""

    request: ApprovalRequest | None = None
    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def _refuse(reason: Refusal) -> Step:
    return Step(refusal=reason)


def start(
    requester_id: str,
    approvals_needed: int,
    *,
    break_glass: bool = False,
    break_glass_enabled: bool = False,
    requester_is_approver: bool = False,
) -> Step:
    """A new request: pending, or (break glass, by an approver, where enabled) claimed at once."""
    request = ApprovalRequest(requester_id=requester_id, approvals_needed=approvals_needed)
    if not break_glass:
        return Step(request=request)
    if not (break_glass_enabled and requester_is_approver):
        return _refuse(Refusal.BREAK_GLASS_NOT_ALLOWED)
    return Step(request=replace(request, state=ApprovalState.CLAIMED, break_glass=True))


def step(
    request: ApprovalRequest,
    action: Action,
    actor_id: str | None,
    *,
    actor_is_approver: bool = False,
    actor_is_admin: bool = False,
    deadline_passed: bool = False,
    today: TodaysPolicy | None = None,
) -> Step:
    """May `actor_id` do `action` to `request` now, and what is the request afterwards?

    `actor_id` is None for the bot's own work (expiry, reopening). `actor_is_approver`/`actor_is_admin`:
    under today's policy. `deadline_passed`: the request's current deadline (to be decided, or to be
    claimed) is behind us. `today`: what today's policy says about the request's approvals (None: what
    was stored still holds); the request afterwards carries only the approvals that still count.
    """
    request = as_seen_today(request, today)
    if action is Action.REOPEN:
        if actor_id is not None:
            return _refuse(Refusal.NOT_THE_REQUESTER)
        if request.state is not ApprovalState.APPROVED:
            return _refuse(Refusal.NOT_APPROVED)
        if request.enough_approvals:
            return _refuse(Refusal.STILL_APPROVED)
        return Step(request=replace(request, state=ApprovalState.PENDING))
    if action is Action.EXPIRE:
        if actor_id is not None:
            return _refuse(Refusal.NOT_THE_REQUESTER)
        if request.state not in (ApprovalState.PENDING, ApprovalState.APPROVED):
            return _refuse(Refusal.NOT_PENDING)
        return Step(request=replace(request, state=ApprovalState.EXPIRED))
    if actor_id is None:
        return _refuse(Refusal.NOT_AN_APPROVER)
    if action in (Action.APPROVE, Action.DENY):
        if actor_id == request.requester_id:
            return _refuse(Refusal.OWN_REQUEST)
        if not actor_is_approver:
            return _refuse(Refusal.NOT_AN_APPROVER)
        if request.state is not ApprovalState.PENDING:
            return _refuse(Refusal.NOT_PENDING)
        if deadline_passed:
            return _refuse(Refusal.TOO_LATE)
        if action is Action.DENY:
            return Step(request=replace(request, state=ApprovalState.DENIED))
        if actor_id in request.approved_by:
            return _refuse(Refusal.ALREADY_APPROVED_BY_YOU)
        approved = replace(request, approved_by=request.approved_by | {actor_id})
        state = ApprovalState.APPROVED if approved.enough_approvals else request.state
        return Step(request=replace(approved, state=state))
    if action is Action.WITHDRAW:
        # Taking an approval back only ever makes less happen, so any approver or admin may, but like a
        # decision never on their own request (they cancel it instead).
        if actor_id == request.requester_id:
            return _refuse(Refusal.OWN_REQUEST)
        if not (actor_is_approver or actor_is_admin):
            return _refuse(Refusal.NOT_AN_APPROVER)
        if request.state is ApprovalState.CLAIMED:
            return _refuse(Refusal.ALREADY_CLAIMED)
        if request.state is ApprovalState.PENDING:
            return _refuse(Refusal.NOT_APPROVED)
        if request.state is not ApprovalState.APPROVED:
            return _refuse(Refusal.NOT_PENDING)
        if deadline_passed:
            return _refuse(Refusal.TOO_LATE)
        return Step(request=replace(request, state=ApprovalState.WITHDRAWN))
    # Cancel and claim belong to the requester alone.
    if actor_id != request.requester_id:
        return _refuse(Refusal.NOT_THE_REQUESTER)
    if action is Action.CANCEL:
        if request.state not in (ApprovalState.PENDING, ApprovalState.APPROVED):
            return _refuse(Refusal.NOT_PENDING)
        return Step(request=replace(request, state=ApprovalState.CANCELLED))
    if request.state is ApprovalState.CLAIMED:
        return _refuse(Refusal.ALREADY_CLAIMED)
    if request.state is not ApprovalState.APPROVED:
        return _refuse(
            Refusal.NOT_APPROVED if request.state is ApprovalState.PENDING else Refusal.NOT_PENDING
        )
    if deadline_passed:
        return _refuse(Refusal.TOO_LATE)
    if not request.enough_approvals:
        return _refuse(Refusal.APPROVALS_LAPSED)
    return Step(request=replace(request, state=ApprovalState.CLAIMED))
