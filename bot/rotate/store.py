"""The rotation records: one per rotated account (keyed by the old account's request), each step a
compare-and-set that also writes its audit row, and a short claim so that two runs never work one rotation
at once.

A claim (`claimed_by`, `claimed_until`) is taken before a step that calls Mixpanel or the store and is
dropped when the step ends; a run that dies leaves a claim that lapses, and the next run settles the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.schema import REQUESTS, AuditEvent, Base, RequestState, StoredRequest, UTCDateTime
from bot.db.store import Store, audit_row
from bot.rotate.states import FINISHED, IN_PROGRESS, RotationState, check_move


class RotationEvent(StrEnum):
    """The audit trail's rotation events (on the old account's request)."""

    DUE = "rotation_due"
    WAITING = "rotation_waiting_approval"
    SUCCESSOR_CREATED = "rotation_successor_created"
    WRITTEN = "rotation_written"
    VERIFIED = "rotation_verified"
    OVERLAPPING = "rotation_overlapping"
    KEPT_LONGER = "rotation_kept_longer"
    OLD_DELETED = "rotation_old_deleted"
    OLD_KEPT = "rotation_old_kept"
    RETRIED = "rotation_retried"
    FAILED = "rotation_failed"


MOVE_EVENTS = {
    RotationState.DUE: RotationEvent.RETRIED,
    RotationState.WAITING_FOR_APPROVAL: RotationEvent.WAITING,
    RotationState.SUCCESSOR_CREATED: RotationEvent.SUCCESSOR_CREATED,
    RotationState.WRITTEN: RotationEvent.WRITTEN,
    RotationState.VERIFIED: RotationEvent.VERIFIED,
    RotationState.OVERLAPPING: RotationEvent.OVERLAPPING,
    RotationState.OLD_DELETED: RotationEvent.OLD_DELETED,
    RotationState.OLD_KEPT: RotationEvent.OLD_KEPT,
    RotationState.FAILED: RotationEvent.FAILED,
}


class RotationRow(Base):
    __tablename__ = "rotations"

    # The old account's request: one rotation per account, so two runs cannot both start one.
    request_id: Mapped[str] = mapped_column(ForeignKey("account_requests.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(24))
    attempt: Mapped[int] = mapped_column(Integer)  # 1 for the first successor; +1 each time one is lost
    successor_request_id: Mapped[str | None] = mapped_column(ForeignKey("account_requests.id"))
    successor_account_id: Mapped[int | None] = mapped_column(BigInteger)
    successor_username: Mapped[str | None] = mapped_column(String(255))
    destination_version: Mapped[str | None] = mapped_column(String(128))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    kept_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # "Keep the old one a day longer"
    cap_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure: Mapped[str | None] = mapped_column(Text)  # why it stopped, one sentence (never a secret)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_rotations_state", "state"),)


ROTATIONS = RotationRow.__table__


@dataclass(frozen=True)
class Rotation:
    request_id: str
    state: RotationState
    attempt: int
    due_at: datetime
    created_at: datetime
    updated_at: datetime
    successor_request_id: str | None = None
    successor_account_id: int | None = None
    successor_username: str | None = None
    destination_version: str | None = None
    written_at: datetime | None = None
    verified_at: datetime | None = None
    kept_until: datetime | None = None
    cap_warned_at: datetime | None = None
    failure: str | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Rotation:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["state"] = RotationState(row["state"])
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def began(self) -> bool:
        """Past due (or failed): a successor is asked for, being made, or exists."""
        return self.state not in (RotationState.DUE, RotationState.FAILED)


class RotationMoved(Exception):
    """A compare-and-set found the rotation elsewhere (another run moved it, or the claim lapsed)."""

    def __init__(self, request_id: str, actual: RotationState | None):
        super().__init__(f"rotation of {request_id} is {actual}")
        self.actual = actual


class RotationStore:
    def __init__(self, store: Store):
        self._store = store

    def get(self, request_id: str) -> Rotation | None:
        with self._store._read() as connection:
            row = connection.execute(select(ROTATIONS).where(ROTATIONS.c.request_id == request_id))
            found = row.mappings().first()
        return Rotation.of(found) if found else None

    def for_requests(self, request_ids: list[str]) -> dict[str, Rotation]:
        if not request_ids:
            return {}
        query = select(ROTATIONS).where(ROTATIONS.c.request_id.in_(request_ids))
        with self._store._read() as connection:
            return {row["request_id"]: Rotation.of(row) for row in connection.execute(query).mappings()}

    def written_over(self, request_ids: list[str]) -> set[str]:
        """Of these accounts, those a delivered newer account replaced in the same secret (a Replace…):
        the secret holds the newer one, which is the one rotated; writing over it would be refused."""
        if not request_ids:
            return set()
        newer = REQUESTS.alias("newer")
        query = (
            select(REQUESTS.c.id)
            .join(newer, newer.c.replaces_request_id == REQUESTS.c.id)
            .where(
                REQUESTS.c.id.in_(request_ids),
                newer.c.state == str(RequestState.DELIVERED),
                newer.c.destination == REQUESTS.c.destination,
                newer.c.destination_entry == REQUESTS.c.destination_entry,
            )
        )
        with self._store._read() as connection:
            return set(connection.execute(query).scalars())

    def unfinished(self) -> list[Rotation]:
        query = select(ROTATIONS).where(ROTATIONS.c.state.not_in([str(s) for s in FINISHED]))
        with self._store._read() as connection:
            return [Rotation.of(row) for row in connection.execute(query).mappings()]

    def stuck(self, now: datetime, *, quiet_for: timedelta) -> list[Rotation]:
        """Failed rotations, and those a run should have moved on but that have not moved for `quiet_for`."""
        query = select(ROTATIONS).where(
            or_(
                ROTATIONS.c.state == str(RotationState.FAILED),
                and_(
                    ROTATIONS.c.state.in_([str(s) for s in IN_PROGRESS]),
                    ROTATIONS.c.updated_at < now - quiet_for,
                ),
            )
        )
        with self._store._read() as connection:
            return [Rotation.of(row) for row in connection.execute(query).mappings()]

    def open(self, request_id: str, *, due_at: datetime, now: datetime) -> Rotation | None:
        """Start this account's rotation; None if it has one already (another run started it)."""
        values = {
            "request_id": request_id,
            "state": str(RotationState.DUE),
            "attempt": 1,
            "due_at": due_at,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._store._write() as connection:
                connection.execute(insert(ROTATIONS).values(values))
                self._audit(connection, request_id, RotationEvent.DUE, f"due since {due_at:%Y-%m-%d}", now)
                found = connection.execute(select(ROTATIONS).where(ROTATIONS.c.request_id == request_id))
                return Rotation.of(found.mappings().one())
        except IntegrityError:
            return None

    def take(
        self,
        request_id: str,
        states: tuple[RotationState, ...],
        *,
        holder: str,
        now: datetime,
        lease: timedelta,
    ) -> Rotation | None:
        """Claim the rotation for one step, if it is in `states` and nobody else's claim is still good."""
        with self._store._write() as connection:
            row = (
                connection.execute(
                    update(ROTATIONS)
                    .where(
                        ROTATIONS.c.request_id == request_id,
                        ROTATIONS.c.state.in_([str(s) for s in states]),
                        or_(
                            ROTATIONS.c.claimed_until.is_(None),
                            ROTATIONS.c.claimed_until <= now,
                            ROTATIONS.c.claimed_by == holder,
                        ),
                    )
                    .values(claimed_by=holder, claimed_until=now + lease)
                    .returning(*ROTATIONS.c)
                )
                .mappings()
                .first()
            )
        return Rotation.of(row) if row else None

    def move(
        self,
        rotation: Rotation,
        target: RotationState,
        *,
        holder: str | None,
        now: datetime,
        detail: str | None = None,
        release: bool = False,
        **values: Any,
    ) -> Rotation:
        """Compare-and-set from the rotation's state to `target`, under `holder`'s claim (None: unclaimed
        moves, such as a person's Rotate now), with its audit row in the same transaction."""
        check_move(rotation.state, target)
        changes = {"state": str(target), "updated_at": now, **values}
        if release:
            changes.update(claimed_by=None, claimed_until=None)
        condition = [ROTATIONS.c.request_id == rotation.request_id, ROTATIONS.c.state == str(rotation.state)]
        if holder is not None:
            condition.append(ROTATIONS.c.claimed_by == holder)
        with self._store._write() as connection:
            row = (
                connection.execute(
                    update(ROTATIONS).where(*condition).values(changes).returning(*ROTATIONS.c)
                )
                .mappings()
                .first()
            )
            if row is None:
                actual = connection.execute(
                    select(ROTATIONS.c.state).where(ROTATIONS.c.request_id == rotation.request_id)
                ).scalar_one_or_none()
                raise RotationMoved(rotation.request_id, RotationState(actual) if actual else None)
            self._audit(connection, rotation.request_id, MOVE_EVENTS[target], detail, now)
            return Rotation.of(row)

    def update(self, rotation: Rotation, *, holder: str | None, now: datetime, **values: Any) -> Rotation:
        """Change fields of a rotation that stays in its state (a successor's ids, a warning sent)."""
        condition = [ROTATIONS.c.request_id == rotation.request_id, ROTATIONS.c.state == str(rotation.state)]
        if holder is not None:
            condition.append(ROTATIONS.c.claimed_by == holder)
        with self._store._write() as connection:
            row = (
                connection.execute(
                    update(ROTATIONS)
                    .where(*condition)
                    .values(updated_at=now, **values)
                    .returning(*ROTATIONS.c)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise RotationMoved(rotation.request_id, None)
        return Rotation.of(row)

    def keep_longer(
        self, request_id: str, *, after: datetime, by: timedelta, actor_id: str, now: datetime
    ) -> Rotation | None:
        """Push the old account's deletion `by` past `after` (when it is due to go now), or past an earlier
        postponement; only while the rotation is overlapping (a stale click changes nothing)."""
        with self._store._write() as connection:
            current = (
                connection.execute(select(ROTATIONS).where(ROTATIONS.c.request_id == request_id))
                .mappings()
                .first()
            )
            if current is None or current["state"] != str(RotationState.OVERLAPPING):
                return None
            base = max(now, after, current["kept_until"] or after)
            row = (
                connection.execute(
                    update(ROTATIONS)
                    .where(
                        ROTATIONS.c.request_id == request_id,
                        ROTATIONS.c.state == str(RotationState.OVERLAPPING),
                        ROTATIONS.c.updated_at == current["updated_at"],
                    )
                    .values(kept_until=base + by, updated_at=now)
                    .returning(*ROTATIONS.c)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            detail = f"until {base + by:%Y-%m-%d %H:%M} UTC"
            self._audit(connection, request_id, RotationEvent.KEPT_LONGER, detail, now, actor_id=actor_id)
            return Rotation.of(row)

    def hand_over(self, successor: StoredRequest, *, to_owner: str, actor_id: str, now: datetime) -> bool:
        """The delivered successor goes to `to_owner` (the old account's owner now), only while nobody has
        changed its own owner since it was made (a compare-and-set on owner_id, audited). False: moved."""
        with self._store._write() as connection:
            row = (
                connection.execute(
                    update(REQUESTS)
                    .where(
                        REQUESTS.c.id == successor.id,
                        REQUESTS.c.state == str(RequestState.DELIVERED),
                        REQUESTS.c.owner_id.is_(None),
                        REQUESTS.c.requester_id == successor.requester_id,
                    )
                    .values(owner_id=to_owner, updated_at=now)
                    .returning(*REQUESTS.c)
                )
                .mappings()
                .first()
            )
            if row is None:
                return False
            detail = f"follows the old account's owner: from {successor.requester_id} to {to_owner}"
            audit_row(connection, AuditEvent.OWNER_CHANGED, row, at=now, detail=detail, actor_id=actor_id)
            return True

    def release(self, rotation: Rotation, holder: str) -> None:
        with self._store._write() as connection:
            connection.execute(
                update(ROTATIONS)
                .where(ROTATIONS.c.request_id == rotation.request_id, ROTATIONS.c.claimed_by == holder)
                .values(claimed_by=None, claimed_until=None)
            )

    @staticmethod
    def _audit(
        connection: Any,
        request_id: str,
        event: RotationEvent,
        detail: str | None,
        now: datetime,
        actor_id: str | None = None,
    ) -> None:
        request = connection.execute(select(REQUESTS).where(REQUESTS.c.id == request_id)).mappings().one()
        audit_row(connection, event, request, at=now, detail=detail, actor_id=actor_id)  # type: ignore[arg-type]
