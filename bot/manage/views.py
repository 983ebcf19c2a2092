"""Block Kit for the list of accounts (an ephemeral message, or the App Home), and what its buttons carry.

A button's value is only the id of what it acts on: `r:<request id>` for an account the bot made, or
`a:<Mixpanel account id>` for one made outside it. Everything else is looked up again at click time.
Nothing here is ever given a token: Slack echoes Home views and messages back in payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.create.messages import COMMAND, escape
from bot.manage.accounts import AccountEntry, Presence
from bot.models import Project, today_in, zone
from bot.rotate.views import rotate_now_button
from bot.slack.block_limits import CONFIRM_TEXT, SECTION_TEXT, clip, name_list

ACTION_DELETE = "mp_account_delete"
ACTION_RESCOPE = "mp_account_projects"
ACTION_REPLACE = "mp_account_replace"
# Replace… into a secret store, for an account whose token was shown in Slack (reminders only).
ACTION_MOVE_TO_STORE = "mp_account_move_to_store"
ACTION_HOME_CREATE = "mp_home_create"
ACTION_ADOPT = "mp_account_adopt"  # an admin adopts an account made outside the bot (bot/govern/actions.py)
HOME_CALLBACK_ID = "mp_home"

SCOPE_MINE = "mine"
SCOPE_ALL = "all"
SCOPE_HOME = "home"
SCOPE_REMINDER = "reminder"
SCOPE_OFFER = "offer"  # the "Delete the old account" offer after a replacement
SCOPES = (SCOPE_MINE, SCOPE_ALL, SCOPE_HOME, SCOPE_REMINDER, SCOPE_OFFER)

# A message holds at most 50 blocks and a Home view 100; a list past this many is summarized.
MAX_LISTED = 20


@dataclass(frozen=True)
class Target:
    """What a button names: exactly one of the two ids."""

    request_id: str | None = None
    account_id: int | None = None


def button_value(entry: AccountEntry) -> str:
    return f"r:{entry.request.id}" if entry.request else f"a:{entry.account_id}"


def parse_target(value: Any) -> Target | None:
    """The id a button carries, or None for anything malformed (a forged or garbled click)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    kind, _, rest = value.partition(":")
    if kind == "r" and rest.isalnum() and rest.isascii():
        return Target(request_id=rest)
    if kind == "a" and rest.isdigit() and rest.isascii() and len(rest) <= 18:
        return Target(account_id=int(rest))
    return None


def scope_of(block_id: Any) -> str:
    scope = str(block_id or "").partition(":")[0]
    return scope if scope in SCOPES else SCOPE_MINE


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}, **extra}


def expiry_phrase(expires_at: datetime | None, *, now: datetime, timezone: str) -> str:
    if expires_at is None:
        return "never expires"
    day = expires_at.astimezone(zone(timezone)).date()
    if expires_at <= now:
        return f"expired {day.isoformat()}"
    days = (day - today_in(timezone, now)).days
    when = "today" if days == 0 else ("tomorrow" if days == 1 else f"in {days} days")
    return f"expires {day.isoformat()} ({when})"


def _date(moment: datetime | None, timezone: str) -> str:
    return moment.astimezone(zone(timezone)).date().isoformat() if moment else "an unknown date"


def _projects(entry: AccountEntry, projects: dict[int, Project]) -> str:
    if entry.project_ids is None:
        return "projects not tracked by the bot"
    names = [escape(projects[p].name) if p in projects else f"project {p}" for p in entry.project_ids]
    return name_list(names, empty="no projects")


def day_in(moment: datetime | None, timezone: str) -> str:
    """A day as every account message shows it (governance's messages too)."""
    return _date(moment, timezone)


def projects_phrase(entry: AccountEntry, projects: dict[int, Project]) -> str:
    """An account's projects by name, as every account message shows them."""
    return _projects(entry, projects)


