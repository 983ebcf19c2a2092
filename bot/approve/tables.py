"""The approval tables, and an approval request as read back from them (see bot.approve.store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, Text, UniqueConstraint

from bot.approve.states import ApprovalRequest, ApprovalState
from bot.db.schema import Base, RequestState, StoredRequest, UTCDateTime

APPROVALS = Table(
    "approval_requests",
    Base.metadata,
    Column("request_id", String(32), ForeignKey("account_requests.id"), primary_key=True),
    Column("approvals_needed", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("break_glass", Boolean, nullable=False, default=False),
    Column("decide_by", UTCDateTime, nullable=False),
    Column("claim_by", UTCDateTime),
    Column("reminded_at", UTCDateTime),
    Column("decided_by", String(32)),
    Column("decided_at", UTCDateTime),
)

DECISIONS = Table(
    "approval_decisions",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("account_requests.id"), nullable=False),
    Column("approver_id", String(32), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason", Text),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("request_id", "approver_id", name="uq_approval_decisions_request_approver"),
)

MESSAGES = Table(
    "approval_messages",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("account_requests.id"), nullable=False, index=True),
    Column("audience", String(16), nullable=False),  # "approvers" or "requester"
    Column("channel", String(32), nullable=False),
    Column("ts", String(32), nullable=False),
)

APPROVED = "approved"
DENIED = "denied"
LAPSED = "lapsed"  # a yes from someone who is no longer an approver: kept for the record, never counted
FOR_APPROVERS = "approvers"
FOR_REQUESTER = "requester"

# A request's approval state as stored: a claimed request continues through the creation states.
_APPROVAL_STATE_OF = {
    RequestState.PENDING_APPROVAL: ApprovalState.PENDING,
    RequestState.APPROVED: ApprovalState.APPROVED,
    RequestState.DENIED: ApprovalState.DENIED,
    RequestState.CANCELLED: ApprovalState.CANCELLED,
    RequestState.EXPIRED: ApprovalState.EXPIRED,
    RequestState.WITHDRAWN: ApprovalState.WITHDRAWN,
}


@dataclass(frozen=True)
class ApprovalRecord:
    request: StoredRequest
    approvals_needed: int
    reason: str
    break_glass: bool
    decide_by: datetime
    claim_by: datetime | None
    reminded_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    approved_by: tuple[str, ...]  # in the order they approved
    denial_reason: str | None

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def state(self) -> ApprovalState:
        return _APPROVAL_STATE_OF.get(self.request.state, ApprovalState.CLAIMED)

    def deadline(self) -> datetime | None:
        """The moment the current state runs out: to be decided, or to be claimed."""
        if self.state is ApprovalState.PENDING:
            return self.decide_by
        if self.state is ApprovalState.APPROVED:
            return self.claim_by
        return None

    def as_machine(self) -> ApprovalRequest:
        return ApprovalRequest(
            requester_id=self.request.requester_id,
            approvals_needed=self.approvals_needed,
            state=self.state,
            approved_by=frozenset(self.approved_by),
            break_glass=self.break_glass,
        )
