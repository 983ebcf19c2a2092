"""Storage for the lifecycle of delivered accounts: reading them, closing them, deleting each one once.

Every transition here is a compare-and-set: an UPDATE guarded by the state it expects, or an INSERT guarded
by a primary key, so a double click, a replay or a second instance changes nothing the first one did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.schema import (
    AUDIT,
    REQUESTS,
    AuditEvent,
    Base,
    RequestState,
    StoredRequest,
    UTCDateTime,
    owned_by,
)
from bot.db.store import Store


class DeletionState(StrEnum):
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"  # Mixpanel refused or could not be reached: a later click may try again


class AccountDeletion(Base):
    __tablename__ = "account_deletions"

    mixpanel_account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("account_requests.id"))
    actor_id: Mapped[str] = mapped_column(String(32))
    basis: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


DELETIONS = AccountDeletion.__table__


@dataclass(frozen=True)
class DeletionClaim:
    """`won`: this caller, and no other, now deletes the account. Otherwise `state` says what is going on."""

    won: bool
    state: DeletionState


@dataclass(frozen=True)
class AccountRef:
    """What the audit trail names for an account, whether the bot made it or not."""

    account_id: int
    username: str | None
    request: StoredRequest | None = None


@dataclass(frozen=True)
class ProjectChange:
    """The stored project list just before this change (someone else's save may have come between the
    person's modal and this one), and the record after it."""

    before: tuple[int, ...]
    request: StoredRequest


def _now() -> datetime:
    return datetime.now(UTC)


class LifecycleStore:
    def __init__(self, store: Store, *, deletion_lease: timedelta):
        """`deletion_lease`: a deletion whose process died mid-call may be taken over after this long. It
        must outlast the slowest DELETE (Settings.deletion_lease_seconds), or a second click could take
        over one still running and send a second DELETE."""
        self._store = store
        self._deletion_lease = deletion_lease

    # --- reads ----------------------------------------------------------------------------------------

    def delivered(self, requester_id: str | None = None) -> list[StoredRequest]:
        """Requests whose account is live as far as the bot knows: those one person owns now (their own,
        and any taken over or adopted), or everyone's (None)."""
        query = select(REQUESTS).where(
            REQUESTS.c.state == str(RequestState.DELIVERED), REQUESTS.c.mixpanel_account_id.is_not(None)
        )
        if requester_id is not None:
            query = query.where(owned_by(requester_id))
        with self._store._read() as connection:
            return [
                StoredRequest.of(row)
                for row in connection.execute(query.order_by(REQUESTS.c.created_at)).mappings()
            ]

    def by_account_ids(self, account_ids: list[int]) -> dict[int, StoredRequest]:
        """The request that made each account, in any state (the newest, should there be several)."""
        if not account_ids:
            return {}
        query = (
            select(REQUESTS)
            .where(REQUESTS.c.mixpanel_account_id.in_(account_ids))
            .order_by(REQUESTS.c.created_at)
        )
        with self._store._read() as connection:
            return {
                row["mixpanel_account_id"]: StoredRequest.of(row)
                for row in connection.execute(query).mappings()
            }

    def get(self, request_id: str) -> StoredRequest | None:
        return self._store.get(request_id)

    # --- deleting, once ---------------------------------------------------------------------------------

    def claim_deletion(
        self, account: AccountRef, *, actor_id: str, basis: str, now: datetime | None = None
    ) -> DeletionClaim:
        now = now or _now()
        row = {
            "mixpanel_account_id": account.account_id,
            "request_id": account.request.id if account.request else None,
            "actor_id": actor_id,
            "basis": basis,
            "state": str(DeletionState.DELETING),
            "started_at": now,
            "updated_at": now,
        }
        try:
            with self._store._write() as connection:
                connection.execute(insert(DELETIONS).values(row))
            return DeletionClaim(won=True, state=DeletionState.DELETING)
        except IntegrityError:
            pass
        with self._store._write() as connection:
            existing = (
                connection.execute(
                    select(DELETIONS).where(DELETIONS.c.mixpanel_account_id == account.account_id)
                )
                .mappings()
                .first()
            )
            if existing is None:  # pragma: no cover - rows are never removed
                raise RuntimeError(f"deletion of {account.account_id} vanished")
            state = DeletionState(existing["state"])
            retake = state is DeletionState.FAILED or (
                state is DeletionState.DELETING and existing["updated_at"] <= now - self._deletion_lease
            )
            if not retake:
                return DeletionClaim(won=False, state=state)
            taken = connection.execute(
                update(DELETIONS)
                .where(
                    DELETIONS.c.mixpanel_account_id == account.account_id,
                    DELETIONS.c.state == existing["state"],
                    DELETIONS.c.updated_at == existing["updated_at"],
                )
                .values({**row, "started_at": existing["started_at"]})
            ).rowcount
            return DeletionClaim(won=taken == 1, state=DeletionState.DELETING if taken else state)

    def finish_deletion(
        self,
        account: AccountRef,
        *,
        actor_id: str,
        found_gone: bool,
        detail: str,
        now: datetime | None = None,
    ) -> None:
        """The account is gone from Mixpanel: close its record and audit who and why, in one transaction."""
        now = now or _now()
        with self._store._write() as connection:
            connection.execute(
                update(DELETIONS)
                .where(DELETIONS.c.mixpanel_account_id == account.account_id)
                .values(state=str(DeletionState.DELETED), updated_at=now)
            )
            self._close(connection, account.request, closed_by=actor_id, now=now)
            event = AuditEvent.FOUND_GONE if found_gone else AuditEvent.ACCOUNT_DELETED
            self._audit(connection, event, account, actor_id=actor_id, detail=detail, now=now)

    def fail_deletion(
        self, account: AccountRef, *, actor_id: str, detail: str, now: datetime | None = None
    ) -> None:
        now = now or _now()
        with self._store._write() as connection:
            connection.execute(
                update(DELETIONS)
                .where(
                    DELETIONS.c.mixpanel_account_id == account.account_id,
                    DELETIONS.c.state == str(DeletionState.DELETING),
                )
                .values(state=str(DeletionState.FAILED), updated_at=now)
            )
            self._audit(
                connection,
                AuditEvent.ACCOUNT_DELETE_FAILED,
                account,
                actor_id=actor_id,
                detail=detail,
                now=now,
            )

    # --- closing records of accounts deleted elsewhere ----------------------------------------------

    def close_gone(self, request: StoredRequest, *, now: datetime | None = None) -> bool:
        """Mixpanel no longer lists the account: close its record (once; False if already closed)."""
        now = now or _now()
        ref = AccountRef(request.mixpanel_account_id or 0, request.mixpanel_username, request)
        with self._store._write() as connection:
            row = self._close(connection, request, closed_by=None, now=now)
            if row is None:
                return False
            self._audit(
                connection,
                AuditEvent.FOUND_GONE,
                ref,
                actor_id=request.requester_id,
                detail="deleted outside the bot",
                now=now,
            )
            return True

    @staticmethod
    def _close(
        connection: Connection, request: StoredRequest | None, *, closed_by: str | None, now: datetime
    ) -> Any:
        if request is None:
            return None
        return (
            connection.execute(
                update(REQUESTS)
                .where(REQUESTS.c.id == request.id, REQUESTS.c.state == str(RequestState.DELIVERED))
                .values(state=str(RequestState.CLOSED), closed_at=now, closed_by=closed_by, updated_at=now)
                .returning(*REQUESTS.c)
            )
            .mappings()
            .first()
        )

    # --- project membership ----------------------------------------------------------------------------

    def change_projects(
        self,
        request: StoredRequest,
        *,
        added: list[int],
        removed: list[int],
        actor_id: str,
        detail: str,
    ) -> ProjectChange | None:
        """Record what Mixpanel just did to the account's projects, as a delta applied to the stored list
        inside one transaction (the row locked on PostgreSQL), so two concurrent saves each keep the
        other's change instead of overwriting it. None if the record was closed meanwhile."""
        now = _now()
        with self._store._write() as connection:
            row = (
                connection.execute(
                    select(REQUESTS)
                    .where(REQUESTS.c.id == request.id, REQUESTS.c.state == str(RequestState.DELIVERED))
                    .with_for_update()
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            before = tuple(row["project_ids"] or ())
            after = tuple(sorted((set(before) | set(added)) - set(removed)))
            changed_row = (
                connection.execute(
                    update(REQUESTS)
                    .where(REQUESTS.c.id == request.id, REQUESTS.c.state == str(RequestState.DELIVERED))
                    .values(project_ids=list(after), updated_at=now)
                    .returning(*REQUESTS.c)
                )
                .mappings()
                .first()
            )
            if changed_row is None:  # pragma: no cover - the row is locked, or the writer serialized
                return None
            changed = StoredRequest.of(changed_row)
            ref = AccountRef(changed.mixpanel_account_id or 0, changed.mixpanel_username, changed)
            self._audit(
                connection, AuditEvent.PROJECTS_CHANGED, ref, actor_id=actor_id, detail=detail, now=now
            )
            return ProjectChange(before=before, request=changed)

    # --- audit ------------------------------------------------------------------------------------------

    def record_refusal(
        self, actor_id: str, reason: str, *, account: AccountRef | None = None, now: datetime | None = None
    ) -> None:
        with self._store._write() as connection:
            self._audit(
                connection,
                AuditEvent.MANAGE_REFUSED,
                account,
                actor_id=actor_id,
                detail=reason,
                now=now or _now(),
            )

    @classmethod
    def audit_row(
        cls, connection: Connection, event: AuditEvent, request: StoredRequest, *, detail: str, now: datetime
    ) -> None:
        """An audit row about a request, in the caller's transaction, attributed to its creator."""
        ref = AccountRef(request.mixpanel_account_id or 0, request.mixpanel_username, request)
        cls._audit(connection, event, ref, actor_id=request.requester_id, detail=detail, now=now)

    @classmethod
    def action_row(
        cls,
        connection: Connection,
        event: AuditEvent,
        account: AccountRef,
        *,
        actor_id: str,
        detail: str,
        now: datetime,
    ) -> None:
        """An audit row about an account, in the caller's transaction, attributed to the person who acted."""
        cls._audit(connection, event, account, actor_id=actor_id, detail=detail, now=now)

    @staticmethod
    def _audit(
        connection: Connection,
        event: AuditEvent,
        account: AccountRef | None,
        *,
        actor_id: str,
        detail: str,
        now: datetime,
    ) -> None:
        """`requester_id` here is the person who acted; the request, if any, names the creator."""
        request = account.request if account else None
        connection.execute(
            insert(AUDIT).values(
                at=now,
                event=str(event),
                request_id=request.id if request else None,
                requester_id=actor_id,
                username=request.username if request else None,
                role=str(request.role) if request else None,
                project_ids=list(request.project_ids) if request else None,
                expires_at=request.expires_at if request else None,
                mixpanel_account_id=account.account_id if account else None,
                mixpanel_username=account.username if account else None,
                detail=detail,
            )
        )
