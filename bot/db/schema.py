"""The schema: a request's states, the audit events, the tables (requests, audit events) and the detached
view of a request row that the rest of the bot passes around.

Tables that belong to one feature (orphans, deletions, reminders, approvals) live beside that feature's
store, on the same `Base`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.models import Role


class UTCDateTime(TypeDecorator):
    """SQLite forgets time zones; store UTC and hand back aware datetimes everywhere."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RequestState(StrEnum):
    SUBMITTED = "submitted"  # stored; the create call is about to be made or in flight
    CREATED = "created"  # Mixpanel made the account but no path delivered its token; deletion follows
    DELIVERED = "delivered"  # the token reached the requester
    FAILED = "failed"  # Mixpanel refused; nothing exists
    UNCERTAIN = "uncertain"  # the create ended ambiguously; reconciling (the sweeper re-checks for hours)
    ORPHANED = "orphaned"  # accounts nobody holds a token for are recorded (orphan_accounts); deleting them
    DELETED = "deleted"  # the account was created and deleted again (token undeliverable or lost)
    DELETE_FAILED = "delete_failed"  # an orphan that could not be deleted: needs a human
    CLOSED = "closed"  # was delivered; then deleted by a person, or found gone from Mixpanel
    # Requests that need approval (bot/approve/states.py); a claimed one continues as SUBMITTED.
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# Attempts that count against the rate limit: anything that may have produced an account, and every
# request sent for approval (it is counted when made, whatever the approvers decide).
QUOTA_STATES = (
    RequestState.SUBMITTED,
    RequestState.CREATED,
    RequestState.DELIVERED,
    RequestState.UNCERTAIN,
    RequestState.ORPHANED,
    RequestState.DELETE_FAILED,
    RequestState.CLOSED,  # a delivered account counts as a creation even once it is deleted
    RequestState.PENDING_APPROVAL,
    RequestState.APPROVED,
    RequestState.DENIED,
    RequestState.CANCELLED,
    RequestState.EXPIRED,
)


class AuditEvent(StrEnum):
    REFUSED = "refused"
    SUBMITTED = "submitted"
    CREATED = "created"
    MIXPANEL_ERROR = "mixpanel_error"
    TOKEN_DELIVERED = "token_delivered"  # noqa: S105 - an event name, not a secret
    DELIVERY_FAILED = "delivery_failed"
    DELETED = "deleted"
    DELETE_FAILED = "delete_failed"
    # The lifecycle of delivered accounts (bot/manage/flow.py).
    ACCOUNT_DELETED = "account_deleted"
    ACCOUNT_DELETE_FAILED = "account_delete_failed"
    FOUND_GONE = "found_gone"
    MANAGE_REFUSED = "manage_refused"
    PROJECTS_CHANGED = "projects_changed"
    REMINDED = "reminded"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    CLAIMED = "claimed"
    BREAK_GLASS = "break_glass"


class Base(DeclarativeBase):
    pass


class AccountRequest(Base):
    __tablename__ = "account_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    submission_key: Mapped[str] = mapped_column(String(64), unique=True)
    requester_id: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    username: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    project_ids: Mapped[list[int]] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(24))
    mixpanel_account_id: Mapped[int | None] = mapped_column(BigInteger)
    mixpanel_username: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Written before each create call, and again when one ends ambiguously: the upper end of the window an
    # orphan's `created` may fall in.
    last_create_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Lifecycle (migration 0004): when and by whom a delivered account was closed; what it replaced.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(32))
    replaces_request_id: Mapped[str | None] = mapped_column(String(32))
    # Destinations (migration 0008): the policy destination and secret name the credentials go to; the
    # version the write became; when it began (a GitHub secret updated since then is the bot's).
    destination: Mapped[str | None] = mapped_column(String(64))
    destination_entry: Mapped[str | None] = mapped_column(String(64))  # the secret's name there
    destination_version: Mapped[str | None] = mapped_column(String(128))
    store_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_account_requests_requester_created", "requester_id", "created_at"),
        Index("ix_account_requests_state", "state"),
        Index("ix_account_requests_account", "mixpanel_account_id"),
    )


class AuditRecord(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    event: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(ForeignKey("account_requests.id"))
    requester_id: Mapped[str] = mapped_column(String(32))
    username: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(16))
    project_ids: Mapped[list[int] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mixpanel_account_id: Mapped[int | None] = mapped_column(BigInteger)
    mixpanel_username: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text)
    # Refusals only: was the audit channel told about this one (None: no channel was configured)?
    announced: Mapped[bool | None] = mapped_column(Boolean)
    actor_id: Mapped[str | None] = mapped_column(String(32))  # who acted, where not the requester

    __table_args__ = (Index("ix_audit_events_requester_at", "requester_id", "at"),)


REQUESTS = AccountRequest.__table__
AUDIT = AuditRecord.__table__

AUDIT_COLUMNS = [
    "at",
    "event",
    "request_id",
    "requester_id",
    "username",
    "role",
    "project_ids",
    "expires_at",
    "mixpanel_account_id",
    "mixpanel_username",
    "detail",
    "actor_id",
]


@dataclass(frozen=True)
class StoredRequest:
    """A detached, immutable view of a request row."""

    id: str
    requester_id: str
    team_id: str | None
    channel_id: str | None
    username: str
    role: Role
    project_ids: tuple[int, ...]
    expires_at: datetime | None
    state: RequestState
    mixpanel_account_id: int | None
    mixpanel_username: str | None
    created_at: datetime
    last_create_attempt_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    replaces_request_id: str | None = None
    destination: str | None = None
    secret_name: str | None = None
    secret_version: str | None = None
    store_started_at: datetime | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> StoredRequest:
        return cls(
            id=row["id"],
            requester_id=row["requester_id"],
            team_id=row["team_id"],
            channel_id=row["channel_id"],
            username=row["username"],
            role=Role(row["role"]),
            project_ids=tuple(row["project_ids"] or ()),
            expires_at=row["expires_at"],
            state=RequestState(row["state"]),
            mixpanel_account_id=row["mixpanel_account_id"],
            mixpanel_username=row["mixpanel_username"],
            created_at=row["created_at"],
            last_create_attempt_at=row["last_create_attempt_at"],
            closed_at=row.get("closed_at"),
            closed_by=row.get("closed_by"),
            replaces_request_id=row.get("replaces_request_id"),
            destination=row.get("destination"),
            secret_name=row.get("destination_entry"),
            secret_version=row.get("destination_version"),
            store_started_at=row.get("store_started_at"),
        )
