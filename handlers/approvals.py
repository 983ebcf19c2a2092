"""Approve, Deny (and its reason modal), Withdraw approval, Cancel request, Create and show token.

Every listener acks first. A button's value is a request id and nothing else; `bot.approve.flow` decides on
the server whether this person may click it. Refusals go to the clicker alone.
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.approve import messages as text
from bot.approve.flow import ApprovalFlow
from bot.create.views import status_view
from bot.models import SubmissionContext
from handlers.clicks import click_context, tell_clicker

log = logging.getLogger(__name__)


def _clicked(body: dict) -> tuple[str, str]:
    """(request id, who clicked)."""
    action = (body.get("actions") or [{}])[0]
    return str(action.get("value") or ""), body["user"]["id"]


def _tell(flow: ApprovalFlow, body: dict, sentence: str | None) -> None:
    """To the clicker alone, through delivery's private paths (which wait out a 429 and fall back)."""
    if sentence:
        tell_clicker(flow.d.delivery, body, sentence)


def _open(client: WebClient, trigger_id: str, view: dict) -> str | None:
    try:
        return client.views_open(trigger_id=trigger_id, view=view)["view"]["id"]
    except (SlackClientError, OSError, KeyError, TypeError) as error:
        log.warning("views.open failed: %s", type(error).__name__)
        return None


def register(app: App, flow: ApprovalFlow) -> None:
    @app.action(text.ACTION_APPROVE)
    def on_approve(ack: Ack, body: dict) -> None:
        ack()
        _tell(flow, body, flow.approve(*_clicked(body)))

    @app.action(text.ACTION_DENY)
    def on_deny(ack: Ack, body: dict, client: WebClient) -> None:
        ack()
        request_id, user_id = _clicked(body)
        refusal = flow.may_deny(request_id, user_id)
        if refusal:
            _tell(flow, body, refusal)
            return
        if _open(client, body.get("trigger_id", ""), text.deny_reason_modal(request_id)) is None:
            _tell(flow, body, text.MODAL_NOT_OPENED)

    @app.view(text.DENY_CALLBACK_ID)
    def on_deny_reason(ack: Ack, body: dict, view: dict) -> None:
        values = (view.get("state") or {}).get("values") or {}
        reason = ((values.get(text.DENY_REASON_BLOCK) or {}).get(text.DENY_REASON_ACTION) or {}).get("value")
        reason = (reason or "").strip()
        invalid = text.deny_reason_error(reason)
        if invalid:
            ack(response_action="errors", errors={text.DENY_REASON_BLOCK: invalid})
            return
        ack()
        user_id = body["user"]["id"]
        refusal = flow.deny(view.get("private_metadata") or "", user_id, reason)
        if refusal:
            flow.d.delivery.to_requester(SubmissionContext(user_id=user_id), {"text": refusal})

    @app.action(text.ACTION_WITHDRAW)
    def on_withdraw(ack: Ack, body: dict) -> None:
        ack()
        _tell(flow, body, flow.withdraw(*_clicked(body)))

    @app.action(text.ACTION_CANCEL)
    def on_cancel(ack: Ack, body: dict) -> None:
        ack()
        _tell(flow, body, flow.cancel(*_clicked(body)))

    @app.action(text.ACTION_CLAIM)
    def on_claim(ack: Ack, body: dict, client: WebClient) -> None:
        ack()
        request_id, user_id = _clicked(body)
        refusal = flow.may_claim(request_id, user_id)  # a database read only: the trigger lives 3 s
        if refusal:
            _tell(flow, body, refusal)
            return
        record = flow.store.get(request_id)
        username = record.request.username if record else ""
        view_id = _open(client, body.get("trigger_id", ""), status_view(text.creating_modal_text(username)))
        if view_id is None:
            _tell(flow, body, text.MODAL_NOT_OPENED)
            return
        flow.start_claim(request_id, user_id, view_id, click_context(body))
