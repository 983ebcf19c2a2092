"""What the approval flow says, and its controls: every sentence, action id and callback id, once.

A button's value is the request id alone; everything else is read back from the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.approve.states import Refusal
from bot.create.messages import _expiry_phrase, _projects_phrase, escape
from bot.create.views import REASON_MAX_LENGTH
from bot.models import Project
from bot.policy.access import RefusalReason
from bot.policy.file import PersonSelector
from bot.slack.block_limits import SECTION_TEXT, clip

ACTION_APPROVE = "approval_approve"
ACTION_DENY = "approval_deny"
ACTION_CANCEL = "approval_cancel"
ACTION_CLAIM = "approval_claim"
ACTION_WITHDRAW = "approval_withdraw"
DENY_CALLBACK_ID = "approval_deny_reason"
CLAIM_CALLBACK_ID = "approval_claim_status"
BLOCK_REQUEST = "approval_request"
BLOCK_CONTROLS = "approval_controls"

APPROVE_LABEL = "Approve"
DENY_LABEL = "Deny"
CANCEL_LABEL = "Cancel request"
CLAIM_LABEL = "Create and show token"
WITHDRAW_LABEL = "Withdraw approval"

# People's own words (a request's reason, a denial's): (label, text), always shown as plain_text, never
# as mrkdwn, so that no reason can draw lines that pass for the bot's own ("*Approved by:* security").
Words = tuple[tuple[str, str], ...]

REFUSALS = {
    Refusal.NOT_AN_APPROVER: "You are not one of the approvers for these requests, so nothing changed.",
    Refusal.OWN_REQUEST: "You cannot decide your own request, so nothing changed; another approver must.",
    Refusal.NOT_THE_REQUESTER: "Only the person who made this request can do that, so nothing changed.",
    Refusal.ALREADY_APPROVED_BY_YOU: "You already approved this request; it is waiting for another approver.",
    Refusal.NOT_APPROVED: "This request has not been approved yet.",
    Refusal.ALREADY_CLAIMED: "The account for this request was already created; nothing new was made.",
    Refusal.TOO_LATE: "This request has expired, so nothing changed.",
    Refusal.BREAK_GLASS_NOT_ALLOWED: "Break glass is not available to you, so nothing was created.",
    Refusal.APPROVALS_LAPSED: "Under today's approval policy this request no longer has enough approvals, "
    "so nothing was created; it went back to the approvers.",
    Refusal.STILL_APPROVED: "This request is still approved, so nothing changed.",
}
APPROVERS_UNVERIFIED = (
    "The bot could not check its approvers' Slack accounts just now, so nothing changed; please try again."
)
MODAL_NOT_OPENED = "Slack could not open a window in time, so nothing changed; please click again."
DENY_REASON_REQUIRED = "Say why, so the requester knows."
DENY_REASON_TOO_LONG = f"Keep the reason to {REASON_MAX_LENGTH} characters, so the requester can read it."
UNKNOWN_REQUEST = "This request no longer exists, so nothing changed."
REASON_REQUIRED = "Your choices need approval: say why you need them."
UNVERIFIED = "The bot could not verify your Slack account just now, so nothing changed; please try again."
WHY_UNVERIFIED = "the bot could not verify your Slack account just now"
WHY_REFUSED = {
    RefusalReason.NOT_A_MEMBER: "only full members of this workspace may create accounts",
    RefusalReason.EXTERNAL: "the bot's policy no longer admits people from your workspace",
    RefusalReason.NOT_LISTED: "you are no longer on the list of people who may create accounts",
    RefusalReason.RATE_LIMITED: "you have reached the limit of accounts in 24 hours",
    RefusalReason.UNVERIFIED: WHY_UNVERIFIED,
}
BREAK_GLASS_STATUS = ":rotating_light: Created at once by break glass, without approval."
CLAIMED_STATUS = ":key: The requester clicked Create and show token."
CLAIM_NOT_COMPLETED = (
    ":warning: No account was kept for this request; the window that opened on your click says why."
)
CLAIM_REFUSED = (
    ":no_entry: You may no longer create this account ({why}), so nothing was created. If you need access, "
    "ask {contact}."
)


def people(selector: PersonSelector) -> str:
    """Who decides, as Slack mentions."""
    names = [f"<@{user}>" for user in selector.users] + [f"<!subteam^{g}>" for g in selector.usergroups]
    return ", ".join(names) or "nobody"


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def deny_reason_error(reason: str) -> str | None:
    """Why this deny reason cannot be taken (the modal shows it on its field), or None. The modal's own
    max_length is the browser's word; this is the server's, with the same single limit as the form."""
    if not reason:
        return DENY_REASON_REQUIRED
    if len(reason) > REASON_MAX_LENGTH:
        return DENY_REASON_TOO_LONG
    return None


def said(words: Words) -> list[dict[str, Any]]:
    """People's own words as plain_text sections: Slack shows them literally, never as formatting."""
    return [
        {
            "type": "section",
            "text": {"type": "plain_text", "text": clip(f"{label}: {text}", SECTION_TEXT), "emoji": False},
        }
        for label, text in words
        if text
    ]


