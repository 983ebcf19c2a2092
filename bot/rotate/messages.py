"""What the owner, the admins and the audit channel are told at each step of a rotation. Never a secret:
nothing here is ever given a token."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.create.messages import STORE_FAILURE_CAUSES, escape
from bot.destinations.base import Failure

ACTION_KEEP_LONGER = "mp_rotation_keep_longer"
ACTION_ROTATE_NOW = "mp_rotation_rotate_now"
KEEP_LONGER_LABEL = "Keep the old one a day longer"
ROTATE_NOW_LABEL = "Rotate now"


class Stop(StrEnum):
    """Why a rotation stopped; each has one sentence below."""

    POLICY = "policy"  # today's policy would refuse the successor
    MIXPANEL = "mixpanel"  # Mixpanel refused the create
    STORE = "store"  # the store refused the new version (or it could not be verified)
    DESTINATION_GONE = "destination_gone"  # the destination is no longer in the policy
    DENIED = "denied"  # the approvers said no, or nobody decided in time


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "never"


def stop_reason(stop: Stop, detail: str) -> str:
    """The cause, for people: `detail` is a policy's sentence, Mixpanel's reason or the store's failure."""
    if stop is Stop.STORE:
        cause = STORE_FAILURE_CAUSES.get(Failure(detail), detail) if detail in set(Failure) else detail
        return f"the secret store refused the new version ({cause})"
    if stop is Stop.MIXPANEL:
        return f"Mixpanel refused to create the successor ({escape(detail)})"
    if stop is Stop.POLICY:
        return f"today's policy would not allow the successor ({escape(detail)})"
    if stop is Stop.DESTINATION_GONE:
        return f"its secret store {escape(detail)} is no longer in the policy"
    return f"the approvers did not approve the successor ({escape(detail)})"


def _section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def written_message(
    request_id: str, *, old: str, new: str, where: str, delete_note: str, keep_button: bool
) -> dict[str, Any]:
    text = (
        f":arrows_counterclockwise: `{old}` is being rotated. Its successor `{new}` is now the current "
        f"version of {escape(where)}; the old version still works. {delete_note}"
    )
    blocks = [_section(text)]
    if keep_button:
        blocks.append(
            {
                "type": "actions",
                "block_id": "rotation",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ACTION_KEEP_LONGER,
                        "text": {"type": "plain_text", "text": KEEP_LONGER_LABEL},
                        "value": request_id,
                    }
                ],
            }
        )
    return {"text": text, "blocks": blocks}


def delete_note(delete_at: datetime | None, *, when_unused: bool, cap: datetime | None) -> str:
    if delete_at is None:
        return "The old account is kept and expires on its own."
    if when_unused:
        return (
            "The old account is deleted once it has not been used for a while, "
            f"and on {when(cap)} at the latest."
        )
    return f"The old account is deleted on {when(delete_at)}."


def kept_longer_text(old: str, until: datetime) -> str:
    return f":hourglass: `{old}` is kept until {when(until)}; it is deleted then."


def old_deleted_text(old: str, new: str, where: str) -> str:
    return (
        f":white_check_mark: `{old}` was deleted: its rotation is complete. "
        f"`{new}` in {escape(where)} is the account in use."
    )


def successor_gone_text(old: str, new: str) -> str:
    return (
        f":warning: `{new}`, the successor of `{old}`, was deleted during the overlap, so `{old}` is kept "
        "and its rotation ends here. The secret's current version holds the deleted account; its previous "
        f"version still holds `{old}`, which keeps working until its own expiry."
    )


def cap_warning_text(old: str, new: str, cap: datetime) -> str:
    return (
        f":warning: `{old}` is still being used, though its successor `{new}` is in the secret store. "
        f"It is deleted anyway on {when(cap)}: move whatever still uses it to the new secret, or click "
        f"{KEEP_LONGER_LABEL}."
    )


def stuck_text(old: str, reason: str, *, expires_at: datetime | None, contact: str) -> str:
    return (
        f":warning: `{old}` could not be rotated: {reason}. Nothing was changed: the old account is kept "
        f"and works until {when(expires_at)}. Please fix this in time, or ask {contact}."
    )


def lost_text(old: str, destination: str) -> str:
    return (
        f":information_source: The successor made for `{old}` was deleted again: the bot stopped before its "
        f"token reached {escape(destination)}. The next run makes a new one; nothing is needed from you."
    )


def waiting_text(old: str) -> str:
    return (
        f":hourglass: `{old}` is due for rotation, and today's policy needs an approval for its successor. "
        "The approvers have been asked; once they approve, the rotation goes on by itself."
    )


def ownerless_text(old: str, owner_id: str, phrase: str) -> str:
    return (
        f":bust_in_silhouette: `{old}` belongs to <@{owner_id}>, who {phrase}. It is rotated all the same, "
        "but nobody owns it now: please give it an owner or delete it."
    )


def audit_announcement(step: str, *, owner_id: str, old: str, detail: str | None = None) -> dict[str, Any]:
    """The audit channel's copy of one step."""
    headline = f":arrows_counterclockwise: Rotation of `{old}` (owner <@{owner_id}>): {step}"
    text = headline + (f"\n*Detail:* {escape(detail)}" if detail else "")
    return {"text": headline, "blocks": [_section(text)]}


def state_phrase(state: str, next_date: datetime | None) -> str:
    """For the account list and the App Home: where the rotation is, and when the next one is."""
    phrases = {
        "due": "rotation due",
        "waiting_for_approval": "rotation waiting for approval",
        "successor_created": "rotating",
        "written": "rotating",
        "verified": "rotating",
        "overlapping": "rotated; the old account is deleted soon",
        "old_deleted": "rotated",
        "old_kept": "rotated; the old account is kept",
        "failed": "rotation stuck",
    }
    phrase = phrases.get(state, state)
    return f"{phrase}; next rotation {when(next_date)}" if next_date else phrase
