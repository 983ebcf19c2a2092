"""Block Kit and sentences for governance: the idle DM, the deletion warnings, the ownership offer, the
unmanaged notice, the review DM, the weekly summary and the two modals. Buttons carry only ids; nothing
here is ever given a token."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.approve.messages import said
from bot.create.messages import escape
from bot.govern.posture import posture_lines
from bot.manage.accounts import AccountEntry
from bot.manage.views import (
    SCOPE_REMINDER,
    day_in,
    delete_button,
    plain,
    projects_phrase,
    replace_button,
    section,
)
from bot.models import Project

ACTION_KEEP = "mp_gov_keep"
ACTION_TAKE_OVER = "mp_gov_take_over"
ACTION_REVIEW_KEEP = "mp_gov_review_keep"
ACTION_REVIEW_DELETE = "mp_gov_review_delete"
KEEP_CALLBACK_ID = "mp_gov_keep_reason"
ADOPT_CALLBACK_ID = "mp_gov_adopt_owner"
BLOCK_KEEP_REASON = "keep_reason"
BLOCK_ADOPT_OWNER = "adopt_owner"
INPUT_ACTION = "value"
KEEP_REASON_MAX = 300
# One review DM holds this many accounts (2 blocks each, within Block Kit's 50); a round asks about these.
REVIEW_MAX = 20

KEEP_REASON_MISSING = "Say in a few words why the account is still needed."
KEPT = "Kept: `{name}` counts as used from now on. The reason is in the audit trail."
TAKEN_OVER = "You now own `{name}`: it is in your `list` and App Home, with its reminders."
TAKEOVER_REFUSED = {
    "not_open": "`{name}` has an owner again (someone was first, or it was deleted); nothing changed.",
    "not_a_candidate": "Only the successor group and the admins may take over `{name}`; nothing changed.",
    "policy": "The policy would not let you request `{name}` today (its role, projects or expiry), so you "
    "cannot take it over; ask {contact}.",
}
ADOPTED = "`{name}` is now managed by the bot, owned by <@{owner}>."
ADOPT_REFUSED = "Only the policy's admins may adopt accounts made outside the bot; nothing changed."
ADOPT_GONE = "`{name}` is no longer there to adopt (deleted, or adopted already); nothing changed."
ADOPT_OWNER_INVALID = "Choose a full member of this workspace as the owner."
REVIEW_ANSWERED = "Noted: `{name}` is still needed. Thank you."
REVIEW_STALE = "This review line was answered already or is not yours; nothing changed."
REVIEW_GONE = (
    "`{name}` was deleted since this review was sent, so there is nothing to confirm; nothing changed."
)


def section_message(text: str) -> dict[str, Any]:
    return {"text": text, "blocks": [section(text)]}


def _account_line(entry: AccountEntry, projects: dict[int, Project]) -> str:
    used = f"last used {day_in(entry.last_used, 'UTC')}" if entry.last_used else "never used"
    return f"`{escape(entry.username)}` · {projects_phrase(entry, projects)} · {used}"


def idle_message(entry: AccountEntry, *, idle_days: int, projects: dict[int, Project]) -> dict[str, Any]:
    """To the owner, once per idle period: Delete now, or Keep it (with a reason)."""
    name = escape(entry.username)
    headline = f":zzz: Your Mixpanel service account `{name}` has been idle for over {idle_days} days."
    advice = "Delete it if nothing needs it, or keep it and say why."
    text = f"{headline}\n{_account_line(entry, projects)}\n{advice}"
    delete = delete_button(entry)
    delete["text"] = plain("Delete now")
    keep = {"type": "button", "action_id": ACTION_KEEP, "text": plain("Keep it…"), "value": delete["value"]}
    return {
        "text": headline,
        "blocks": [
            section(text),
            {
                "type": "actions",
                "block_id": f"{SCOPE_REMINDER}:{entry.account_id}:idle",
                "elements": [delete, keep],
            },
        ],
    }


def kept_notice(user_id: str, name: str, reason: str) -> dict[str, Any]:
    """To the audit channel: the keep-reason is the person's own words, so it is shown as plain_text (as
    approvals show reasons), never as mrkdwn that could pass for the bot's, nor in the notification text."""
    text = f":zzz: <@{user_id}> kept idle `{escape(name)}`."
    return {"text": text, "blocks": [section(text), *said((("Reason", reason),))]}


