"""Block Kit for the creation modal (bot/create/form.py parses what comes back from it).

Block and action ids are defined here once; handlers and tests import them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.destinations.base import SECRET_NAME_RULE
from bot.models import (
    ROLE_DESCRIPTIONS,
    USERNAME_MAX_LENGTH,
    Project,
    Role,
    SubmissionContext,
)
from bot.policy.access import Entitlement, FormField
from bot.policy.file import TO_ME_OPTION_VALUE

CREATE_CALLBACK_ID = "mp_create_account"
LOADING_CALLBACK_ID = "mp_create_loading"
STATUS_CALLBACK_ID = "mp_create_status"
MODAL_TITLE = "Mixpanel service account"  # Slack allows 24 characters

BLOCK_USERNAME = "username"
BLOCK_ROLE = "role"
BLOCK_PROJECTS = "projects"
BLOCK_EXPIRY = "expiry"
BLOCK_NEVER = "expiry_never"
BLOCK_NOTICE = "notice"
BLOCK_REASON = "reason"
BLOCK_BREAK_GLASS = "break_glass"
BLOCK_DESTINATION = "destination"
BLOCK_SECRET_NAME = "secret_name"  # noqa: S105 - a block id

ACTION_USERNAME = "username_input"
ACTION_ROLE = "role_select"
ACTION_PROJECTS = "projects_select"
ACTION_EXPIRY = "expiry_date"
ACTION_NEVER = "expiry_never_check"
NEVER_VALUE = "never"
ACTION_REASON = "reason_input"
ACTION_BREAK_GLASS = "break_glass_check"
BREAK_GLASS_VALUE = "break_glass"
REASON_MAX_LENGTH = 500
ACTION_DESTINATION = "destination_select"
ACTION_SECRET_NAME = "secret_name_input"  # noqa: S105 - an action id
TO_ME_VALUE = TO_ME_OPTION_VALUE  # the Deliver to option "To me, in Slack"; the policy forbids the name
SECRET_NAME_MAX_LENGTH = 63

BLOCK_FOR_FIELD: dict[FormField, str] = {
    FormField.USERNAME: BLOCK_USERNAME,
    FormField.ROLE: BLOCK_ROLE,
    FormField.PROJECTS: BLOCK_PROJECTS,
    FormField.EXPIRY: BLOCK_EXPIRY,
    FormField.DESTINATION: BLOCK_DESTINATION,
    FormField.SECRET_NAME: BLOCK_SECRET_NAME,
}

MAX_STATIC_OPTIONS = 100
OPTION_TEXT_LIMIT = 75
DEFAULT_EXPIRY_DAYS = 90
PRIVATE_METADATA_LIMIT = 3000


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def project_option(project: Project) -> dict[str, Any]:
    suffix = f" ({project.id})"
    return {
        "text": _plain(_truncate(project.name, OPTION_TEXT_LIMIT - len(suffix)) + suffix),
        "value": str(project.id),
    }


def role_option(role: Role) -> dict[str, Any]:
    return {"text": _plain(ROLE_DESCRIPTIONS[role]), "value": str(role)}


def offered_projects(projects: list[Project], entitlement: Entitlement) -> list[Project]:
    offered = [project for project in projects if entitlement.offers_project(project.id)]
    return sorted(offered, key=lambda project: (project.name.casefold(), project.id))


def filter_project_options(projects: list[Project], query: str) -> list[dict[str, Any]]:
    """Options for the external select: matches on name or id, at most Slack's 100."""
    needle = query.strip().casefold()
    matches = [p for p in projects if not needle or needle in p.name.casefold() or needle in str(p.id)]
    return [project_option(project) for project in matches[:MAX_STATIC_OPTIONS]]


# --- private_metadata --------------------------------------------------------------------------------


class _Metadata(BaseModel):
    model_config = ConfigDict(extra="ignore")
    u: str
    t: str | None = None
    c: str | None = None
    r: str | None = None
    p: str | None = None


def encode_metadata(context: SubmissionContext) -> str:
    """Where to answer the requester. Never a secret: Slack echoes this back in every view payload."""
    fields = {"u": context.user_id, "t": context.team_id, "c": context.channel_id, "r": context.response_url}
    if context.replaces_request_id:
        fields["p"] = context.replaces_request_id
    encoded = json.dumps(fields, separators=(",", ":"))
    if len(encoded) > PRIVATE_METADATA_LIMIT:
        raise ValueError("private_metadata too long")
    return encoded


