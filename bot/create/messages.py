"""Every sentence the bot says to people, in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.destinations.base import Failure
from bot.mixpanel.client import ErrorKind, MixpanelError
from bot.models import Project, Role
from bot.policy.access import RefusalReason
from bot.slack.block_limits import name_list

COMMAND = "/mp-service-account"


def escape(text: str) -> str:
    """Slack mrkdwn treats <, > and & as markup; text from Mixpanel must not become links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


HELP_TEXT = (
    f"*{COMMAND}* creates a Mixpanel service account for you.\n"
    f"• `{COMMAND}` opens a form: choose a username, a role, an expiry date and the projects.\n"
    f"• The bot creates the account and sends you its username and token in a private message that only you "
    f"can see. The token is shown once: store it in your secret manager straight away.\n"
    f"• `{COMMAND} list` shows the accounts you created, with a Delete button on each; "
    f"`{COMMAND} list all` shows every account of the organization (the bot's admins only).\n"
    f"• The bot's App Home tab shows your accounts too, and a button that opens the form.\n"
    f"• `{COMMAND} help` shows this text."
)


def refusal_text(reason: RefusalReason, *, contact: str, quota: int) -> str:
    if reason is RefusalReason.NOT_A_MEMBER:
        why = (
            "Only full members of this workspace may create Mixpanel service accounts "
            "(not guests, bots or apps)."
        )
    elif reason is RefusalReason.EXTERNAL:
        why = (
            "Only people in the workspace this bot is installed in may create Mixpanel service accounts; "
            "your Slack account belongs to another workspace or organization."
        )
    elif reason is RefusalReason.NOT_LISTED:
        why = "You are not on the list of people who may create Mixpanel service accounts."
    elif reason is RefusalReason.RATE_LIMITED:
        why = f"You have reached the limit of {quota} service accounts in 24 hours; please try again later."
    else:
        why = (
            "The bot could not verify your Slack membership just now, so it cannot create accounts for you; "
            "please try again in a minute."
        )
    return f":no_entry: {why} If you need access, ask {contact}."


def mixpanel_failure_text(
    error: MixpanelError, *, contact: str, checked_for_orphans: bool = False, unconfirmed: bool = False
) -> str:
    """One plain sentence: what happened and what to do."""
    kind = error.kind
    nothing = "nothing was created"
    if kind is ErrorKind.BAD_REQUEST:
        reason = escape(error.reason or "no reason given")
        return (
            f"Mixpanel refused the request ({reason}), so {nothing}; please fix it and run {COMMAND} again."
        )
    if kind is ErrorKind.UNAUTHORIZED:
        return (
            f"Mixpanel rejected the bot's own credentials, so {nothing}; please ask {contact} to check them."
        )
    if kind is ErrorKind.FORBIDDEN:
        return (
            f"The bot's Mixpanel service account is not an organization admin, so {nothing}; "
            f"please ask {contact} to give it the admin role."
        )
    if kind is ErrorKind.NOT_FOUND:
        return (
            f"Mixpanel does not know the organization the bot is configured for, so {nothing}; "
            f"please ask {contact} to check MIXPANEL_ORGANIZATION_ID."
        )
    if kind is ErrorKind.RATE_LIMITED:
        return f"Mixpanel is limiting requests right now, so {nothing}; please try again in a few minutes."
    if kind is ErrorKind.API_ERROR:
        reason = escape(error.reason or "no reason given")
        return f"Mixpanel reported an error ({reason}), so {nothing}; please try again, or ask {contact}."
    if unconfirmed:
        return (
            "Mixpanel did not confirm whether the account was created, and the bot will delete it if it "
            f"was; you can safely try again in a few minutes, and tell {contact} if this keeps happening."
        )
    checked = " (the bot checked and cleaned up)" if checked_for_orphans else ""
    if kind is ErrorKind.TIMEOUT:
        what = "Mixpanel did not answer in time"
    elif kind is ErrorKind.CONNECTION:
        what = "The bot could not reach Mixpanel"
    elif kind is ErrorKind.SERVER_ERROR:
        what = "Mixpanel had an internal error"
    else:
        what = "Mixpanel sent an answer the bot could not read"
    return f"{what}, so {nothing}{checked}; it is safe to try again in a few minutes."