def account_text(entry: AccountEntry, *, now: datetime, timezone: str, projects: dict[int, Project]) -> str:
    name = f"`{escape(entry.username)}`"
    if entry.presence is Presence.GONE:
        return f"~{name}~ *gone*: deleted outside the bot; its record is closed."
    if entry.role:
        role = str(entry.role)
    else:
        role = "roles vary by project" if entry.memberships else "role not tracked by the bot"
    used = f"last used {_date(entry.last_used, timezone)}" if entry.last_used else "never used"
    if entry.made_by_bot:
        origin = f"created by <@{entry.creator_id}> on {_date(entry.created_at, timezone)}"
        if entry.owner_id != entry.creator_id:
            origin += f", owned by <@{entry.owner_id}>"
    else:
        maker = f"Mixpanel user {entry.mixpanel_creator}" if entry.mixpanel_creator else "someone"
        origin = f"_not made by the bot_: made in Mixpanel by {maker} on {_date(entry.created_at, timezone)}"
    lines = [
        f"*{name}*" + (" (the bot's own account)" if entry.is_bot_itself else ""),
        f"{role} · {_projects(entry, projects)}",
        f"{expiry_phrase(entry.expires_at, now=now, timezone=timezone)} · {used}",
        origin,
    ]
    if entry.request is not None and entry.request.destination:
        # Where the credentials went (never what): the destination and the secret's name there.
        lines.append(
            f"stored in {escape(entry.request.destination)} as `{escape(entry.request.secret_name or '')}`"
        )
    if entry.request is not None and entry.request.replaces_request_id:
        lines.append("replaces an earlier account")
    if entry.replaced_by:
        lines.append(f"replaced by `{escape(entry.replaced_by)}`")
    if entry.idle:
        lines.append(":zzz: *idle*: unused for longer than the policy allows")
    if entry.rotation:
        lines.append(escape(entry.rotation))
    if entry.presence is Presence.SETTLING:
        lines.append("_the bot is still setting this account up or cleaning it away_")
    return "\n".join(lines)


DELETE_WARNING = (
    " will be deleted from Mixpanel, and everything using its token stops working. This cannot be undone."
)


def delete_button(entry: AccountEntry) -> dict[str, Any]:
    # The dialog's text may hold CONFIRM_TEXT characters: the name gets what the sentence leaves.
    name = clip(escape(entry.username), CONFIRM_TEXT - len(DELETE_WARNING) - 2)
    return {
        "type": "button",
        "action_id": ACTION_DELETE,
        "text": plain("Delete"),
        "style": "danger",
        "value": button_value(entry),
        "confirm": {
            "title": plain("Delete this account?"),
            "text": {
                "type": "mrkdwn",
                "text": f"`{name}`{DELETE_WARNING}",
            },
            "confirm": plain("Delete"),
            "deny": plain("Keep it"),
            "style": "danger",
        },
    }


def replace_button(entry: AccountEntry) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": ACTION_REPLACE,
        "text": plain("Replace…"),
        "value": button_value(entry),
    }


def move_to_store_button(entry: AccountEntry) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": ACTION_MOVE_TO_STORE,
        "text": plain("Move into a secret store…"),
        "value": button_value(entry),
    }


def account_blocks(
    entries: list[AccountEntry],
    *,
    scope: str,
    now: datetime,
    timezone: str,
    projects: dict[int, Project],
) -> list[dict[str, Any]]:
    """One section per account (the first MAX_LISTED), then a summary of the rest."""
    blocks: list[dict[str, Any]] = []
    for entry in entries[:MAX_LISTED]:
        block = section(
            account_text(entry, now=now, timezone=timezone, projects=projects),
            block_id=f"{scope}:{entry.account_id}",
        )
        if entry.manageable:
            block["accessory"] = delete_button(entry)
        blocks.append(block)
        if entry.manageable and not entry.made_by_bot and scope == SCOPE_ALL:
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"{scope}:{entry.account_id}:adopt",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": ACTION_ADOPT,
                            "text": plain("Adopt…"),
                            "value": button_value(entry),
                        }
                    ],
                }
            )
        if entry.manageable and entry.made_by_bot:
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"{scope}:{entry.account_id}:more",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": ACTION_RESCOPE,
                            "text": plain("Projects…"),
                            "value": button_value(entry),
                        },
                        replace_button(entry),
                        *([rotate_now_button(entry)] if entry.rotation else []),
                    ],
                }
            )
    rest = entries[MAX_LISTED:]
    if rest:
        expired = sum(1 for e in rest if e.expires_at is not None and e.expires_at <= now)
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"…and {len(rest)} more, which expire later"
                        + (f" ({expired} already expired)" if expired else "")
                        + ". Delete some above, or ask Mixpanel's UI for the full list.",
                    }
                ],
            }
        )
    return blocks


def list_message(
    entries: list[AccountEntry],
    *,
    scope: str,
    now: datetime,
    timezone: str,
    projects: dict[int, Project],
    notice: str | None = None,
) -> dict[str, Any]:
    whose = "in the organization" if scope == SCOPE_ALL else "you own through the bot"
    live = sum(1 for entry in entries if entry.presence is not Presence.GONE)
    headline = f"Mixpanel service accounts {whose}: {live}"
    blocks: list[dict[str, Any]] = []
    if notice:
        blocks.append(section(notice))
    blocks.append(section(f"*{headline}*"))
    if entries:
        blocks.extend(account_blocks(entries, scope=scope, now=now, timezone=timezone, projects=projects))
    else:
        blocks.append(section(f"None yet. `{COMMAND}` creates one."))
    return {"text": notice or headline, "blocks": blocks}


