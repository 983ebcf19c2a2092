"""Requests and the audit trail, in SQLite or PostgreSQL through SQLAlchemy 2.

A request is a stored record with an id and an explicit state. Buttons and later flows (approvals,
reminders, deletion from Slack) carry only that id. No token is ever written here, not even hashed.
The tables are in `bot/db/schema.py`; the engine, migrations and SQLite's writer queue in `bot/db/engine.py`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bot.db.engine import READ_ONLY, SQLiteWriterQueue, build_engine, lock_key, migrate
from bot.db.schema import (
    AUDIT,
    AUDIT_COLUMNS,
    QUOTA_STATES,
    REQUESTS,
    AuditEvent,
    RequestState,
    StoredRequest,
)
from bot.models import AccountSpec


class StateMoved(Exception):
    """A compare-and-set lost: someone else (the sweeper, or a live job) moved the request first."""

    def __init__(self, request_id: str, actual: RequestState | None):
        super().__init__(f"request {request_id} is {actual}, not in the expected state")
        self.request_id = request_id
        self.actual = actual


@dataclass(frozen=True)
class Claimed:
    request: StoredRequest


@dataclass(frozen=True)
class AlreadyClaimed:
    request: StoredRequest


@dataclass(frozen=True)
class OverQuota:
    recent: int


@dataclass(frozen=True)
class RecordedRefusal:
    """Whether to tell the audit channel about this refusal, and how many of the person's refusals since
    the last notice went untold."""

    announce: bool
    suppressed: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


def audit_row(
    connection: Connection,
    event: AuditEvent,
    row: Mapping[str, Any],
    *,
    at: datetime,
    detail: str | None = None,
    account: tuple[int, str | None] | None = None,
    actor_id: str | None = None,
) -> None:
    """One audit row about a request row, in the caller's transaction. `account` names the account the
    event is about, when it is not the request's own; `actor_id` who acted, when not the requester."""
    account_id, full_username = account or (row["mixpanel_account_id"], row["mixpanel_username"])
    connection.execute(
        insert(AUDIT).values(
            at=at,
            event=str(event),
            request_id=row["id"],
            requester_id=row["requester_id"],
            username=row["username"],
            role=row["role"],
            project_ids=list(row["project_ids"] or ()),
            expires_at=row["expires_at"],
            mixpanel_account_id=account_id,
            mixpanel_username=full_username,
            detail=detail,
            actor_id=actor_id,
        )
    )