def pending_view_text(username: str, approvers: str, needed: int) -> str:
    who = "one of" if needed == 1 else f"{needed} of"
    return (
        f":hourglass_flowing_sand: `{escape(username)}` needs approval, so nothing was created yet. "
        f"{who} {approvers} will decide; the bot will message you then, and you can cancel the request "
        "from that message."
    )


def break_glass_view_text(username: str) -> str:
    return (
        f":rotating_light: Break glass: creating `{escape(username)}` now, expiring 24 hours from now at "
        "the latest. "
        "Every approver is told. The credentials will arrive in a private message."
    )


def summary_lines(
    *,
    requester_id: str,
    username: str,
    role: str,
    project_ids: tuple[int, ...],
    projects: dict[int, Project],
    expires_at: datetime | None,
) -> str:
    """The bot's own lines about a request (mrkdwn); the requester's reason goes beside it, in `said`."""
    return "\n".join(
        [
            f"*Requester:* <@{requester_id}>",
            f"*Username:* `{escape(username)}`",
            f"*Role:* {role}",
            f"*Projects:* {_projects_phrase(project_ids, projects)}",
            f"*Expires:* {_expiry_phrase(expires_at)}",
        ]
    )


def _button(label: str, action_id: str, request_id: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": request_id,
    }
    if style:
        button["style"] = style
    return button


def _section(text: str, block_id: str = BLOCK_REQUEST) -> dict[str, Any]:
    text = clip(text, SECTION_TEXT)
    return {"type": "section", "block_id": block_id, "text": {"type": "mrkdwn", "text": text}}


def _withdraw_button(request_id: str) -> dict[str, Any]:
    button = _button(WITHDRAW_LABEL, ACTION_WITHDRAW, request_id, "danger")
    button["confirm"] = {
        "title": {"type": "plain_text", "text": "Withdraw approval?"},
        "text": {"type": "plain_text", "text": "The requester will not be able to create this account."},
        "confirm": {"type": "plain_text", "text": "Withdraw"},
        "deny": {"type": "plain_text", "text": "Keep it"},
    }
    return button


def approval_request_message(
    request_id: str, summary: str, words: Words, status: str | None, controls: str | None
) -> dict[str, Any]:
    """The message approvers see. `controls`: "decide" (Approve, Deny), "withdraw" (Withdraw approval,
    while approved and unclaimed) or None; `status` says what happened so far."""
    headline = ":raised_hand: A Mixpanel service account request needs approval"
    blocks = [_section(f"{headline}\n{summary}"), *said(words)]
    if status:
        status = clip(status, SECTION_TEXT)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": status}]})
    elements = {
        "decide": [
            _button(APPROVE_LABEL, ACTION_APPROVE, request_id, "primary"),
            _button(DENY_LABEL, ACTION_DENY, request_id, "danger"),
        ],
        "withdraw": [_withdraw_button(request_id)],
    }.get(controls or "")
    if elements:
        blocks.append({"type": "actions", "block_id": BLOCK_CONTROLS, "elements": elements})
    return {"text": headline if not status else f"{headline}: {status}", "blocks": blocks}


def progress_text(approved_by: tuple[str, ...], needed: int) -> str:
    names = ", ".join(f"<@{who}>" for who in approved_by)
    return f"{len(approved_by)} of {needed} approvals: {names}"


def approved_text(approved_by: tuple[str, ...], at: datetime) -> str:
    names = ", ".join(f"<@{who}>" for who in approved_by)
    return f":white_check_mark: Approved by {names} at {_at(at)}"


def denied_text(by: str, at: datetime) -> str:
    """The reason itself is shown beside, in `said` (DENIAL_LABEL)."""
    return f":x: Denied by <@{by}> at {_at(at)}"


REASON_LABEL = "Reason"
DENIAL_LABEL = "Why it was denied"


def withdrawn_text(by: str, at: datetime) -> str:
    return (
        f":leftwards_arrow_with_hook: The approval was withdrawn by <@{by}> at {_at(at)}, so nothing will be "
        "created; submit a new request if the account is still needed."
    )


def reopened_text(counted: int, needed: int) -> str:
    return (
        f":hourglass_flowing_sand: The approval policy changed: this request now needs {needed} approvals "
        f"and {counted} of them still count, so nothing was created and the approvers were asked again."
    )


def cancelled_text(at: datetime) -> str:
    return f":heavy_minus_sign: Cancelled by the requester at {_at(at)}"


def expired_text(at: datetime) -> str:
    return f":hourglass: Expired at {_at(at)}"


def lost_click_text(status: str) -> str:
    return f"This request was already settled, so your click changed nothing. {status}"


