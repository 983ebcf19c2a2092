"""Storage for governance: notices (each once per period, across instances), keep-reasons, open
ownerships and takeovers, and posture snapshots. Adoptions and first-seen unmanaged accounts are in
bot/govern/inventory_store.py, reviews in bot/govern/review_store.py.

Every transition is a compare-and-set: an INSERT guarded by a primary key or unique constraint, or an
UPDATE guarded by the state it expects, so a double click, a replay, a rerun or a second instance changes
nothing the first one did. Reviews are stored in bot/govern/review_store.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.schema import REQUESTS, AuditEvent, Base, RequestState, StoredRequest, UTCDateTime
from bot.db.store import Store
from bot.manage.store import AccountRef, LifecycleStore


class NoticeKind(StrEnum):
    IDLE = "idle"  # to the owner: this account is idle
    IDLE_WARNING = "idle_warning"  # the day before the bot deletes an idle account
    IDLE_DELETED = "idle_deleted"
    OWNERSHIP_OFFER = "ownership_offer"  # a departed owner's account offered to successors or admins
    UNMANAGED = "unmanaged"  # a new account made outside the bot, told to the audit channel
    REVIEW_OVERDUE = "review_overdue"
    REVIEW_WARNING = "review_warning"
    REVIEW_DELETED = "review_deleted"
    WEEKLY_SUMMARY = "weekly_summary"  # account id 0: one per week


class GovernanceNotice(Base):
    __tablename__ = "governance_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24))
    mixpanel_account_id: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("kind", "mixpanel_account_id", "period", name="uq_governance_notices_once"),
    )


class IdleKeep(Base):
    __tablename__ = "idle_keeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mixpanel_account_id: Mapped[int] = mapped_column(BigInteger, index=True)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("account_requests.id"))
    actor_id: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    kept_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OwnershipState(StrEnum):
    OPEN = "open"  # the owner is gone; successors or admins are offered it
    TAKEN = "taken"
    CLOSED = "closed"  # the account was deleted


class OpenOwnership(Base):
    __tablename__ = "open_ownerships"

    mixpanel_account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    request_id: Mapped[str] = mapped_column(ForeignKey("account_requests.id"))
    former_owner: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(32))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PostureSnapshot(Base):
    __tablename__ = "posture_snapshots"

    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    counts: Mapped[dict[str, int]] = mapped_column(JSON)


NOTICES = GovernanceNotice.__table__
KEEPS = IdleKeep.__table__
OWNERSHIPS = OpenOwnership.__table__
POSTURES = PostureSnapshot.__table__


@dataclass(frozen=True)
class Ownership:
    account_id: int
    request_id: str
    former_owner: str
    state: OwnershipState
    opened_at: datetime


def _ref(request: StoredRequest) -> AccountRef:
    return AccountRef(request.mixpanel_account_id or 0, request.mixpanel_username, request)


class GovernanceStore:
    def __init__(self, store: Store):
        self._store = store

    # --- notices: once per (kind, account, period) ---------------------------------------------------

    def claim_notice(
        self, kind: NoticeKind, account_id: int, period: str, *, recipient: str, now: datetime
    ) -> bool:
        """Reserve a notice before sending it; False if another run or instance already did."""
        try:
            with self._store._write() as connection:
                connection.execute(
                    insert(NOTICES).values(
                        kind=str(kind),
                        mixpanel_account_id=account_id,
                        period=period,
                        recipient=recipient[:64],
                        sent_at=now,
                    )
                )
            return True
        except IntegrityError:
            return False

    def release_notice(self, kind: NoticeKind, account_id: int, period: str) -> None:
        """Sending failed: a later run may try again."""
        with self._store._write() as connection:
            connection.execute(
                delete(NOTICES).where(
                    NOTICES.c.kind == str(kind),
                    NOTICES.c.mixpanel_account_id == account_id,
                    NOTICES.c.period == period,
                )
            )

    def notices(self, kind: NoticeKind, account_ids: list[int]) -> dict[tuple[int, str], datetime]:
        """When each (account, period) notice of this kind went out."""
        if not account_ids:
            return {}
        query = select(NOTICES).where(
            NOTICES.c.kind == str(kind), NOTICES.c.mixpanel_account_id.in_(account_ids)
        )
        with self._store._read() as connection:
            return {
                (row["mixpanel_account_id"], row["period"]): row["sent_at"]
                for row in connection.execute(query).mappings()
            }

    # --- keep-reasons ----------------------------------------------------------------------------------

    def record_keep(
        self, request: StoredRequest, *, actor_id: str, reason: str, basis: str, now: datetime
    ) -> None:
        """ "Keep it": counts as a use from now on; the reason goes into the audit trail with it."""
        with self._store._write() as connection:
            connection.execute(
                insert(KEEPS).values(
                    mixpanel_account_id=request.mixpanel_account_id,
                    request_id=request.id,
                    actor_id=actor_id,
                    reason=reason,
                    kept_at=now,
                )
            )
            LifecycleStore.action_row(
                connection,
                AuditEvent.KEPT,
                _ref(request),
                actor_id=actor_id,
                detail=f"kept while idle, allowed as {basis}: {reason}"[:500],
                now=now,
            )

    def latest_keeps(self, account_ids: list[int]) -> dict[int, datetime]:
        if not account_ids:
            return {}
        query = (
            select(KEEPS.c.mixpanel_account_id, func.max(KEEPS.c.kept_at).label("kept_at"))
            .where(KEEPS.c.mixpanel_account_id.in_(account_ids))
            .group_by(KEEPS.c.mixpanel_account_id)
        )
        with self._store._read() as connection:
            return {row.mixpanel_account_id: _aware(row.kept_at) for row in connection.execute(query)}

    # --- ownership: opened when the owner leaves, taken over once -----------------------------------

    def open_ownership(self, request: StoredRequest, *, detail: str, now: datetime) -> bool:
        """The owner is gone: open this account's ownership, unless it is open already. Audited."""
        values = {
            "request_id": request.id,
            "former_owner": request.owner,
            "state": str(OwnershipState.OPEN),
            "opened_at": now,
            "resolved_by": None,
            "resolved_at": None,
        }
        account_id = request.mixpanel_account_id or 0
        try:
            with self._store._write() as connection:
                opened = 0
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(OWNERSHIPS).values(mixpanel_account_id=account_id, **values)
                        )
                    opened = 1
                except IntegrityError:
                    # Opened before and resolved since (a successor who left in turn): reopen it, once.
                    opened = connection.execute(
                        update(OWNERSHIPS)
                        .where(
                            OWNERSHIPS.c.mixpanel_account_id == account_id,
                            OWNERSHIPS.c.state == str(OwnershipState.TAKEN),
                            OWNERSHIPS.c.resolved_by == request.owner,
                        )
                        .values(values)
                    ).rowcount
                if opened:
                    LifecycleStore.audit_row(
                        connection, AuditEvent.OWNERSHIP_OPENED, request, detail=detail[:500], now=now
                    )
                return opened == 1
        except IntegrityError:
            return False

    def ownership(self, account_id: int) -> Ownership | None:
        with self._store._read() as connection:
            row = (
                connection.execute(select(OWNERSHIPS).where(OWNERSHIPS.c.mixpanel_account_id == account_id))
                .mappings()
                .first()
            )
        return _ownership(row) if row else None

    def open_ownerships(self) -> list[Ownership]:
        query = select(OWNERSHIPS).where(OWNERSHIPS.c.state == str(OwnershipState.OPEN))
        with self._store._read() as connection:
            return [
                _ownership(row)
                for row in connection.execute(query.order_by(OWNERSHIPS.c.opened_at)).mappings()
            ]

    def take_over(self, request: StoredRequest, *, former_owner: str, new_owner: str, now: datetime) -> bool:
        """Make `new_owner` the owner, if the ownership is still open and the record still names the former
        owner: both compare-and-set, in one transaction, with the audit row. False: someone was first."""
        try:
            return self._take_over(request, former_owner=former_owner, new_owner=new_owner, now=now)
        except _Lost:
            return False

    def _take_over(self, request: StoredRequest, *, former_owner: str, new_owner: str, now: datetime) -> bool:
        with self._store._write() as connection:
            if not _settle_open(connection, request, former_owner, resolved_by=new_owner, now=now):
                return False
            moved = connection.execute(
                update(REQUESTS)
                .where(
                    REQUESTS.c.id == request.id,
                    REQUESTS.c.state == str(RequestState.DELIVERED),
                    func.coalesce(REQUESTS.c.owner_id, REQUESTS.c.requester_id) == former_owner,
                )
                .values(owner_id=new_owner, updated_at=now)
            ).rowcount
            if moved != 1:
                raise _Lost  # rolls back the ownership's update too
            # A takeover counts as a keep by the new owner: a new idle spell begins, so a countdown begun
            # for the former owner (whose idle notice, with its Keep it, the new owner never got) ends.
            connection.execute(
                insert(KEEPS).values(
                    mixpanel_account_id=request.mixpanel_account_id,
                    request_id=request.id,
                    actor_id=new_owner,
                    reason=f"took over from {former_owner}",
                    kept_at=now,
                )
            )
            LifecycleStore.action_row(
                connection,
                AuditEvent.OWNER_CHANGED,
                _ref(request),
                actor_id=new_owner,
                detail=f"took over from {former_owner}",
                now=now,
            )
            return True

    def settle_return(
        self, request: StoredRequest, *, former_owner: str, actor_id: str, now: datetime
    ) -> bool:
        """The former owner may own accounts again (reactivated, or a full member again) and the record
        still names them: the ownership is settled in their favour. A compare-and-set; audited."""
        with self._store._write() as connection:
            settled = _settle_open(connection, request, former_owner, resolved_by=former_owner, now=now)
            if settled:
                LifecycleStore.action_row(
                    connection,
                    AuditEvent.OWNER_CHANGED,
                    _ref(request),
                    actor_id=actor_id,
                    detail=f"{former_owner} may own accounts again; the ownership is theirs again",
                    now=now,
                )
            return settled

    def close_ownership(self, account_id: int, *, actor_id: str, now: datetime) -> None:
        """The account was deleted: its open ownership is settled."""
        with self._store._write() as connection:
            connection.execute(
                update(OWNERSHIPS)
                .where(
                    OWNERSHIPS.c.mixpanel_account_id == account_id,
                    OWNERSHIPS.c.state == str(OwnershipState.OPEN),
                )
                .values(state=str(OwnershipState.CLOSED), resolved_by=actor_id, resolved_at=now)
            )

    # --- posture snapshots, for the trend ----------------------------------------------------------------

    def save_posture(self, period: str, counts: dict[str, int], *, now: datetime) -> None:
        """The period's counts, as last computed (later runs in the period overwrite earlier ones)."""
        with self._store._write() as connection:
            updated = connection.execute(
                update(POSTURES).where(POSTURES.c.period == period).values(taken_at=now, counts=counts)
            ).rowcount
            if not updated:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(POSTURES).values(period=period, taken_at=now, counts=counts)
                        )
                except IntegrityError:
                    pass  # another instance wrote this period's first snapshot just now

    def postures(self, limit: int = 2) -> list[tuple[str, dict[str, int]]]:
        """The latest snapshots, newest first."""
        query = select(POSTURES).order_by(POSTURES.c.period.desc()).limit(limit)
        with self._store._read() as connection:
            return [(row["period"], dict(row["counts"])) for row in connection.execute(query).mappings()]


