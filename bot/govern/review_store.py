"""Storage for periodic reviews: one round per owner per period (unique), one answer per account in it,
each answered once (an UPDATE guarded by `answer IS NULL`), with its audit row in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.schema import AuditEvent, Base, StoredRequest, UTCDateTime
from bot.db.store import Store
from bot.govern.reviews import Answer
from bot.manage.store import AccountRef, LifecycleStore


class ReviewRound(Base):
    __tablename__ = "review_rounds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(32))
    period: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("owner_id", "period", name="uq_review_rounds_owner_period"),)


class ReviewAnswer(Base):
    __tablename__ = "review_answers"

    round_id: Mapped[str] = mapped_column(ForeignKey("review_rounds.id"), primary_key=True)
    mixpanel_account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    request_id: Mapped[str] = mapped_column(ForeignKey("account_requests.id"))
    username: Mapped[str] = mapped_column(String(255))
    answer: Mapped[str | None] = mapped_column(String(16))
    answered_by: Mapped[str | None] = mapped_column(String(32))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


ROUNDS = ReviewRound.__table__
ANSWERS = ReviewAnswer.__table__


@dataclass(frozen=True)
class ReviewItem:
    round_id: str
    owner_id: str
    period: int
    started_at: datetime
    account_id: int
    request_id: str
    username: str
    answer: Answer | None
    answered_by: str | None
    answered_at: datetime | None


def _item(row: Any) -> ReviewItem:
    return ReviewItem(
        round_id=row["id"],
        owner_id=row["owner_id"],
        period=row["period"],
        started_at=row["started_at"],
        account_id=row["mixpanel_account_id"],
        request_id=row["request_id"],
        username=row["username"],
        answer=Answer(row["answer"]) if row["answer"] else None,
        answered_by=row["answered_by"],
        answered_at=row["answered_at"],
    )


_JOINED = select(ROUNDS, ANSWERS).join(ANSWERS, ANSWERS.c.round_id == ROUNDS.c.id)


class ReviewStore:
    def __init__(self, store: Store):
        self._store = store

    def start_round(
        self, owner_id: str, period: int, accounts: list[StoredRequest], *, now: datetime
    ) -> str | None:
        """Open this owner's round for the period, with one unanswered line per account; None if a run or
        instance opened it already."""
        round_id = uuid.uuid4().hex
        try:
            with self._store._write() as connection:
                connection.execute(
                    insert(ROUNDS).values(id=round_id, owner_id=owner_id, period=period, started_at=now)
                )
                for request in accounts:
                    connection.execute(
                        insert(ANSWERS).values(
                            round_id=round_id,
                            mixpanel_account_id=request.mixpanel_account_id,
                            request_id=request.id,
                            username=request.mixpanel_username or request.username,
                        )
                    )
            return round_id
        except IntegrityError:
            return None

    def latest_round(self, owner_id: str) -> tuple[int, datetime] | None:
        """The owner's latest round: its period number and when it started."""
        query = (
            select(ROUNDS.c.period, ROUNDS.c.started_at)
            .where(ROUNDS.c.owner_id == owner_id)
            .order_by(ROUNDS.c.period.desc())
            .limit(1)
        )
        with self._store._read() as connection:
            row = connection.execute(query).first()
        return (row.period, row.started_at) if row is not None else None

    def forget_round(self, round_id: str) -> None:
        """Its DM could not be sent: a later run opens the round again."""
        with self._store._write() as connection:
            connection.execute(delete(ANSWERS).where(ANSWERS.c.round_id == round_id))
            connection.execute(delete(ROUNDS).where(ROUNDS.c.id == round_id))

    def drop_lines(self, round_id: str, account_ids: list[int]) -> None:
        """Lines whose DM could not be sent: not asked, so not in the round (the next period asks them)."""
        with self._store._write() as connection:
            connection.execute(
                delete(ANSWERS).where(
                    ANSWERS.c.round_id == round_id,
                    ANSWERS.c.mixpanel_account_id.in_(account_ids),
                    ANSWERS.c.answer.is_(None),
                )
            )

    def item(self, round_id: str, account_id: int) -> ReviewItem | None:
        query = _JOINED.where(ROUNDS.c.id == round_id, ANSWERS.c.mixpanel_account_id == account_id)
        with self._store._read() as connection:
            row = connection.execute(query).mappings().first()
        return _item(row) if row else None

    def items(self, round_id: str | None = None) -> list[ReviewItem]:
        """Every line of one round, or of every round (for `python -m bot audit --reviews`)."""
        query = _JOINED if round_id is None else _JOINED.where(ROUNDS.c.id == round_id)
        query = query.order_by(ROUNDS.c.started_at, ROUNDS.c.owner_id, ANSWERS.c.username)
        with self._store._read() as connection:
            return [_item(row) for row in connection.execute(query).mappings()]

    def unanswered(self) -> list[ReviewItem]:
        with self._store._read() as connection:
            rows = connection.execute(_JOINED.where(ANSWERS.c.answer.is_(None))).mappings()
            return [_item(row) for row in rows]

    def answer(
        self, item: ReviewItem, request: StoredRequest, answer: Answer, *, actor_id: str, now: datetime
    ) -> bool:
        """Record the answer once; False if this line was answered already (a double click, a replay)."""
        with self._store._write() as connection:
            changed = connection.execute(
                update(ANSWERS)
                .where(
                    ANSWERS.c.round_id == item.round_id,
                    ANSWERS.c.mixpanel_account_id == item.account_id,
                    ANSWERS.c.answer.is_(None),
                )
                .values(answer=str(answer), answered_by=actor_id, answered_at=now)
            ).rowcount
            if changed == 1:
                LifecycleStore.action_row(
                    connection,
                    AuditEvent.REVIEW_ANSWERED,
                    AccountRef(item.account_id, item.username, request),
                    actor_id=actor_id,
                    detail=f"review period {item.period}: {answer}",
                    now=now,
                )
            return changed == 1