def requester_message(
    request_id: str, summary: str, words: Words, status: str, control: str | None
) -> dict[str, Any]:
    """The requester's DM: never a secret. `control`: "cancel", "claim" or None."""
    blocks = [_section(f"{status}\n{summary}"), *said(words)]
    if control == "cancel":
        blocks.append(
            {
                "type": "actions",
                "block_id": BLOCK_CONTROLS,
                "elements": [_button(CANCEL_LABEL, ACTION_CANCEL, request_id)],
            }
        )
    elif control == "claim":
        blocks.append(
            {
                "type": "actions",
                "block_id": BLOCK_CONTROLS,
                "elements": [_button(CLAIM_LABEL, ACTION_CLAIM, request_id, "primary")],
            }
        )
    return {"text": status, "blocks": blocks}


def reminder_text(approvers: str) -> str:
    return f":bell: {approvers}: this request is still waiting for a decision."


def too_few_approvers_text(needed: int, contact: str) -> str:
    return (
        f":no_entry: This request needs {needed} approvals from people other than you, and the bot's policy "
        f"does not name enough other approvers, so it was not sent and nothing was created. Ask {contact} "
        "to add approvers, or choose values that need no approval."
    )


UNREACHABLE = (
    "The bot could not reach any approver in Slack, so your request was not sent and nothing was created. "
    "Please tell {contact}, then submit it again."
)


def waiting_text(approvers: str) -> str:
    return f":hourglass_flowing_sand: Your request is waiting for approval by {approvers}."


def claimable_text(approved_by: tuple[str, ...], until: datetime) -> str:
    names = ", ".join(f"<@{who}>" for who in approved_by)
    return (
        f":white_check_mark: Approved by {names}. Click *{CLAIM_LABEL}* before {_at(until)}; the token is "
        "then shown to you once, in a window only you can see."
    )


def created_for_requester_text(full_username: str | None) -> str:
    name = f" `{full_username}`" if full_username else ""
    return f":white_check_mark: The account{name} was created and its token shown to you once."


def creating_modal_text(username: str) -> str:
    return f":hourglass_flowing_sand: Creating `{escape(username)}` in Mixpanel… The token appears here."


def break_glass_notice(requester_id: str, summary: str, words: Words) -> dict[str, Any]:
    text = f":rotating_light: <@{requester_id}> broke glass: an account is being created without approval."
    return {"text": text, "blocks": [_section(f"{text}\n{summary}"), *said(words)]}


BREAK_GLASS_UNANNOUNCED = (
    "Break glass needs every other approver to be told, and the bot could reach none of them in Slack, so "
    "nothing was created. Please tell {contact}, or submit the request for approval instead."
)


DENY_REASON_BLOCK = "deny_reason"
DENY_REASON_ACTION = "deny_reason_input"


def deny_reason_modal(request_id: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": DENY_CALLBACK_ID,
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": request_id,
        "blocks": [
            {
                "type": "input",
                "block_id": DENY_REASON_BLOCK,
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": DENY_REASON_ACTION,
                    "multiline": True,
                    "max_length": REASON_MAX_LENGTH,
                },
            }
        ],
    }


def credentials_view(message: dict[str, Any]) -> dict[str, Any]:
    """The claim modal showing the credentials: the same blocks as the private message."""
    return {
        "type": "modal",
        "callback_id": CLAIM_CALLBACK_ID,
        "title": {"type": "plain_text", "text": "Your new account"},
        "close": {"type": "plain_text", "text": "Done"},
        "blocks": message["blocks"],
    }


AUDIT_HEADLINES = {
    "approval_requested": ":raised_hand: <@{actor}> asked for approval",
    "approved": ":white_check_mark: <@{actor}> approved a request",
    "denied": ":x: <@{actor}> denied a request",
    "cancelled": ":heavy_minus_sign: <@{actor}> cancelled their request",
    "expired": ":hourglass: A request expired",
    "unreachable": ":warning: A request reached no approver (the post to the approval channel or every "
    "approver's DM failed), so it was ended unanswered",
    "claimed": ":key: <@{actor}> claimed an approved request",
    "break_glass": ":rotating_light: <@{actor}> broke glass",
    "break_glass_refused": ":no_entry: <@{actor}>'s break glass was refused: no other approver could be told",
    "withdrawn": ":leftwards_arrow_with_hook: <@{actor}> withdrew an approval",
    "reopened": ":arrows_counterclockwise: An approved request went back to the approvers: under today's "
    "policy its approvals no longer suffice",
}


def audit_announcement(event: str, actor_id: str | None, summary: str, words: Words) -> dict[str, Any]:
    """For the audit channel; never given a token."""
    headline = AUDIT_HEADLINES[event].format(actor=actor_id or "")
    return {"text": headline, "blocks": [_section(f"{headline}\n{summary}"), *said(words)]}
