"""Idle accounts and the countdown to an automatic deletion: pure functions of times and the policy.

An account is idle when its last use, or (never used) its creation, is older than `governance.idle_days`.
A "Keep it" counts as a use. The idle *period* is named by that latest activity, so a notice is sent once
per period: a use or a keep starts a new period, and the next idle spell is told again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

# Both warnings: the owner and the audit channel are told this long before a deletion the bot does itself.
WARNING_AHEAD = timedelta(days=1)


def last_activity(
    last_used: datetime | None, created_at: datetime | None, kept_at: datetime | None
) -> datetime | None:
    """The latest sign of life: a use, a keep, or (for an account never used) its creation."""
    moments = [moment for moment in (last_used, kept_at) if moment is not None]
    if last_used is None and created_at is not None:
        moments.append(created_at)
    return max(moments) if moments else None


def is_idle(
    last_used: datetime | None,
    created_at: datetime | None,
    kept_at: datetime | None,
    *,
    now: datetime,
    idle_days: int | None,
) -> bool:
    """Idle: no sign of life for more than idle_days. Off (None) or nothing known: never idle."""
    if idle_days is None:
        return False
    activity = last_activity(last_used, created_at, kept_at)
    return activity is not None and now - activity > timedelta(days=idle_days)


def idle_period(last_used: datetime | None, created_at: datetime | None, kept_at: datetime | None) -> str:
    """The key of the current idle spell: one notice per account per key."""
    activity = last_activity(last_used, created_at, kept_at)
    return activity.isoformat(timespec="seconds") if activity else "unknown"


class CountdownStep(StrEnum):
    WAIT = "wait"
    WARN = "warn"  # a day before: tell the owner and the audit channel
    DELETE = "delete"


def countdown_step(
    started_at: datetime, warned_at: datetime | None, *, now: datetime, after: timedelta
) -> CountdownStep:
    """Where a deletion countdown that began at `started_at` stands. The deletion is due at started_at +
    after, and never less than a day after the warning was actually sent (a job that ran late warns late,
    and deletes a day after that)."""
    deadline = started_at + after
    if warned_at is None:
        return CountdownStep.WARN if now >= deadline - WARNING_AHEAD else CountdownStep.WAIT
    if now >= max(deadline, warned_at + WARNING_AHEAD):
        return CountdownStep.DELETE
    return CountdownStep.WAIT
