"""The states of one rotation and the moves between them: pure, so that every step can be checked alone.

    due ─▶ successor_created ─▶ written ─▶ verified ─▶ overlapping ─▶ old_deleted | old_kept
     │            │                │
     │            └─▶ due          └─▶ failed        (a lost token: the successor is deleted, tried again)
     ├─▶ waiting_for_approval ─▶ successor_created | failed
     └─▶ failed ─▶ due                               (Rotate now, or the next day's run)

The old account is deleted only from `overlapping`, and `overlapping` is reached only through `verified`:
no path deletes the old account before the new secret was read back from the store.
"""

from __future__ import annotations

from enum import StrEnum


class RotationState(StrEnum):
    DUE = "due"  # the account is due; no successor exists (or the last one was deleted again)
    WAITING_FOR_APPROVAL = "waiting_for_approval"  # today's policy wants a yes for the successor
    SUCCESSOR_CREATED = "successor_created"  # Mixpanel made the successor; its token is not in the store yet
    WRITTEN = "written"  # the successor's credentials are the secret's new version
    VERIFIED = "verified"  # read back from the store: it holds the successor
    OVERLAPPING = "overlapping"  # both accounts work; the old one waits for its deletion
    OLD_DELETED = "old_deleted"  # done: the old account is gone
    OLD_KEPT = "old_kept"  # done: delete_old is never; the old account expires on its own
    FAILED = "failed"  # stopped; the old account is kept, the owner and the admins were told why


TRANSITIONS: dict[RotationState, frozenset[RotationState]] = {
    RotationState.DUE: frozenset(
        {RotationState.WAITING_FOR_APPROVAL, RotationState.SUCCESSOR_CREATED, RotationState.FAILED}
    ),
    RotationState.WAITING_FOR_APPROVAL: frozenset({RotationState.SUCCESSOR_CREATED, RotationState.FAILED}),
    RotationState.SUCCESSOR_CREATED: frozenset(
        {RotationState.WRITTEN, RotationState.FAILED, RotationState.DUE}
    ),
    RotationState.WRITTEN: frozenset({RotationState.VERIFIED, RotationState.FAILED}),
    RotationState.VERIFIED: frozenset({RotationState.OVERLAPPING}),
    RotationState.OVERLAPPING: frozenset({RotationState.OLD_DELETED, RotationState.OLD_KEPT}),
    RotationState.OLD_DELETED: frozenset(),
    RotationState.OLD_KEPT: frozenset(),
    RotationState.FAILED: frozenset({RotationState.DUE}),
}

FINISHED = frozenset(state for state, targets in TRANSITIONS.items() if not targets)
# A successor exists in Mixpanel in these states (and the old account still does).
SUCCESSOR_LIVE = frozenset(
    {
        RotationState.SUCCESSOR_CREATED,
        RotationState.WRITTEN,
        RotationState.VERIFIED,
        RotationState.OVERLAPPING,
    }
)
# States a run moves on by itself; a rotation sitting in one of them long past its step is stuck.
IN_PROGRESS = frozenset(
    {
        RotationState.DUE,
        RotationState.SUCCESSOR_CREATED,
        RotationState.WRITTEN,
        RotationState.VERIFIED,
    }
)


class IllegalTransition(ValueError):
    pass


def may_move(source: RotationState, target: RotationState) -> bool:
    return target in TRANSITIONS[source]


def sources_of(target: RotationState) -> tuple[RotationState, ...]:
    """The states a compare-and-set into `target` may start from."""
    return tuple(state for state, targets in TRANSITIONS.items() if target in targets)


def check_move(source: RotationState, target: RotationState) -> None:
    if not may_move(source, target):
        raise IllegalTransition(f"a rotation cannot go from {source} to {target}")
