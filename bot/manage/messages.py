"""Every sentence of the lifecycle flows (list, delete, App Home), in one place beside
`bot/create/messages.py`."""

from __future__ import annotations

from datetime import date
from typing import Any

from bot.create.messages import COMMAND, escape
from bot.manage.permissions import Basis, ManageRefusal
from bot.mixpanel.client import ErrorKind, MixpanelError
from bot.slack.block_limits import SECTION_TEXT, clip, name_list

_REFUSALS = {
    ManageRefusal.UNVERIFIED: "The bot could not verify your Slack membership just now; please try again "
    "in a minute.",
    ManageRefusal.NOT_A_MEMBER: "Only full members of this workspace may manage Mixpanel service "
    "accounts (not guests, bots or apps).",
    ManageRefusal.EXTERNAL: "The bot's policy does not admit people from your workspace, so you may not "
    "manage Mixpanel service accounts through it.",
    ManageRefusal.NOT_AN_ADMIN: f"Only the bot's admins may list every account; `{COMMAND} list` "
    "shows yours.",
    ManageRefusal.NOT_YOURS: "You may manage only the service accounts you own through the bot.",
    ManageRefusal.NOT_LISTED: "You are no longer on the list of people who may create Mixpanel "
    "service accounts.",
    ManageRefusal.NOT_MADE_BY_BOT: "This account was not made through the bot, so the bot cannot do that.",
}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}}


def manage_refusal_text(reason: ManageRefusal, *, contact: str) -> str:
    why = _REFUSALS[reason]
    return f":no_entry: {why} If you need access, ask {contact}."


UNKNOWN_ACCOUNT = ":no_entry: The bot does not know that account; nothing was changed."
NO_STORE_FOR_YOU = (
    ":no_entry: No secret store in the policy is open to you, so the account cannot be moved into one; "
    "ask {contact}."
)
UNEXPECTED = ":x: Something unexpected went wrong; please try again, or ask {contact}."
BOT_ITSELF = ":no_entry: That is the bot's own Mixpanel account; it cannot be deleted from Slack."


def manage_failure_text(error: MixpanelError, *, doing: str, contact: str) -> str:
    """One plain sentence for a Mixpanel failure while listing or deleting; `doing` is e.g. "delete it"."""
    if error.kind in (ErrorKind.UNAUTHORIZED, ErrorKind.FORBIDDEN, ErrorKind.NOT_FOUND):
        return (
            f":x: Mixpanel did not let the bot {doing} (it answered {error.kind.replace('_', ' ')}); "
            f"please ask {contact} to check the bot's Mixpanel account."
        )
    if error.kind is ErrorKind.RATE_LIMITED:
        return (
            f":x: Mixpanel is limiting requests right now, so the bot could not {doing}; try again shortly."
        )
    return (
        f":x: The bot could not {doing}, because Mixpanel did not answer properly; "
        "please try again in a minute."
    )


def deleted_text(username: str) -> str:
    return f":wastebasket: `{escape(username)}` was deleted from Mixpanel."


def already_gone_text(username: str) -> str:
    return (
        f":ghost: `{escape(username)}` was already gone from Mixpanel (deleted outside the bot); "
        "its record is now closed."
    )


def deletion_in_progress_text(username: str) -> str:
    return f":hourglass_flowing_sand: `{escape(username)}` is already being deleted."


def settling_text(username: str) -> str:
    return (
        f":hourglass_flowing_sand: The bot is still setting up or cleaning away `{escape(username)}`; "
        "try again in a few minutes."
    )


def already_deleted_text(username: str) -> str:
    return f":wastebasket: `{escape(username)}` was already deleted."


def deletion_audit_message(
    *,
    actor_id: str,
    basis: Basis | str,
    username: str,
    account_id: int,
    creator_id: str | None,
    found_gone: bool,
) -> dict[str, Any]:
    """The audit channel's line for a deletion from Slack: who, which account, and why it was allowed."""
    made = f"created by <@{creator_id}>" if creator_id else "not made by the bot"
    what = "found already gone" if found_gone else "deleted"
    headline = f":wastebasket: <@{actor_id}> {what} `{escape(username)}` (id {account_id}, {made})"
    text = f"{headline}\n*Allowed as:* {basis}"
    return {"text": headline, "blocks": [_section(text)]}


def gone_audit_message(*, username: str, account_id: int, creator_id: str) -> dict[str, Any]:
    headline = (
        f":ghost: `{escape(username)}` (id {account_id}, created by <@{creator_id}>) was deleted outside the "
        "bot; its record is closed"
    )
    return {"text": headline, "blocks": [_section(headline)]}