RESTARTING = "The bot is restarting, so nothing was created; please try again in a minute."
FORM_INVALID = "This form is no longer valid; please run the command again."
FORM_NOT_OPENED = "Slack could not open the form in time; please try again."
# Beside the projects field when the submission reaches a process whose project list is not loaded yet.
PROJECTS_NOT_CHECKED = (
    "The bot could not yet check these projects against Mixpanel's list; press Create again in a moment."
)

CONFIGURATION_PROBLEM = (
    "The bot is not set up correctly (it cannot tell which Mixpanel organization to use), so nothing was "
    "created; please ask {contact} to set MIXPANEL_ORGANIZATION_ID."
)

UNEXPECTED_FAILURE = (
    "Something unexpected went wrong, so nothing was created; please try again, or ask {contact}."
)

CLOSED_BEFORE_CREATE = (
    "This request waited too long and was closed before anything was created; please run the command again."
)

PROJECTS_UNAVAILABLE = (
    ":warning: The bot could not load the organization's projects from Mixpanel just now, so it cannot "
    "create an account. Close this form and try again in a minute; if it keeps happening, ask {contact}."
)
NO_PROJECTS = (
    ":warning: There are no Mixpanel projects you may add an account to. Ask {contact} if you need one."
)

DELIVERY_FAILED = (
    ":warning: The bot created `{username}` but could not deliver its token to you, so it deleted the "
    "account again and nothing is left behind; please run {command} again from a channel you are in."
)


def token_lost_text(username: str, destination: str | None, *, deleted: bool, contact: str) -> str:
    """What the sweeper tells a requester whose run was interrupted after the create, before the delivery of
    its token (to them, or into `destination`) was recorded: the token is lost, so the account is deleted."""
    where = f"stored in {destination}" if destination else "delivered to you"
    gone = (
        "so it deleted the account again: any token for it no longer works"
        if deleted
        else f"and deleting the account failed; it is recorded for {contact} to remove"
    )
    return (
        f":warning: The bot created `{username}`, but it was interrupted before the token was {where}, "
        f"{gone}. Please run {COMMAND} again."
    )


DELIVERY_FAILED_ORPHAN = (
    ":warning: The bot created `{username}` but could not deliver its token to you, and deleting it "
    "failed; it is recorded for {contact} to remove. Please run {command} again."
)

# The person holds a token here: say what became of it, never "nothing was created".
REVOKED_AFTER_DELIVERY = (
    ":warning: The bot sent you the token for `{username}`, but its cleanup had already given the request up "
    "and deletes the account, so that token will not work; please run {command} again."
)
DELIVERED_UNRECORDED = (
    ":warning: The bot sent you the token for `{username}` but could not record the account in its "
    "database, so it deleted the account again and that token no longer works; please run {command} again "
    "in a few minutes."
)
DELIVERED_UNRECORDED_PENDING = (
    ":warning: The bot sent you the token for `{username}` but could not record the account in its "
    "database, so the account will be deleted within minutes: do not use that token; please run {command} "
    "again later, and tell {contact} if this keeps happening."
)


# Why a secret store refused, for the one sentence the requester hears (it names the destination too).
STORE_FAILURE_CAUSES: dict[Failure, str] = {
    Failure.FORBIDDEN: "the bot is not allowed to write there",
    Failure.UNREACHABLE: "the bot could not reach it",
    Failure.TAKEN: "a secret of that name already exists there",
    Failure.KEY_UNAVAILABLE: "its encryption key could not be used",
    Failure.MISMATCH: "reading the secret back did not show what the bot wrote",
    Failure.OUTCOME_UNKNOWN: "it did not answer, and reading back showed nothing stored",
    Failure.REJECTED: "it refused the write",
}


def secret_taken_text(secret_name: str, destination: str) -> str:
    return f"A secret named {secret_name} already exists in {destination}; choose another name."


def stored_text(full_username: str, where: str) -> str:
    return (
        f":white_check_mark: `{full_username}` was created. Stored in {escape(where)}. "
        "The token went straight there: nobody, you included, has seen it."
    )


def store_failed_text(
    full_username: str, destination: str, failure: Failure, *, deleted: bool, contact: str
) -> str:
    cause = STORE_FAILURE_CAUSES[failure]
    if deleted:
        after = "so it deleted the account again and nothing is left behind; please try again"
    else:
        after = f"and deleting the account failed; it is recorded for {contact} to remove. Please try again"
    return (
        f":warning: The bot created `{full_username}` but could not store its token in {destination} "
        f"({cause}), {after}, or ask {contact}."
    )