def decode_metadata(raw: str | None) -> SubmissionContext | None:
    try:
        data = _Metadata.model_validate_json(raw or "")
    except ValidationError:
        return None
    return SubmissionContext(
        user_id=data.u, team_id=data.t, channel_id=data.c, response_url=data.r, replaces_request_id=data.p
    )


# --- views -------------------------------------------------------------------------------------------


def _modal(
    blocks: list[dict[str, Any]],
    *,
    callback_id: str,
    metadata: str = "",
    submit: str | None = None,
    close: str = "Close",
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(MODAL_TITLE),
        "close": _plain(close),
        "blocks": blocks,
        "private_metadata": metadata,
    }
    if submit:
        view["submit"] = _plain(submit)
    return view


def loading_view(metadata: str) -> dict[str, Any]:
    return _modal(
        [
            {
                "type": "section",
                "block_id": BLOCK_NOTICE,
                "text": _mrkdwn(":hourglass_flowing_sand: Loading your Mixpanel projects…"),
            }
        ],
        callback_id=LOADING_CALLBACK_ID,
        metadata=metadata,
        close="Cancel",
    )


def status_view(text: str) -> dict[str, Any]:
    return _modal(
        [{"type": "section", "block_id": BLOCK_NOTICE, "text": _mrkdwn(text)}], callback_id=STATUS_CALLBACK_ID
    )


def update_ack(text: str) -> dict[str, Any]:
    """A view submission's ack that turns the modal into a status view saying `text`."""
    return {"response_action": "update", "view": status_view(text)}


@dataclass(frozen=True)
class Prefill:
    username: str
    role: Role
    project_ids: tuple[int, ...]


