"""Clicks on the account list's controls (in an ephemeral list or the App Home)."""

import logging

from slack_bolt import Ack, App

from bot.manage.flow import DeleteOutcome, ManageFlow
from bot.manage.messages import UNEXPECTED
from bot.manage.projects_view import PROJECTS_CALLBACK_ID
from bot.manage.replace import ReplaceFlow
from bot.manage.rescope import RescopeFlow
from bot.manage.views import (
    ACTION_DELETE,
    ACTION_MOVE_TO_STORE,
    ACTION_REPLACE,
    ACTION_RESCOPE,
    SCOPE_ALL,
    SCOPE_HOME,
    SCOPE_OFFER,
    SCOPE_REMINDER,
    scope_of,
)
from handlers.clicks import click_context, tell_clicker

log = logging.getLogger(__name__)


def _tell(manage: ManageFlow, body: dict, sentence: str) -> None:
    tell_clicker(manage.d.delivery, body, sentence)


def _replace_listing(manage: ManageFlow, body: dict, listing: dict) -> None:
    """Redraw the ephemeral list in place; if Slack refuses that, send the new list privately instead."""
    if not manage.d.delivery.replace_message(body.get("response_url"), listing):
        manage.d.delivery.to_requester(click_context(body), listing)


def _in_message(body: dict, scope: str) -> bool:
    """The click came from an ephemeral message (which has a response_url), not from the App Home."""
    return bool(body.get("response_url")) and scope != SCOPE_HOME


def _answer_refusal(manage: ManageFlow, body: dict, user_id: str, scope: str, refusal: str) -> None:
    """Beside the message clicked in, or as a notice on the App Home."""
    if _in_message(body, scope):
        _tell(manage, body, refusal)
    else:
        manage.run(f"home:{user_id}", lambda: manage.publish_home(user_id, notice=refusal))


def register(app: App, manage: ManageFlow, rescope: RescopeFlow, replace: ReplaceFlow) -> None:
    @app.action(ACTION_DELETE)
    def on_delete(ack: Ack, body: dict) -> None:
        ack()  # Block Kit's confirm dialog came first, in the client; the decision is made below, again
        user_id = body["user"]["id"]
        action = (body.get("actions") or [{}])[0]
        scope = scope_of(action.get("block_id"))
        in_message = _in_message(body, scope)

        def delete_and_refresh() -> None:
            try:
                outcome = manage.delete(user_id, action.get("value"))
            except Exception:
                log.exception("Deleting for %s failed unexpectedly", user_id)
                outcome = DeleteOutcome(UNEXPECTED.format(contact=manage.d.policy.contact))
            if scope in (SCOPE_REMINDER, SCOPE_OFFER) and body.get("response_url"):
                _tell(manage, body, outcome.text)
            elif not in_message:
                manage.publish_home(user_id, notice=outcome.text)
            elif outcome.changed:
                listing = manage.list_message(user_id, everything=scope == SCOPE_ALL, notice=outcome.text)
                _replace_listing(manage, body, listing)
            else:  # refused or failed: the list still stands; say why beside it
                _tell(manage, body, outcome.text)

        manage.run(f"delete:{user_id}", delete_and_refresh)

    @app.action(ACTION_RESCOPE)
    def on_projects(ack: Ack, body: dict) -> None:
        ack()
        user_id = body["user"]["id"]
        action = (body.get("actions") or [{}])[0]
        scope = scope_of(action.get("block_id"))
        # The trigger lives 3 s: the modal opens here, after only cached lookups.
        refusal = rescope.open(
            user_id=user_id, value=action.get("value"), trigger_id=body.get("trigger_id", ""), scope=scope
        )
        if refusal is not None:
            _answer_refusal(manage, body, user_id, scope, refusal)

    @app.view(PROJECTS_CALLBACK_ID)
    def on_projects_submit(ack: Ack, body: dict, view: dict) -> None:
        outcome = rescope.submit(
            user_id=body["user"]["id"],
            metadata=view.get("private_metadata"),
            values=(view.get("state") or {}).get("values") or {},
            view_id=view.get("id"),
        )
        ack(**outcome.ack)
        if outcome.start is not None:
            outcome.start()

    def open_replacement(body: dict, *, into_store: bool) -> None:
        user_id = body["user"]["id"]
        action = (body.get("actions") or [{}])[0]
        scope = scope_of(action.get("block_id"))
        # Where the new token may travel: this conversation, privately, as for any creation.
        context = click_context(body)
        refusal = replace.open(
            user_id=user_id,
            value=action.get("value"),
            trigger_id=body.get("trigger_id", ""),
            context=context,
            into_store=into_store,
        )
        if refusal is not None:
            _answer_refusal(manage, body, user_id, scope, refusal)

    @app.action(ACTION_REPLACE)
    def on_replace(ack: Ack, body: dict) -> None:
        ack()
        open_replacement(body, into_store=False)

    @app.action(ACTION_MOVE_TO_STORE)
    def on_move_to_store(ack: Ack, body: dict) -> None:
        ack()
        open_replacement(body, into_store=True)
