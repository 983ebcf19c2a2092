"""Which accounts are due for rotation, what their successor may be, and when the old account goes: pure
functions of the stored request, today's policy and the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from bot.db.schema import RequestState, StoredRequest
from bot.models import AccountSpec
from bot.policy.file import DeleteOld, Policy, RotationSettings
from bot.rotate.states import RotationState

# when_unused: the owner is warned this long before the cap deletes an old account that is still in use.
CAP_WARNING = timedelta(hours=24)
# A failed rotation that nobody retries by hand is tried again this long after it failed.
RETRY_AFTER = timedelta(days=1)


def rotation_settings(policy: Policy, request: StoredRequest) -> RotationSettings | None:
    """The rules for this account; None when it is not rotated (no destination, or rotation is off)."""
    if not policy.rotation.enabled or request.destination is None or request.secret_name is None:
        return None
    return policy.rotation.for_destination(request.destination)


def due_at(request: StoredRequest, settings: RotationSettings) -> datetime | None:
    """When rotation of this account begins: days_before_expiry before it expires, but not before half its
    lifetime has passed; for an account that never expires, every_days after it was made (None: never).
    Without the half-life floor, an account made for less than days_before_expiry would be due the moment
    it is made, and so would each successor (it gets the same lifetime): a new account on every run."""
    if request.expires_at is not None:
        half_life = request.created_at + (request.expires_at - request.created_at) / 2
        return max(request.expires_at - timedelta(days=settings.days_before_expiry), half_life)
    if settings.every_days is not None:
        return request.created_at + timedelta(days=settings.every_days)
    return None


def on_schedule(policy: Policy, request: StoredRequest, *, stopped: bool) -> bool:
    """Does the posture count it as rotated on schedule: the bot rotates it (a destination, rotation on, a
    date to rotate at) and its rotation has not stopped (failed)?"""
    settings = rotation_settings(policy, request)
    return settings is not None and due_at(request, settings) is not None and not stopped


def is_due(policy: Policy, request: StoredRequest, now: datetime) -> bool:
    settings = rotation_settings(policy, request)
    if settings is None or request.state is not RequestState.DELIVERED:
        return False
    start = due_at(request, settings)
    return start is not None and start <= now


def successor_spec(policy: Policy, old: StoredRequest, now: datetime) -> AccountSpec:
    """Same stem, role, projects and destination; the old account's lifetime counted from today, capped by
    today's longest expiry. The caller judges it against today's policy, like any request."""
    today = now.date()
    expires_on: date | None = None
    if old.expires_at is not None:
        lifetime = max(old.expires_at - old.created_at, timedelta(days=1))
        expires_on = min((now + lifetime).date(), today + timedelta(days=policy.expiry.max_days))
        expires_on = max(expires_on, today + timedelta(days=1))
    return AccountSpec(
        username=old.username,
        role=old.role,
        project_ids=old.project_ids,
        expires_on=expires_on,
        destination=old.destination,
        secret_name=old.secret_name,
    )


def stored_spec(request: StoredRequest) -> AccountSpec:
    """What a stored successor request asks for, to judge it again (its expiry as a UTC date)."""
    return AccountSpec(
        username=request.username,
        role=request.role,
        project_ids=request.project_ids,
        expires_on=request.expires_at.date() if request.expires_at else None,
        destination=request.destination,
        secret_name=request.secret_name,
    )


class Fate(StrEnum):
    WAIT = "wait"
    WARN = "warn"  # when_unused: still in use, and the cap deletes it within CAP_WARNING: tell the owner
    DELETE = "delete"
    KEEP = "keep"  # delete_old: never


@dataclass(frozen=True)
class OldAccountPlan:
    fate: Fate
    delete_at: datetime | None  # the earliest the old account goes (None: never)


def old_account_plan(
    settings: RotationSettings,
    *,
    verified_at: datetime,
    kept_until: datetime | None,
    last_used: datetime | None,
    warned: bool,
    now: datetime,
) -> OldAccountPlan:
    """What becomes of the old account now that its successor is verified in the store. `kept_until` is a
    person's "keep the old one a day longer"; `last_used` is Mixpanel's, for the old account."""
    if settings.delete_old is DeleteOld.NEVER:
        return OldAccountPlan(Fate.KEEP, None)
    overlap = timedelta(hours=settings.overlap_hours)
    earliest = verified_at + overlap
    if kept_until is not None:
        earliest = max(earliest, kept_until)
    if settings.delete_old is DeleteOld.AFTER_OVERLAP:
        return OldAccountPlan(Fate.DELETE if now >= earliest else Fate.WAIT, earliest)
    cap = max(verified_at + timedelta(hours=settings.unused_cap_hours), earliest)
    quiet = last_used is None or last_used <= now - overlap
    if now >= cap or (now >= earliest and quiet):
        return OldAccountPlan(Fate.DELETE, now)
    if not quiet and not warned and now >= cap - CAP_WARNING:
        return OldAccountPlan(Fate.WARN, cap)
    return OldAccountPlan(Fate.WAIT, earliest if quiet else cap)


class ExpiryReminder(StrEnum):
    """What an expiry reminder should say of an account, given its rotation (bot/remind/flow.py)."""

    REPLACE = "replace"  # nobody else will act: replace it, or delete it
    NONE = "none"  # the bot rotates it (or its rotation deletes it) before it expires: nothing to do
    KEPT = "kept"  # rotated; delete_old: never kept the old account, which expires on its own


# A rotation that should have begun this long ago and has not (no rotation job runs?): remind as usual.
NOT_STARTED_GRACE = timedelta(days=1)


def expiry_reminder(
    policy: Policy,
    request: StoredRequest,
    state: RotationState | None,
    now: datetime,
    *,
    written_over: bool = False,
) -> ExpiryReminder:
    """`state`: its rotation's (bot/rotate/states.py), None if none opened. `written_over`: a delivered
    newer account holds its secret (a Replace…'s, or its rotation's successor). A stopped (failed) rotation
    leaves the account to its owner again, as does one that is overdue and never started, one whose secret
    a Replace… gave to a newer account (it is not rotated), and an old account kept because its successor
    was deleted (nothing replaces it)."""
    if written_over and state in (None, RotationState.DUE, RotationState.FAILED):
        return ExpiryReminder.REPLACE
    if state is RotationState.OLD_KEPT:
        return ExpiryReminder.KEPT if written_over else ExpiryReminder.REPLACE
    if state is RotationState.OVERLAPPING:
        settings = rotation_settings(policy, request) or policy.rotation
        return ExpiryReminder.KEPT if settings.delete_old is DeleteOld.NEVER else ExpiryReminder.NONE
    if state is RotationState.FAILED:
        return ExpiryReminder.REPLACE
    if state is not None:
        return ExpiryReminder.NONE  # under way, or its old account is deleted
    settings = rotation_settings(policy, request)
    start = due_at(request, settings) if settings else None
    if start is None or start <= now - NOT_STARTED_GRACE:
        return ExpiryReminder.REPLACE
    return ExpiryReminder.NONE