class _Lost(Exception):
    """A compare-and-set inside a transaction found the row changed: roll the whole transaction back."""


def _aware(moment: Any) -> datetime:
    """func.max() bypasses the column type on SQLite, which then hands back a naive string or datetime."""
    from datetime import UTC

    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ownership(row: Any) -> Ownership:
    return Ownership(
        account_id=row["mixpanel_account_id"],
        request_id=row["request_id"],
        former_owner=row["former_owner"],
        state=OwnershipState(row["state"]),
        opened_at=row["opened_at"],
    )


def _settle_open(
    connection: Connection, request: StoredRequest, former_owner: str, *, resolved_by: str, now: datetime
) -> bool:
    """The compare-and-set that settles an account's open ownership, still naming `former_owner`, in
    `resolved_by`'s favour (a takeover, or the former owner's return); False when someone settled it first."""
    return (
        connection.execute(
            update(OWNERSHIPS)
            .where(
                OWNERSHIPS.c.mixpanel_account_id == request.mixpanel_account_id,
                OWNERSHIPS.c.state == str(OwnershipState.OPEN),
                OWNERSHIPS.c.former_owner == former_owner,
            )
            .values(state=str(OwnershipState.TAKEN), resolved_by=resolved_by, resolved_at=now)
        ).rowcount
        == 1
    )