def refused_audit_message(*, actor_id: str, action: str, target: str, reason: str) -> dict[str, Any]:
    headline = f":no_entry: <@{actor_id}> was refused: {action} {escape(target)} ({reason})"
    return {"text": headline, "blocks": [_section(headline)]}


def role_above_ceiling_text(role: str, ceiling: str, verb: str = "change projects of") -> str:
    return (
        f":no_entry: This account has the {role} role, above the {ceiling} role you may grant, so you may "
        f"not {verb} it."
    )


def expiry_beyond_policy_text(username: str, *, expires_on: date | None, max_days: int) -> str:
    """Projects… refused because the account outlives what the policy grants today (`expires_on` None: it
    never expires)."""
    if expires_on is None:
        why = "never expires, which the policy no longer allows"
    else:
        why = (
            f"expires on {expires_on.isoformat()}, later than the {max_days} days from today the policy "
            "now allows"
        )
    return (
        f":no_entry: `{escape(username)}` {why}, so its projects cannot be changed here. Use *Replace…* to "
        "request a new account with an allowed expiry and the projects you need."
    )


def approval_projects_note(names: list[str]) -> str:
    """In the Projects… modal: why some projects are not offered there."""
    return (
        f"{name_list([escape(n) for n in names])} need someone else's approval, so they are not offered "
        "here. To have one, use *Replace…* to request a new account with it: that request goes to the "
        "approvers."
    )


def rescope_needs_approval_text(username: str) -> str:
    return (
        f":no_entry: `{escape(username)}` is the kind of account that needs someone else's approval (its "
        "role or expiry), so its projects cannot be changed here. Use *Replace…* to request a new account "
        "with the projects you need: that request goes to the approvers."
    )


def approval_project_chosen_text(names: list[str]) -> str:
    return (
        f"{name_list(names)} need someone else's approval: use Replace… to request a new account with them."
    )


def store_only_projects_note(names: list[str]) -> str:
    """In the Projects… modal: why projects whose tokens must go to a secret store are not offered."""
    return (
        f"{name_list([escape(n) for n in names])} may only be granted to an account whose token went "
        "straight into a secret store, so they are not offered here. Use *Replace…* to make one."
    )


def store_only_project_chosen_text(names: list[str]) -> str:
    return (
        f"{name_list(names)} may only be granted to an account whose token went straight into a secret "
        "store: use Replace… to make one."
    )


def more_projects_note(shown: int, total: int) -> str:
    return (
        f"Only {shown} of the {total} projects you may grant fit in this list (the account's own come "
        "first). For one not listed, use *Replace…* to request a new account with it."
    )


PROJECTS_STILL_LOADING = "The project list is still loading from Mixpanel; press Save again in a moment."
PROJECTS_LOADING_TRY_AGAIN = (
    ":hourglass_flowing_sand: The project list is still loading from Mixpanel; close this and click "
    "*Projects…* again in a moment. If it keeps happening, Mixpanel may be unreachable: try again later."
)


def projects_raced_text(username: str, names: list[str]) -> str:
    listed = name_list([escape(name) for name in names], empty="no projects")
    return (
        f":warning: Someone else changed the projects of `{escape(username)}` at the same time. Your change "
        f"was applied on top of theirs: it is now in: {listed}."
    )


def projects_unchanged_text(username: str) -> str:
    return f"Nothing changed: `{escape(username)}` keeps its projects."


def projects_updating_text(username: str) -> str:
    return f":hourglass_flowing_sand: Changing the projects of `{escape(username)}` in Mixpanel…"


def projects_changed_text(username: str, names: list[str]) -> str:
    listed = name_list([escape(name) for name in names], empty="no projects")
    return f":white_check_mark: `{escape(username)}` is now in: {listed}."


def projects_audit_message(
    *, actor_id: str, basis: str, username: str, account_id: int, added: list[str], removed: list[str]
) -> dict[str, Any]:
    headline = (
        f":card_index_dividers: <@{actor_id}> changed the projects of `{escape(username)}` (id {account_id})"
    )
    lines = [headline]
    if added:
        lines.append("*Added:* " + name_list([escape(n) for n in added]))
    if removed:
        lines.append("*Removed:* " + name_list([escape(n) for n in removed]))
    lines.append(f"*Allowed as:* {basis}")
    text = "\n".join(lines)
    return {"text": headline, "blocks": [_section(text)]}
