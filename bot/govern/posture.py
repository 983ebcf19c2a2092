"""The posture: the organization's live accounts counted by what answers for them. Pure: the facts about
each account are gathered by bot/govern/job.py; here they are only counted and compared."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

EXPIRING_WITHIN = timedelta(days=14)

# Every count, in the order the report, the App Home and the weekly summary show them: defined once.
POSTURE_LABELS: dict[str, str] = {
    "live": "live accounts",
    "owned_by_active_member": "owned by an active member",
    "in_destination": "held in a destination",
    "rotated_on_schedule": "rotated on schedule",
    "idle": "idle",
    "unmanaged": "unmanaged (made outside the bot)",
    "without_owner": "without an owner",
    "expiring_within_14_days": "expiring within 14 days",
    "never_expiring": "never expiring",
}


@dataclass(frozen=True)
class AccountFacts:
    """One live account. `owner_active`: the bot knows its owner, and the owner may still manage it.
    `without_owner`: made by the bot (or adopted), but its owner is gone and nobody has taken it over."""

    expires_at: datetime | None
    owner_active: bool = False
    without_owner: bool = False
    unmanaged: bool = False
    idle: bool = False
    in_destination: bool = False
    rotated_on_schedule: bool = False


def posture(facts: list[AccountFacts], *, now: datetime) -> dict[str, int]:
    return {
        "live": len(facts),
        "owned_by_active_member": sum(f.owner_active for f in facts),
        "in_destination": sum(f.in_destination for f in facts),
        "rotated_on_schedule": sum(f.rotated_on_schedule for f in facts),
        "idle": sum(f.idle for f in facts),
        "unmanaged": sum(f.unmanaged for f in facts),
        "without_owner": sum(f.without_owner for f in facts),
        "expiring_within_14_days": sum(
            f.expires_at is not None and now < f.expires_at <= now + EXPIRING_WITHIN for f in facts
        ),
        "never_expiring": sum(f.expires_at is None for f in facts),
    }


def trend(current: dict[str, int], previous: dict[str, int] | None) -> dict[str, int | None]:
    """Each count against the last period's (None: no earlier snapshot)."""
    return {
        key: (current.get(key, 0) - previous.get(key, 0)) if previous is not None else None
        for key in POSTURE_LABELS
    }


def posture_lines(current: dict[str, int], previous: dict[str, int] | None) -> list[str]:
    """One line per count, with its change since the last period when there is one."""
    changes = trend(current, previous)
    lines = []
    for key, label in POSTURE_LABELS.items():
        change = changes[key]
        suffix = "" if change is None else (" (±0)" if change == 0 else f" ({change:+d})")
        lines.append(f"{current.get(key, 0)} {label}{suffix}")
    return lines
