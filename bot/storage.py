"""Requests and the audit trail, in SQLite or PostgreSQL through SQLAlchemy 2.

A request is a stored record with an id and an explicit state. Buttons and later flows (approvals,
reminders, deletion from Slack) carry only that id. No token is ever written here, not even hashed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
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
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.models import AccountSpec, Role


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
    # Requests that need approval (bot/approval_states.py); a claimed one continues as SUBMITTED.
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


class StateMoved(Exception):
    """A compare-and-set lost: someone else (the sweeper, or a live job) moved the request first."""

    def __init__(self, request_id: str, actual: RequestState | None):
        super().__init__(f"request {request_id} is {actual}, not in the expected state")
        self.request_id = request_id
        self.actual = actual


class AuditEvent(StrEnum):
    REFUSED = "refused"
    SUBMITTED = "submitted"
    CREATED = "created"
    MIXPANEL_ERROR = "mixpanel_error"
    TOKEN_DELIVERED = "token_delivered"  # noqa: S105 - an event name, not a secret
    DELIVERY_FAILED = "delivery_failed"
    DELETED = "deleted"
    DELETE_FAILED = "delete_failed"
    # The lifecycle of delivered accounts (bot/manage.py).
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
        )


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


MIGRATIONS_DIR = Path(__file__).parent / "migrations"
READ_ONLY = "mpsa_read_only"

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


def _now() -> datetime:
    return datetime.now(UTC)


def build_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record) -> None:
            # Let SQLAlchemy's BEGIN below own transactions, so they can take the write lock up front.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:
            # Writers take the lock up front, so count-then-insert is race-free across threads and
            # processes; readers (WAL) never wait for a writer.
            read_only = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(database_url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision; safe when several instances start at once."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("migrations")})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class SQLiteWriterQueue:
    """One writer at a time, across the threads and the worker processes that share a SQLite file.

    SQLite's own busy handler makes a waiting writer sleep up to 100 ms between tries; under a burst that
    convoy dominates latency. Waiters here block in the kernel and start the moment the previous writer
    has committed. The lock file sits beside the database.
    """

    def __init__(self, database: str | None):
        self._threads = threading.Lock()
        in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
        self._path = None if in_memory else Path(database).with_name(Path(database).name + ".writer.lock")
        self._file: Any = None

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._path is not None:
                if self._file is None:  # opened lazily: after a fork each process needs its own
                    self._file = self._path.open("a")
                fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._threads.release()


REQUESTS = AccountRequest.__table__
AUDIT = AuditRecord.__table__


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
    ) -> Claimed | AlreadyClaimed | OverQuota:
        """Store a submission exactly once, within the requester's quota, atomically across processes."""
        now = now or _now()
        try:
            with self._write() as connection:
                existing = self._by_key(connection, submission_key)
                if existing is not None:
                    return AlreadyClaimed(existing)
                if self._is_postgres:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": _lock_key("quota:" + requester_id)},
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
                    "state": str(RequestState.SUBMITTED),
                    "mixpanel_account_id": None,
                    "mixpanel_username": None,
                    "error": None,
                    "created_at": now,
                    "updated_at": now,
                    "last_create_attempt_at": None,
                    "replaces_request_id": replaces_request_id,
                }
                connection.execute(insert(REQUESTS).values(row))
                self._audit(connection, AuditEvent.SUBMITTED, row, at=now)
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
        if detail is not None and state in (RequestState.FAILED, RequestState.DELETE_FAILED):
            values["error"] = detail
        with self._write() as connection:
            row = self._compare_and_set(connection, request_id, expected, values)
            for earlier, earlier_detail in earlier_events:
                self._audit(connection, earlier, row, at=now, detail=earlier_detail)
            if event is not None:
                self._audit(connection, event, row, at=now, detail=detail)
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

    def record_ambiguous_create(
        self, request_id: str, detail: str, *, now: datetime | None = None
    ) -> StoredRequest:
        """The create call ended without an answer: `uncertain`. Its end is the last moment any of its
        retried HTTP attempts can have been sent, so it becomes the window's upper bound."""
        now = now or _now()
        values = {"state": str(RequestState.UNCERTAIN), "last_create_attempt_at": now, "updated_at": now}
        with self._write() as connection:
            row = self._compare_and_set(connection, request_id, (RequestState.SUBMITTED,), values)
            self._audit(connection, AuditEvent.MIXPANEL_ERROR, row, at=now, detail=detail)
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
                        {"key": _lock_key("refusals:" + requester_id)},
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

    @staticmethod
    def _audit(
        connection: Connection,
        event: AuditEvent,
        row: Mapping[str, Any],
        *,
        at: datetime,
        detail: str | None = None,
        account: tuple[int, str | None] | None = None,
    ) -> None:
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
            )
        )

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