def owner_back_notice(entry: AccountEntry, owner_id: str) -> dict[str, Any]:
    """To the audit channel, where the admins were offered the account: the offer is void."""
    text = (
        f":leftwards_arrow_with_hook: <@{owner_id}> may own accounts again, so `{escape(entry.username)}` "
        "is theirs again; its ownership offer no longer stands."
    )
    return {"text": text, "blocks": [section(text)]}


def _in_a_store(entry: AccountEntry) -> str:
    """Where a machine may read the account's token: worth a line before and after the bot deletes it."""
    request = entry.request
    if request is None or request.destination is None:
        return ""
    where = f"{request.destination}, secret {request.secret_name or '?'}"
    return f" Its token is in the secret store {escape(where)}: whatever reads it there stops working."


def deletion_warning(entry: AccountEntry, *, why: str, when: datetime) -> dict[str, Any]:
    text = (
        f":warning: `{escape(entry.username)}` will be deleted by the bot on {day_in(when, 'UTC')} ({why}), "
        f"unless its owner keeps it before then.{_in_a_store(entry)}"
    )
    return {"text": text, "blocks": [section(text)]}


def deleted_notice(entry: AccountEntry, *, why: str) -> dict[str, Any]:
    text = f":wastebasket: The bot deleted `{escape(entry.username)}` ({why}).{_in_a_store(entry)}"
    return {"text": text, "blocks": [section(text)]}


def ownership_offer(
    entry: AccountEntry, *, former_owner: str, projects: dict[int, Project]
) -> dict[str, Any]:
    """To the successor group's members, or to the admins in the audit channel: first come, first served."""
    headline = (
        f":bust_in_silhouette: <@{former_owner}> has left; `{escape(entry.username)}` needs a new owner."
    )
    text = f"{headline}\n{_account_line(entry, projects)}"
    take = {
        "type": "button",
        "action_id": ACTION_TAKE_OVER,
        "text": plain("Take over"),
        "style": "primary",
        "value": delete_button(entry)["value"],
    }
    return {
        "text": headline,
        "blocks": [
            section(text),
            {
                "type": "actions",
                "block_id": f"{SCOPE_REMINDER}:{entry.account_id}:owner",
                "elements": [take, delete_button(entry), replace_button(entry)],
            },
        ],
    }


UNMANAGED_LISTED = 20


def unmanaged_notice(entries: list[AccountEntry]) -> dict[str, Any]:
    """One message per run for every account first seen in it (a first run may find many at once)."""
    lines = [f":mag: New service account(s) made outside the bot: {len(entries)}"]
    for entry in entries[:UNMANAGED_LISTED]:
        maker = f"Mixpanel user {entry.mixpanel_creator}" if entry.mixpanel_creator else "someone"
        lines.append(f"`{escape(entry.username)}`, made by {maker} on {day_in(entry.created_at, 'UTC')}")
    if len(entries) > UNMANAGED_LISTED:
        lines.append(
            f"…and {len(entries) - UNMANAGED_LISTED} more: `python -m bot inventory` lists them all."
        )
    lines.append("An admin can adopt them from `list all`.")
    return {"text": lines[0], "blocks": [section("\n".join(lines))]}


