"""Periodic reviews (recertification): which period it is, and what is due for an unanswered account.
Pure functions of the clock and the policy; the round itself is bot/govern/review_flow.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from bot.govern.idle import CountdownStep, countdown_step


class Answer(StrEnum):
    STILL_NEEDED = "still_needed"
    DELETE = "delete"


def next_review_period(latest: tuple[int, datetime] | None, now: datetime, every_days: int) -> int | None:
    """The number of the owner's next review round, or None while their latest round (its number, when it
    started) is younger than every_days. Counted per owner from their own last round, not from a calendar
    boundary, so a round never follows another days later; two instances computing the same number race
    on the round's unique key, and one wins."""
    if latest is None:
        return 0
    period, started_at = latest
    return period + 1 if now - started_at >= timedelta(days=every_days) else None


class Overdue(StrEnum):
    NOT_YET = "not_yet"
    REPORT = "report"  # tell the admins (once)
    WARN = "warn"  # review_action delete: a day before the deletion
    DELETE = "delete"


def overdue_step(
    started_at: datetime,
    warned_at: datetime | None,
    *,
    now: datetime,
    grace_days: int,
    action: str,
) -> Overdue:
    """An account left unconfirmed in a round that started at `started_at`."""
    grace = timedelta(days=grace_days)
    if action != "delete":
        return Overdue.REPORT if now >= started_at + grace else Overdue.NOT_YET
    step = countdown_step(started_at, warned_at, now=now, after=grace)
    return {
        CountdownStep.WAIT: Overdue.NOT_YET,
        CountdownStep.WARN: Overdue.WARN,
        CountdownStep.DELETE: Overdue.DELETE,
    }[step]