REPLACE_DESTINATION_CLOSED = (
    "The account this replaces went to {destination}, which you may no longer deliver to, so nothing was "
    "created; ask {contact}."
)

STORE_UNSETTLED = (
    ":warning: The bot created `{username}`, but {destination} did not confirm that its token was stored. "
    "The bot will look again within minutes and delete the account if the secret is not there; "
    "please check {destination} later, or ask {contact}."
)


def creating_text(username: str) -> str:
    return (
        f":hourglass_flowing_sand: Creating `{username}` in Mixpanel… The credentials will arrive in a "
        f"private message in the conversation where you typed {COMMAND}."
    )


def already_submitted_text() -> str:
    return ":hourglass_flowing_sand: This request is already being processed. Watch for a private message."


def done_text(full_username: str) -> str:
    return (
        f":white_check_mark: `{full_username}` was created. Its token was sent to you in a private message."
    )


def failed_view_text(sentence: str) -> str:
    return f":x: {sentence}"


def _expiry_phrase(expires_at: datetime | None) -> str:
    return expires_at.strftime("%Y-%m-%d %H:%M UTC") if expires_at else "never"


def _projects_phrase(project_ids: tuple[int, ...], projects: dict[int, Project]) -> str:
    names = [f"{escape(projects[pid].name)} ({pid})" if pid in projects else str(pid) for pid in project_ids]
    return name_list(names)


def credentials_message(
    *,
    full_username: str,
    token: str,
    role: Role,
    project_ids: tuple[int, ...],
    projects: dict[int, Project],
    expires_at: datetime | None,
    public_host: str,
) -> dict[str, Any]:
    """The one and only place a token is ever written. The notification text deliberately omits it."""
    example = f"curl --user '{full_username}:{token}' '{public_host}/api/app/me'"
    return {
        "text": f"Your Mixpanel service account {full_username} is ready (the token is shown once).",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Your Mixpanel service account"}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Username*\n`{full_username}`"},
                    {"type": "mrkdwn", "text": f"*Token*\n`{token}`"},
                    {"type": "mrkdwn", "text": f"*Role*\n{role}"},
                    {"type": "mrkdwn", "text": f"*Expires*\n{_expiry_phrase(expires_at)}"},
                ],
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Projects*\n{_projects_phrase(project_ids, projects)}"},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": ":warning: *This token is shown only this once.* Mixpanel cannot show it again: "
                    "store it in your secret manager now. Username and token together are the credential "
                    "(HTTP Basic).",
                },
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"Try it:\n```{example}```"}},
        ],
    }


def audit_message(
    *,
    event: str,
    requester_id: str,
    username: str | None,
    full_username: str | None = None,
    account_id: int | None = None,
    role: Role | str | None = None,
    project_ids: tuple[int, ...] = (),
    projects: dict[int, Project] | None = None,
    expires_at: datetime | None = None,
    detail: str | None = None,
    suppressed: int = 0,
) -> dict[str, Any]:
    """A readable announcement for the audit channel. Never given a token, so it cannot contain one.
    `suppressed`: this person's refusals since the last notice that were stored but not announced."""
    account = (
        f"`{full_username}` (id {account_id})" if full_username else (f"`{username}`" if username else "")
    )
    headline = {
        "created": f":white_check_mark: <@{requester_id}> created {account}",
        "refused": f":no_entry: <@{requester_id}> was refused" + (f" creating {account}" if account else ""),
        "deleted": f":wastebasket: {account} requested by <@{requester_id}> was deleted",
        "delete_failed": f":rotating_light: {account} requested by <@{requester_id}> could not be deleted",
    }[event]
    lines = [headline]
    if role:
        lines.append(f"*Role:* {role}")
    if project_ids:
        lines.append(f"*Projects:* {_projects_phrase(project_ids, projects or {})}")
    if event in ("created", "deleted", "delete_failed") or expires_at:
        lines.append(f"*Expires:* {_expiry_phrase(expires_at)}")
    if detail:
        lines.append(f"*Why:* {detail}")
    if suppressed:
        times = "time" if suppressed == 1 else "times"
        lines.append(f"_Also refused {suppressed} more {times} since the last notice (see the audit trail)._")
    text = "\n".join(lines)
    return {"text": headline, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