def review_message(
    round_id: str,
    entries: list[AccountEntry],
    *,
    projects: dict[int, Project],
    grace_days: int,
    deletes: bool,
    total: int | None = None,
    part: tuple[int, int] = (1, 1),
) -> dict[str, Any]:
    """One DM per owner per period: Still needed / Delete, per account; an owner of more than REVIEW_MAX
    accounts gets the round in parts of REVIEW_MAX (`part`: this one, of how many). `deletes`: what the
    policy's review_action does to an unanswered account, said as it is."""
    count = total if total is not None else len(entries)
    headline = f":clipboard: Periodic review: are your {count} Mixpanel service account(s) still needed?"
    if part[1] > 1:
        headline += f" (part {part[0]} of {part[1]})"
    fate = (
        "unanswered accounts are deleted by the bot, after a warning the day before"
        if deletes
        else "unanswered accounts are reported to the admins"
    )
    blocks: list[dict[str, Any]] = [section(f"{headline}\nAnswer within {grace_days} days; {fate}.")]
    for entry in entries[:REVIEW_MAX]:
        value = f"{round_id}:{entry.account_id}"
        delete = delete_button(entry)
        delete.update(action_id=ACTION_REVIEW_DELETE, value=value)
        blocks.append(section(_account_line(entry, projects), block_id=f"review:{entry.account_id}"))
        blocks.append(
            {
                "type": "actions",
                "block_id": f"review:{entry.account_id}:answer",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ACTION_REVIEW_KEEP,
                        "text": plain("Still needed"),
                        "value": value,
                    },
                    delete,
                ],
            }
        )
    return {"text": headline, "blocks": blocks}


def review_overdue_notice(username: str, owner_id: str, started_at: datetime) -> dict[str, Any]:
    text = (
        f":hourglass: <@{owner_id}> has not confirmed `{escape(username)}` in the review that began "
        f"{day_in(started_at, 'UTC')}."
    )
    return {"text": text, "blocks": [section(text)]}


def summary_message(
    counts: dict[str, int], previous: dict[str, int] | None, orphans: list[tuple[str, str, datetime]]
) -> dict[str, Any]:
    """The weekly audit-channel summary: the posture, then accounts without an owner past orphan_days."""
    lines = ["*Service accounts this week*", *posture_lines(counts, previous)]
    if orphans:
        lines.append("*Without an owner for too long:*")
        lines += [
            f"`{escape(name)}` (was <@{former}>'s, open since {day_in(at, 'UTC')})"
            for name, former, at in orphans[:20]
        ]
    return {"text": "Service accounts this week", "blocks": [section("\n".join(lines))]}


def posture_header(counts: dict[str, int] | None, previous: dict[str, int] | None) -> list[dict[str, Any]]:
    """The admins' App Home header: the latest counts, with the change since the last period."""
    if counts is None:
        return [section("_Governance counts appear after the first `python -m bot govern` run._")]
    return [section("*The organization's service accounts*\n" + "\n".join(posture_lines(counts, previous)))]


def _modal(callback_id: str, title: str, metadata: str, block: dict[str, Any], submit: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title),
        "submit": plain(submit),
        "close": plain("Cancel"),
        "private_metadata": metadata,  # an id only
        "blocks": [block],
    }


def keep_modal(target: str) -> dict[str, Any]:
    block = {
        "type": "input",
        "block_id": BLOCK_KEEP_REASON,
        "label": plain("Why is it still needed?"),
        "element": {
            "type": "plain_text_input",
            "action_id": INPUT_ACTION,
            "max_length": KEEP_REASON_MAX,
            "placeholder": plain("e.g. the quarterly finance export"),
        },
    }
    return _modal(KEEP_CALLBACK_ID, "Keep this account", target, block, "Keep it")


def adopt_modal(target: str, admin_id: str) -> dict[str, Any]:
    block = {
        "type": "input",
        "block_id": BLOCK_ADOPT_OWNER,
        "label": plain("Owner"),
        "element": {"type": "users_select", "action_id": INPUT_ACTION, "initial_user": admin_id},
    }
    return _modal(ADOPT_CALLBACK_ID, "Adopt this account", target, block, "Adopt")
