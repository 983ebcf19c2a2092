"""Orphans: accounts a request made whose token nobody holds, each with its own outcome, and the queries
cleanup needs to tell a request's accounts from everyone else's (see `bot.create.cleanup`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.schema import REQUESTS, AuditEvent, Base, RequestState, StoredRequest, UTCDateTime
from bot.db.store import Store, audit_row


class OrphanOutcome(StrEnum):
    PENDING = "pending"  # recorded; the delete call is about to be made
    DELETED = "deleted"
    DELETE_FAILED = "delete_failed"  # retried by the sweeper until it is deleted


class OrphanAccount(Base):
    """An account a request made whose token nobody holds; each has its own outcome."""

    __tablename__ = "orphan_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("account_requests.id"), index=True)
    mixpanel_account_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    mixpanel_username: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(24))
    found_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_orphan_accounts_request", "request_id"),)


ORPHANS = OrphanAccount.__table__


@dataclass(frozen=True)
class Orphan:
    account_id: int
    username: str | None
    outcome: OrphanOutcome


def state_after_cleanup(outcomes: list[OrphanOutcome]) -> RequestState:
    """One undeletable orphan keeps the request `delete_failed`, whatever happens to the others."""
    if OrphanOutcome.DELETE_FAILED in outcomes:
        return RequestState.DELETE_FAILED
    if OrphanOutcome.PENDING in outcomes or not outcomes:
        return RequestState.ORPHANED
    return RequestState.DELETED


class OrphanRecords:
    """Part of the store: every write is a compare-and-set on the request, in the store's transactions."""

    def __init__(self, store: Store):
        self._store = store

    def record_orphans(
        self,
        request_id: str,
        accounts: list[tuple[int, str | None]],
        *,
        expected: tuple[RequestState, ...],
        event: AuditEvent | None = None,
        detail: str | None = None,
    ) -> StoredRequest:
        """Compare-and-set the request to `orphaned` and record each (account id, username) as pending,
        in one transaction. An account already recorded (for any request) is not recorded again."""
        now = datetime.now(UTC)
        with self._store._write() as connection:
            row = self._store._compare_and_set(
                connection, request_id, expected, {"state": str(RequestState.ORPHANED), "updated_at": now}
            )
            ids = [account_id for account_id, _ in accounts]
            recorded = set(
                connection.execute(
                    select(ORPHANS.c.mixpanel_account_id).where(ORPHANS.c.mixpanel_account_id.in_(ids))
                ).scalars()
            )
            for account_id, username in accounts:
                if account_id in recorded:
                    continue
                recorded.add(account_id)
                connection.execute(
                    insert(ORPHANS).values(
                        request_id=request_id,
                        mixpanel_account_id=account_id,
                        mixpanel_username=username,
                        outcome=str(OrphanOutcome.PENDING),
                        found_at=now,
                        updated_at=now,
                    )
                )
            if event is not None:
                audit_row(connection, event, row, at=now, detail=detail)
            return StoredRequest.of(row)

    def orphans(self, request_id: str) -> list[Orphan]:
        with self._store._read() as connection:
            rows = connection.execute(
                select(ORPHANS).where(ORPHANS.c.request_id == request_id).order_by(ORPHANS.c.id)
            ).mappings()
            return [
                Orphan(row["mixpanel_account_id"], row["mixpanel_username"], OrphanOutcome(row["outcome"]))
                for row in rows
            ]

    def record_deletion(
        self, request_id: str, account_id: int, *, deleted: bool, detail: str
    ) -> StoredRequest | None:
        """One orphan's outcome, its audit event, and the request's state derived from all its orphans,
        in one transaction. None when the orphan was already deleted (someone else got there first)."""
        now = datetime.now(UTC)
        outcome = OrphanOutcome.DELETED if deleted else OrphanOutcome.DELETE_FAILED
        with self._store._write() as connection:
            orphan = (
                connection.execute(
                    update(ORPHANS)
                    .where(
                        ORPHANS.c.request_id == request_id,
                        ORPHANS.c.mixpanel_account_id == account_id,
                        ORPHANS.c.outcome.in_([str(OrphanOutcome.PENDING), str(OrphanOutcome.DELETE_FAILED)]),
                    )
                    .values(outcome=str(outcome), updated_at=now)
                    .returning(ORPHANS.c.mixpanel_username)
                )
                .mappings()
                .first()
            )
            if orphan is None:
                return None
            outcomes = [
                OrphanOutcome(value)
                for value in connection.execute(
                    select(ORPHANS.c.outcome).where(ORPHANS.c.request_id == request_id)
                ).scalars()
            ]
            state = state_after_cleanup(outcomes)
            values: dict[str, Any] = {"state": str(state), "updated_at": now}
            if state is RequestState.DELETE_FAILED:
                values["error"] = detail
            row = self._store._compare_and_set(
                connection, request_id, (RequestState.ORPHANED, RequestState.DELETE_FAILED), values
            )
            event = AuditEvent.DELETED if deleted else AuditEvent.DELETE_FAILED
            account = (account_id, orphan["mixpanel_username"])
            audit_row(connection, event, row, at=now, detail=detail, account=account)
            return StoredRequest.of(row)

    def known_account_ids(self, account_ids: list[int], *, besides: str) -> set[int]:
        """Which of these accounts a request other than `besides` made or recorded as its orphan."""
        if not account_ids:
            return set()
        with self._store._read() as connection:
            made = connection.execute(
                select(REQUESTS.c.mixpanel_account_id).where(
                    REQUESTS.c.mixpanel_account_id.in_(account_ids), REQUESTS.c.id != besides
                )
            ).scalars()
            found = connection.execute(
                select(ORPHANS.c.mixpanel_account_id).where(
                    ORPHANS.c.mixpanel_account_id.in_(account_ids), ORPHANS.c.request_id != besides
                )
            ).scalars()
            return set(made) | set(found)

    def creates_in_flight(self, username: str, *, besides: str) -> list[StoredRequest]:
        """Other requests for this name whose create call may still be running: until they record the
        account they made (or give up), a same-named account could be theirs."""
        with self._store._read() as connection:
            rows = connection.execute(
                select(REQUESTS).where(
                    REQUESTS.c.username == username,
                    REQUESTS.c.id != besides,
                    REQUESTS.c.state == str(RequestState.SUBMITTED),
                    REQUESTS.c.last_create_attempt_at.is_not(None),
                )
            ).mappings()
            return [StoredRequest.of(row) for row in rows]
