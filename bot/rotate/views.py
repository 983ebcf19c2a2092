"""What the account list and the App Home show of rotation: the state and the next rotation date of each
account in a secret store, and its Rotate now button."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.manage.accounts import AccountEntry
from bot.policy.file import Policy
from bot.rotate.messages import ACTION_ROTATE_NOW, ROTATE_NOW_LABEL, state_phrase, when
from bot.rotate.schedule import due_at, rotation_settings
from bot.rotate.store import Rotation, RotationStore


def rotation_line(policy: Policy, entry: AccountEntry, rotation: Rotation | None) -> str | None:
    """None for an account the bot does not rotate (no destination, or rotation is off)."""
    request = entry.request
    settings = rotation_settings(policy, request) if request is not None else None
    if request is None or settings is None:
        return None
    next_date = due_at(request, settings)
    if rotation is None:
        return f"rotates {when(next_date)}" if next_date else "not rotated (it never expires)"
    return state_phrase(str(rotation.state), next_date if rotation.finished else None)


def with_rotation(
    policy: Policy, rotations: RotationStore, entries: list[AccountEntry]
) -> list[AccountEntry]:
    ids = [entry.request.id for entry in entries if entry.request is not None and entry.request.destination]
    known = rotations.for_requests(ids)
    written_over = rotations.written_over(ids)
    annotated = []
    for entry in entries:
        rotation = known.get(entry.request.id) if entry.request else None
        if entry.request and entry.request.id in written_over and (rotation is None or not rotation.began):
            annotated.append(entry)  # a newer account holds its secret: that one is rotated, not this
            continue
        line = rotation_line(policy, entry, rotation)
        annotated.append(replace(entry, rotation=line) if line else entry)
    return annotated


def rotate_now_button(entry: AccountEntry) -> dict[str, Any] | None:
    if entry.rotation is None or entry.request is None:
        return None
    return {
        "type": "button",
        "action_id": ACTION_ROTATE_NOW,
        "text": {"type": "plain_text", "text": ROTATE_NOW_LABEL},
        "value": entry.request.id,
    }