def creation_view(
    *,
    entitlement: Entitlement,
    projects: list[Project] | None,
    today: date,
    metadata: str,
    projects_unavailable_text: str,
    no_projects_text: str,
    prefill: Prefill | None = None,
    offer_break_glass: bool = False,
    fixed_destination: str | None = None,
) -> dict[str, Any]:
    """The form, offering only what `entitlement` allows. `projects` is None when Mixpanel could not say.
    `prefill` (Replace…) starts it with an earlier account's name, role and projects, where still allowed.

    A Reason field appears for people who may choose something that needs approval; whether the chosen
    values do is only known at submission, so it is optional here and required there."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": BLOCK_USERNAME,
            "label": _plain("Username"),
            "hint": _plain(
                "Letters, digits, dots, dashes and underscores. Mixpanel appends a suffix, "
                "e.g. etl-nightly becomes etl-nightly.1a2b3c.mp-service-account."
            ),
            "element": {
                "type": "plain_text_input",
                "action_id": ACTION_USERNAME,
                "max_length": USERNAME_MAX_LENGTH,
                "placeholder": _plain("etl-nightly"),
                **({"initial_value": prefill.username} if prefill else {}),
            },
        },
    ]
    roles = entitlement.roles
    initial_role = Role.ANALYST if Role.ANALYST in roles else roles[-1]
    if prefill and prefill.role in roles:
        initial_role = prefill.role
    blocks.append(
        {
            "type": "input",
            "block_id": BLOCK_ROLE,
            "label": _plain("Role"),
            "hint": _plain("Used for the organization and for every project you choose."),
            "element": {
                "type": "static_select",
                "action_id": ACTION_ROLE,
                "options": [role_option(role) for role in roles],
                "initial_option": role_option(initial_role),
            },
        }
    )
    default_days = min(DEFAULT_EXPIRY_DAYS, entitlement.max_expiry_days)
    never_note = " or tick “Never expires”" if entitlement.allow_never else ""
    blocks.append(
        {
            "type": "input",
            "block_id": BLOCK_EXPIRY,
            "optional": entitlement.allow_never,
            "label": _plain("Expires on"),
            "hint": _plain(
                f"The account stops working at the end of this day, your time; at most "
                f"{entitlement.max_expiry_days} days from today{never_note}."
            ),
            "element": {
                "type": "datepicker",
                "action_id": ACTION_EXPIRY,
                "initial_date": (today + timedelta(days=default_days)).isoformat(),
            },
        }
    )
    if entitlement.allow_never:
        blocks.append(
            {
                "type": "input",
                "block_id": BLOCK_NEVER,
                "optional": True,
                "label": _plain("No expiry"),
                "element": {
                    "type": "checkboxes",
                    "action_id": ACTION_NEVER,
                    "options": [{"text": _plain("Never expires"), "value": NEVER_VALUE}],
                },
            }
        )
    can_submit = False
    if projects is None:
        blocks.append(
            {"type": "section", "block_id": BLOCK_NOTICE, "text": _mrkdwn(projects_unavailable_text)}
        )
    else:
        offered = offered_projects(projects, entitlement)
        if not offered:
            blocks.append({"type": "section", "block_id": BLOCK_NOTICE, "text": _mrkdwn(no_projects_text)})
        else:
            can_submit = True
            element: dict[str, Any] = {"action_id": ACTION_PROJECTS, "placeholder": _plain("Choose projects")}
            if len(offered) <= MAX_STATIC_OPTIONS:
                element.update(type="multi_static_select", options=[project_option(p) for p in offered])
                kept = [project_option(p) for p in offered if prefill and p.id in prefill.project_ids]
                if kept:
                    element["initial_options"] = kept
            else:
                element.update(type="multi_external_select", min_query_length=0)
            blocks.append(
                {
                    "type": "input",
                    "block_id": BLOCK_PROJECTS,
                    "label": _plain("Projects"),
                    "hint": _plain("The account gets the role above in each of these projects."),
                    "element": element,
                }
            )
    blocks.extend(destination_blocks(entitlement, fixed_destination))
    if entitlement.may_need_approval:
        blocks.append(reason_block())
    if offer_break_glass:
        blocks.append(
            {
                "type": "input",
                "block_id": BLOCK_BREAK_GLASS,
                "optional": True,
                "label": _plain("Emergency"),
                "hint": _plain(
                    "Create it now without approval, expiring 24 hours from now; every approver is told."
                ),
                "element": {
                    "type": "checkboxes",
                    "action_id": ACTION_BREAK_GLASS,
                    "options": [{"text": _plain("Break glass"), "value": BREAK_GLASS_VALUE}],
                },
            }
        )
    to_you = ":lock: The token is shown once, to you alone, in a private message in this conversation."
    to_store = ":lock: The token goes straight into the secret store; nobody sees it."
    only_stores = fixed_destination is not None or not entitlement.to_me
    notice = to_store if only_stores else to_you
    if entitlement.destinations and not only_stores:
        notice = f"{to_you} With a secret store chosen, it goes there instead and nobody sees it."
    blocks.append({"type": "context", "elements": [_mrkdwn(notice)]})
    return _modal(
        blocks,
        callback_id=CREATE_CALLBACK_ID,
        metadata=metadata,
        submit="Create" if can_submit else None,
        close="Cancel",
    )


def reason_block(*, label: str = "Reason", hint: str | None = None) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": BLOCK_REASON,
        "optional": True,
        "label": _plain(label),
        "hint": _plain(
            hint or "Needed when your choices need approval (e.g. a privileged role): approvers see it."
        ),
        "element": {
            "type": "plain_text_input",
            "action_id": ACTION_REASON,
            "multiline": True,
            "max_length": REASON_MAX_LENGTH,
        },
    }


def destination_blocks(entitlement: Entitlement, fixed_destination: str | None) -> list[dict[str, Any]]:
    """Deliver to (To me, in Slack, where allowed, and each destination this person may pick) and Secret
    name. A replacement goes where the old account went: `fixed_destination` says where, and nothing is
    chosen."""
    if fixed_destination is not None:
        return [
            {
                "type": "section",
                "block_id": BLOCK_DESTINATION,
                "text": _mrkdwn(f"*Deliver to:* {fixed_destination}, as a new version of the same secret."),
            }
        ]
    if not entitlement.destinations:
        return []
    options = [{"text": _plain("To me, in Slack"), "value": TO_ME_VALUE}] if entitlement.to_me else []
    options += [
        {"text": _plain(_truncate(name, OPTION_TEXT_LIMIT)), "value": name}
        for name in entitlement.destinations
    ]
    return [
        {
            "type": "input",
            "block_id": BLOCK_DESTINATION,
            "label": _plain("Deliver to"),
            "hint": _plain("A secret store receives the token directly: no person ever sees it."),
            "element": {
                "type": "static_select",
                "action_id": ACTION_DESTINATION,
                "options": options,
                "initial_option": options[0],
            },
        },
        {
            "type": "input",
            "block_id": BLOCK_SECRET_NAME,
            "optional": True,
            "label": _plain("Secret name"),
            "hint": _plain(f"Needed for a secret store: {SECRET_NAME_RULE}. It must not exist there yet."),
            "element": {
                "type": "plain_text_input",
                "action_id": ACTION_SECRET_NAME,
                "max_length": SECRET_NAME_MAX_LENGTH,
                "placeholder": _plain("etl-nightly"),
            },
        },
    ]