def home_view(
    entries: list[AccountEntry] | None,
    *,
    now: datetime,
    timezone: str,
    projects: dict[int, Project],
    notice: str | None = None,
    may_create: bool = True,
    header: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The App Home: a Create button and the person's accounts. `entries` None: they could not be read.
    `header`: the admins' governance counts (bot/govern), shown first."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Mixpanel service accounts")},
        *(header or []),
    ]
    if may_create:
        blocks.append(
            {
                "type": "actions",
                "block_id": "home_actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ACTION_HOME_CREATE,
                        "text": plain("Create service account"),
                        "style": "primary",
                        "value": "create",
                    }
                ],
            }
        )
    if notice:
        blocks.append(section(notice))
    if entries is not None and may_create:
        blocks.append({"type": "divider"})
        if entries:
            blocks.extend(
                account_blocks(entries, scope=SCOPE_HOME, now=now, timezone=timezone, projects=projects)
            )
        else:
            blocks.append(section("You have no service accounts made through the bot yet."))
    return {"type": "home", "callback_id": HOME_CALLBACK_ID, "blocks": blocks}


def reminder_message(
    entry: AccountEntry,
    *,
    days_before: int,
    now: datetime,
    projects: dict[int, Project],
    owner_status: str | None = None,
    move_to_store: bool = False,
    rotated_to: str | None = None,
) -> dict[str, Any]:
    """The expiry reminder: to the creator, or to the audit channel when `owner_status` says (e.g. "has left
    the workspace") why the creator cannot be reached. Never a secret. `move_to_store`: the token was shown
    in Slack and the policy has secret stores: offer Move into a secret store… (there it is rotated).
    `rotated_to`: the successor's username, for an old account a rotation kept (delete_old: never): it is
    replaced already, so the reminder offers only Delete now."""
    name = f"`{escape(entry.username)}`"
    expiry = expiry_phrase(entry.expires_at, now=now, timezone="UTC")
    if owner_status is None:
        headline = f":alarm_clock: Your Mixpanel service account {name} {expiry}."
        advice = "Replace it with a new account before then if it is still needed, or delete it now."
    else:
        headline = (
            f":warning: Mixpanel service account {name} {expiry}, and <@{entry.owner_id}>, who owns it, "
            f"{owner_status}."
        )
        advice = "Someone should take it over (make a replacement) or delete it now."
    if rotated_to is not None:
        advice = (
            f"It was rotated: `{escape(rotated_to)}` replaces it in its secret store. The old account was "
            "kept and expires on its own; nothing needs replacing. Delete it now once nothing uses it."
        )
    used = f"last used {_date(entry.last_used, 'UTC')}" if entry.last_used else "never used"
    text = f"{headline}\n{entry.role or ''!s} · {_projects(entry, projects)} · {used}\n{advice}"
    delete = delete_button(entry)
    delete["text"] = plain("Delete now")
    return {
        "text": headline,
        "blocks": [
            section(text, block_id=f"{SCOPE_REMINDER}:{entry.account_id}:{days_before}"),
            {
                "type": "actions",
                "block_id": f"{SCOPE_REMINDER}:{entry.account_id}",
                "elements": [
                    *([replace_button(entry)] if rotated_to is None else []),
                    *([move_to_store_button(entry)] if move_to_store else []),
                    delete,
                ],
            },
        ],
    }


def offer_delete_old_message(
    *, old_username: str, new_username: str, old_request_id: str, old_account_id: int
) -> dict[str, Any]:
    """After a replacement is delivered: the old account keeps running unless its owner deletes it."""
    text = (
        f"`{escape(new_username)}` replaces `{escape(old_username)}`. The old account keeps working until "
        "its own expiry; delete it once nothing uses it any more."
    )
    button = {
        "type": "button",
        "action_id": ACTION_DELETE,
        "text": plain("Delete the old account"),
        "style": "danger",
        "value": f"r:{old_request_id}",
        "confirm": {
            "title": plain("Delete the old account?"),
            "text": {
                "type": "mrkdwn",
                "text": clip(
                    f"`{escape(old_username)}` will be deleted from Mixpanel. This cannot be undone.",
                    CONFIRM_TEXT,
                ),
            },
            "confirm": plain("Delete"),
            "deny": plain("Keep it"),
            "style": "danger",
        },
    }
    return {
        "text": f"{new_username} replaces {old_username}",
        "blocks": [
            section(text),
            {"type": "actions", "block_id": f"{SCOPE_OFFER}:{old_account_id}", "elements": [button]},
        ],
    }
