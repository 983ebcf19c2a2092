"""Parsing what comes back from the creation modal (bot/create/views.py builds it): a typed spec or the errors
to show beside each field."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.create.views import (
    ACTION_BREAK_GLASS,
    ACTION_DESTINATION,
    ACTION_EXPIRY,
    ACTION_NEVER,
    ACTION_PROJECTS,
    ACTION_REASON,
    ACTION_ROLE,
    ACTION_SECRET_NAME,
    ACTION_USERNAME,
    BLOCK_BREAK_GLASS,
    BLOCK_DESTINATION,
    BLOCK_EXPIRY,
    BLOCK_FOR_FIELD,
    BLOCK_NEVER,
    BLOCK_PROJECTS,
    BLOCK_REASON,
    BLOCK_ROLE,
    BLOCK_SECRET_NAME,
    BLOCK_USERNAME,
    BREAK_GLASS_VALUE,
    NEVER_VALUE,
    REASON_MAX_LENGTH,
    TO_ME_VALUE,
)
from bot.destinations.base import SECRET_NAME_PATTERN, SECRET_NAME_RULE
from bot.models import MIXPANEL_USERNAME_SUFFIX, USERNAME_MAX_LENGTH, USERNAME_PATTERN, AccountSpec, Role
from bot.policy.access import FormField


@dataclass(frozen=True)
class ParsedForm:
    spec: AccountSpec | None
    errors: dict[FormField, str]


def _value(values: dict[str, Any], block_id: str, action_id: str) -> dict[str, Any]:
    block = values.get(block_id)
    if not isinstance(block, dict):
        return {}
    element = block.get(action_id)
    return element if isinstance(element, dict) else {}


def validate_username(raw: Any) -> tuple[str | None, str | None]:
    if not isinstance(raw, str) or not raw.strip():
        return None, "Enter a username."
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in raw):
        return None, "The username may not contain line breaks or control characters."
    username = raw.strip()
    if len(username) > USERNAME_MAX_LENGTH:
        return None, f"The username may be at most {USERNAME_MAX_LENGTH} characters long."
    if not USERNAME_PATTERN.fullmatch(username):
        return (
            None,
            "Use only letters, digits, dots, dashes and underscores, starting with a letter or digit.",
        )
    if username.lower().endswith(MIXPANEL_USERNAME_SUFFIX):
        return None, f"Leave out {MIXPANEL_USERNAME_SUFFIX}: Mixpanel adds it (with a random part) itself."
    return username, None


def parse_submission(values: dict[str, Any], *, timezone: str) -> ParsedForm:
    """Turn `view.state.values` into an AccountSpec, or per-field errors. Trusts nothing in the payload."""
    errors: dict[FormField, str] = {}
    username, username_error = validate_username(_value(values, BLOCK_USERNAME, ACTION_USERNAME).get("value"))
    if username_error:
        errors[FormField.USERNAME] = username_error

    role: Role | None = None
    selected_role = _value(values, BLOCK_ROLE, ACTION_ROLE).get("selected_option") or {}
    try:
        role = Role(selected_role.get("value"))
    except (ValueError, AttributeError):
        errors[FormField.ROLE] = "Choose a role."

    project_ids: list[int] = []
    selected_projects = _value(values, BLOCK_PROJECTS, ACTION_PROJECTS).get("selected_options") or []
    try:
        project_ids = sorted({int(option["value"]) for option in selected_projects})
    except (KeyError, TypeError, ValueError):
        errors[FormField.PROJECTS] = "Choose projects from the list."
    if not project_ids and FormField.PROJECTS not in errors:
        errors[FormField.PROJECTS] = "Choose at least one project."

    never_options = _value(values, BLOCK_NEVER, ACTION_NEVER).get("selected_options") or []
    never = any(isinstance(option, dict) and option.get("value") == NEVER_VALUE for option in never_options)
    expires_on: date | None = None
    raw_date = _value(values, BLOCK_EXPIRY, ACTION_EXPIRY).get("selected_date")
    if not never:
        try:
            expires_on = date.fromisoformat(raw_date) if raw_date else None
        except (TypeError, ValueError):
            errors[FormField.EXPIRY] = "Choose a valid date."
        else:
            if expires_on is None:
                errors[FormField.EXPIRY] = "Choose an expiry date."

    destination, secret_name = parse_destination(values, errors)
    if errors or username is None or role is None:
        return ParsedForm(spec=None, errors=errors)
    spec = AccountSpec(
        username=username,
        role=role,
        project_ids=tuple(project_ids),
        expires_on=expires_on,
        timezone=timezone,
        destination=destination,
        secret_name=secret_name,
    )
    return ParsedForm(spec=spec, errors={})


def parse_destination(values: dict[str, Any], errors: dict[FormField, str]) -> tuple[str | None, str | None]:
    """The chosen destination's name (None: to the requester, in Slack, or no choice offered) and the
    secret's name. Whether this person may pick it is the policy's decision (bot/policy/access.py)."""
    selected = _value(values, BLOCK_DESTINATION, ACTION_DESTINATION).get("selected_option") or {}
    chosen = selected.get("value") if isinstance(selected, dict) else None
    if not isinstance(chosen, str) or not chosen or chosen == TO_ME_VALUE:
        return None, None
    raw = _value(values, BLOCK_SECRET_NAME, ACTION_SECRET_NAME).get("value")
    name = raw.strip() if isinstance(raw, str) else ""
    if not name:
        errors[FormField.SECRET_NAME] = "Enter a name for the secret."
    elif not SECRET_NAME_PATTERN.fullmatch(name):
        errors[FormField.SECRET_NAME] = f"Use {SECRET_NAME_RULE}."
    return chosen, name or None


def parse_reason(values: dict[str, Any]) -> str:
    """The Reason field, stripped; "" when absent or blank."""
    raw = _value(values, BLOCK_REASON, ACTION_REASON).get("value")
    return raw.strip()[:REASON_MAX_LENGTH] if isinstance(raw, str) else ""


def parse_break_glass(values: dict[str, Any]) -> bool:
    ticked = _value(values, BLOCK_BREAK_GLASS, ACTION_BREAK_GLASS).get("selected_options") or []
    return any(isinstance(option, dict) and option.get("value") == BREAK_GLASS_VALUE for option in ticked)


def errors_by_block(errors: dict[FormField, str]) -> dict[str, str]:
    return {BLOCK_FOR_FIELD[field]: message for field, message in errors.items()}
