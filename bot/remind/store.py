"""Storage for reminders: which went out (each once, ever), and a lease per periodic job."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.schema import AuditEvent, Base, StoredRequest, UTCDateTime
from bot.db.store import Store
from bot.manage.store import LifecycleStore


class ReminderSent(Base):
    __tablename__ = "reminders_sent"

    request_id: Mapped[str] = mapped_column(ForeignKey("account_requests.id"), primary_key=True)
    days_before: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    recipient: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobLease(Base):
    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


SENT = ReminderSent.__table__
LEASES = JobLease.__table__


class ReminderStore:
    def __init__(self, store: Store):
        self._store = store

    def sent(self, request_ids: list[str]) -> set[tuple[str, int]]:
        if not request_ids:
            return set()
        query = select(SENT.c.request_id, SENT.c.days_before).where(SENT.c.request_id.in_(request_ids))
        with self._store._read() as connection:
            return {(row.request_id, row.days_before) for row in connection.execute(query)}

    def claim(self, request: StoredRequest, days_before: int, *, recipient: str, now: datetime) -> bool:
        """Reserve this reminder before sending it; False if another run (or instance) already did."""
        try:
            with self._store._write() as connection:
                connection.execute(
                    insert(SENT).values(
                        request_id=request.id, days_before=days_before, recipient=recipient, sent_at=now
                    )
                )
            return True
        except IntegrityError:
            return False

    def release(self, request: StoredRequest, days_before: int) -> None:
        """Sending failed: let a later run try again."""
        with self._store._write() as connection:
            connection.execute(
                delete(SENT).where(SENT.c.request_id == request.id, SENT.c.days_before == days_before)
            )

    def record_sent(
        self, lifecycle: LifecycleStore, request: StoredRequest, detail: str, now: datetime
    ) -> None:
        with self._store._write() as connection:
            lifecycle.audit_row(connection, AuditEvent.REMINDED, request, detail=detail, now=now)

    def acquire_lease(self, name: str, holder: str, *, now: datetime, duration: timedelta) -> bool:
        """Hold `name` until now + duration, unless someone else holds it still. Renewable by its holder."""
        until = now + duration
        try:
            with self._store._write() as connection:
                current = connection.execute(select(LEASES).where(LEASES.c.name == name)).mappings().first()
                if current is None:
                    connection.execute(insert(LEASES).values(name=name, holder=holder, expires_at=until))
                    return True
                if current["holder"] != holder and current["expires_at"] > now:
                    return False
                taken = connection.execute(
                    update(LEASES)
                    .where(
                        LEASES.c.name == name,
                        LEASES.c.holder == current["holder"],
                        LEASES.c.expires_at == current["expires_at"],
                    )
                    .values(holder=holder, expires_at=until)
                ).rowcount
                return taken == 1
        except IntegrityError:
            return False  # another instance inserted the lease first