class Store:
    """Hot paths use SQLAlchemy Core statements: a burst of creations is bound by this CPU, not by I/O."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._read_engine = engine.execution_options(**{READ_ONLY: True})
        self._is_postgres = engine.dialect.name == "postgresql"
        self._writer = (
            contextlib.nullcontext() if self._is_postgres else SQLiteWriterQueue(engine.url.database)
        )

    @classmethod
    def connect(cls, database_url: str) -> Store:
        engine = build_engine(database_url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._read_engine.begin() as connection:
            yield connection

    # --- requests --------------------------------------------------------------------------------

    def claim(
        self,
        *,
        submission_key: str,
        requester_id: str,
        team_id: str | None,
        channel_id: str | None,
        spec: AccountSpec,
        within_quota: Callable[[int], bool],
        window: timedelta = timedelta(hours=24),
        now: datetime | None = None,
        replaces_request_id: str | None = None,
        state: RequestState = RequestState.SUBMITTED,
        event: AuditEvent = AuditEvent.SUBMITTED,
        actor_id: str | None = None,
        detail: str | None = None,
        with_row: Callable[[Connection, Mapping[str, Any]], None] | None = None,
    ) -> Claimed | AlreadyClaimed | OverQuota:
        """Store a submission exactly once, within the requester's quota, atomically across processes, in
        `state`, recording `event`; `with_row` writes what belongs with the new row in the same transaction
        (an approval request's own row)."""
        now = now or _now()
        try:
            with self._write() as connection:
                existing = self._by_key(connection, submission_key)
                if existing is not None:
                    return AlreadyClaimed(existing)
                if self._is_postgres:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": lock_key("quota:" + requester_id)},
                    )
                recent = self._count_recent(connection, requester_id, now - window)
                if not within_quota(recent):
                    return OverQuota(recent)
                row = {
                    "id": uuid.uuid4().hex,
                    "submission_key": submission_key,
                    "requester_id": requester_id,
                    "team_id": team_id,
                    "channel_id": channel_id,
                    "username": spec.username,
                    "role": str(spec.role),
                    "project_ids": list(spec.project_ids),
                    "expires_at": spec.expires_at,
                    "state": str(state),
                    "mixpanel_account_id": None,
                    "mixpanel_username": None,
                    "error": None,
                    "created_at": now,
                    "updated_at": now,
                    "last_create_attempt_at": None,
                    "replaces_request_id": replaces_request_id,
                    "destination": spec.destination,
                    "destination_entry": spec.secret_name,
                    "destination_version": None,
                    "store_started_at": None,
                }
                connection.execute(insert(REQUESTS).values(row))
                audit_row(connection, event, row, at=now, actor_id=actor_id, detail=detail)
                if with_row is not None:
                    with_row(connection, row)
                return Claimed(StoredRequest.of(row))
        except IntegrityError:
            # Another process stored the same submission between our check and our insert.
            with self._read() as connection:
                existing = self._by_key(connection, submission_key)
            if existing is None:
                raise
            return AlreadyClaimed(existing)

    @staticmethod
    def _by_key(connection: Connection, submission_key: str) -> StoredRequest | None:
        row = (
            connection.execute(select(REQUESTS).where(REQUESTS.c.submission_key == submission_key))
            .mappings()
            .first()
        )
        return StoredRequest.of(row) if row else None

    def recent_count(
        self, requester_id: str, *, window: timedelta = timedelta(hours=24), now: datetime | None = None
    ) -> int:
        with self._read() as connection:
            return self._count_recent(connection, requester_id, (now or _now()) - window)

    def submission_status(
        self,
        submission_key: str,
        requester_id: str,
        *,
        window: timedelta = timedelta(hours=24),
        now: datetime | None = None,
    ) -> tuple[StoredRequest | None, int]:
        """One read for the submission's ack: was it stored already, and how many did this person make?"""
        with self._read() as connection:
            existing = self._by_key(connection, submission_key)
            return existing, self._count_recent(connection, requester_id, (now or _now()) - window)

    @staticmethod
    def _count_recent(connection: Connection, requester_id: str, since: datetime) -> int:
        return connection.execute(
            select(func.count())
            .select_from(REQUESTS)
            .where(
                REQUESTS.c.requester_id == requester_id,
                REQUESTS.c.created_at > since,
                REQUESTS.c.state.in_([str(state) for state in QUOTA_STATES]),
            )
        ).scalar_one()

    def get(self, request_id: str) -> StoredRequest | None:
        with self._read() as connection:
            row = connection.execute(select(REQUESTS).where(REQUESTS.c.id == request_id)).mappings().first()
            return StoredRequest.of(row) if row else None

    def transition(
        self,
        request_id: str,
        state: RequestState,
        *,
        expected: tuple[RequestState, ...],
        event: AuditEvent | None = None,
        detail: str | None = None,
        mixpanel_account_id: int | None = None,
        mixpanel_username: str | None = None,
        secret_version: str | None = None,
        earlier_events: tuple[tuple[AuditEvent, str | None], ...] = (),
    ) -> StoredRequest:
        """Compare-and-set: move a request from one of the `expected` states to `state`, recording
        `earlier_events`, then `event`, in the same transaction. Raises StateMoved when it was not there."""
        now = _now()
        values: dict[str, Any] = {"state": str(state), "updated_at": now}
        if mixpanel_account_id is not None:
            values["mixpanel_account_id"] = mixpanel_account_id
        if mixpanel_username is not None:
            values["mixpanel_username"] = mixpanel_username
        if secret_version is not None:
            values["destination_version"] = secret_version
        if detail is not None and state in (RequestState.FAILED, RequestState.DELETE_FAILED):
            values["error"] = detail
        with self._write() as connection:
            row = self._compare_and_set(connection, request_id, expected, values)
            for earlier, earlier_detail in earlier_events:
                audit_row(connection, earlier, row, at=now, detail=earlier_detail)
            if event is not None:
                audit_row(connection, event, row, at=now, detail=detail)
            return StoredRequest.of(row)

    @staticmethod
    def _compare_and_set(
        connection: Connection, request_id: str, expected: tuple[RequestState, ...], values: dict[str, Any]
    ) -> Mapping[str, Any]:
        row = (
            connection.execute(
                update(REQUESTS)
                .where(REQUESTS.c.id == request_id, REQUESTS.c.state.in_([str(s) for s in expected]))
                .values(values)
                .returning(*REQUESTS.c)
            )
            .mappings()
            .first()
        )
        if row is None:
            actual = connection.execute(
                select(REQUESTS.c.state).where(REQUESTS.c.id == request_id)
            ).scalar_one_or_none()
            raise StateMoved(request_id, RequestState(actual) if actual else None)
        return row

    def record_create_attempt(self, request_id: str, *, now: datetime | None = None) -> StoredRequest:
        """Just before a create call: an account it makes carries a `created` from about here on."""
        now = now or _now()
        values = {"last_create_attempt_at": now, "updated_at": now}
        with self._write() as connection:
            return StoredRequest.of(
                self._compare_and_set(connection, request_id, (RequestState.SUBMITTED,), values)
            )

    def record_store_attempt(self, request_id: str, *, now: datetime | None = None) -> StoredRequest:
        """Just before the credentials are written to the request's destination: a secret updated after this
        moment is this request's (GitHub keeps no mark of its own)."""
        now = now or _now()
        values = {"store_started_at": now, "updated_at": now}
        with self._write() as connection:
            return StoredRequest.of(
                self._compare_and_set(connection, request_id, (RequestState.CREATED,), values)
            )

    def record_ambiguous_create(
        self, request_id: str, detail: str, *, now: datetime | None = None
    ) -> StoredRequest:
        """The create call ended without an answer: `uncertain`. Its end is the last moment any of its
        retried HTTP attempts can have been sent, so it becomes the window's upper bound."""
        now = now or _now()
        values = {"state": str(RequestState.UNCERTAIN), "last_create_attempt_at": now, "updated_at": now}
        with self._write() as connection:
            row = self._compare_and_set(connection, request_id, (RequestState.SUBMITTED,), values)
            audit_row(connection, AuditEvent.MIXPANEL_ERROR, row, at=now, detail=detail)
            return StoredRequest.of(row)

    def lease_stale(
        self, states: tuple[RequestState, ...], *, idle_for: timedelta, now: datetime | None = None
    ) -> list[StoredRequest]:
        """Requests nobody has touched for `idle_for`, leased to the caller by bumping `updated_at`,
        so that several instances sweeping at once never handle the same request twice."""
        now = now or _now()
        with self._write() as connection:
            query = (
                select(REQUESTS.c.id)
                .where(
                    REQUESTS.c.state.in_([str(s) for s in states]), REQUESTS.c.updated_at <= now - idle_for
                )
                .order_by(REQUESTS.c.created_at)
                .limit(100)
            )
            if self._is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = list(connection.execute(query).scalars())
            if not ids:
                return []
            rows = connection.execute(
                update(REQUESTS).where(REQUESTS.c.id.in_(ids)).values(updated_at=now).returning(*REQUESTS.c)
            ).mappings()
            return sorted((StoredRequest.of(row) for row in rows), key=lambda request: request.created_at)

    # --- audit -----------------------------------------------------------------------------------

    def record_refusal(
        self,
        requester_id: str,
        reason: str,
        spec: AccountSpec | None = None,
        *,
        announce_every: timedelta | None = None,
        now: datetime | None = None,
    ) -> RecordedRefusal:
        """Every refusal is stored. With `announce_every` (an audit channel exists), at most one refusal per
        person per interval is marked for announcement: decided in the same write, from the stored rows,
        so several threads or instances never announce the same burst twice."""
        now = now or _now()
        with self._write() as connection:
            notice = RecordedRefusal(announce=False)
            if announce_every is not None:
                if self._is_postgres:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": lock_key("refusals:" + requester_id)},
                    )
                notice = self._refusal_notice(connection, requester_id, now - announce_every)
            connection.execute(
                insert(AUDIT).values(
                    at=now,
                    event=str(AuditEvent.REFUSED),
                    request_id=None,
                    requester_id=requester_id,
                    username=spec.username if spec else None,
                    role=str(spec.role) if spec else None,
                    project_ids=list(spec.project_ids) if spec else None,
                    expires_at=spec.expires_at if spec else None,
                    mixpanel_account_id=None,
                    mixpanel_username=None,
                    detail=reason,
                    announced=notice.announce if announce_every is not None else None,
                )
            )
        return notice

    @staticmethod
    def _refusal_notice(connection: Connection, requester_id: str, quiet_since: datetime) -> RecordedRefusal:
        refused = (AUDIT.c.requester_id == requester_id, AUDIT.c.event == str(AuditEvent.REFUSED))
        last_told = connection.execute(
            select(func.max(AUDIT.c.at)).where(*refused, AUDIT.c.announced.is_(True))
        ).scalar_one()
        if last_told is not None and last_told > quiet_since:
            return RecordedRefusal(announce=False)
        untold = select(func.count()).select_from(AUDIT).where(*refused, AUDIT.c.announced.is_(False))
        if last_told is not None:
            untold = untold.where(AUDIT.c.at >= last_told)
        return RecordedRefusal(announce=True, suppressed=connection.execute(untold).scalar_one())

    def audit_trail(self, since: datetime | None = None) -> list[dict[str, Any]]:
        with self._read() as connection:
            query = select(AUDIT).order_by(AUDIT.c.at, AUDIT.c.id)
            if since is not None:
                query = query.where(AUDIT.c.at >= since)
            trail = []
            for record in connection.execute(query).mappings():
                entry = {column: record[column] for column in AUDIT_COLUMNS}
                for moment in ("at", "expires_at"):
                    entry[moment] = entry[moment].isoformat() if entry[moment] else None
                trail.append(entry)
            return trail
