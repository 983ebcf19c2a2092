"""Governance's listeners: `user_change` (only ever a re-check), Keep it, Take over, Adopt and the review
answers. Each acks first; the decision is made again on the server, after the ack where it is slow."""

from __future__ import annotations

from slack_bolt import Ack, App

from bot.govern import messages as say
from bot.govern.actions import Submitted
from bot.govern.leavers import has_left
from bot.govern.reviews import Answer
from bot.govern.wiring import Governance
from bot.manage.flow import ManageFlow
from bot.manage.views import ACTION_ADOPT
from bot.models import SubmissionContext
from handlers.clicks import tell_clicker


def register(app: App, manage: ManageFlow, governance: Governance) -> None:
    actions = governance.actions

    def value_of(body: dict) -> object:
        return ((body.get("actions") or [{}])[0]).get("value")

    def tell_later(body: dict, work) -> None:
        manage.run(f"govern:{body['user']['id']}", lambda: tell_clicker(manage.d.delivery, body, work()))

    def after_submit(user_id: str, submitted: Submitted) -> None:
        after = submitted.after
        if after is None:
            return

        def run() -> None:
            sentence = after()
            if sentence:
                manage.d.delivery.to_requester(SubmissionContext(user_id=user_id), {"text": sentence})

        manage.run(f"govern:{user_id}", run)

    @app.event("user_change")
    def on_user_change(event: dict) -> None:
        user = event.get("user") or {}
        user_id = user.get("id")
        # The payload only decides whether to look again; users.info decides the rest.
        if isinstance(user_id, str) and user_id.isalnum() and has_left(user):
            manage.run(f"leaver:{user_id}", lambda: governance.owners.on_user_change(user_id))

    @app.action(say.ACTION_KEEP)
    def on_keep(ack: Ack, body: dict) -> None:
        ack()
        refusal = actions.open_keep(body["user"]["id"], value_of(body), body.get("trigger_id", ""))
        if refusal:
            tell_clicker(manage.d.delivery, body, refusal)

    @app.view(say.KEEP_CALLBACK_ID)
    def on_keep_submit(ack: Ack, body: dict, view: dict) -> None:
        user_id = body["user"]["id"]
        submitted = actions.submit_keep(
            user_id, view.get("private_metadata"), (view.get("state") or {}).get("values") or {}
        )
        ack(**submitted.ack)
        after_submit(user_id, submitted)

    @app.action(ACTION_ADOPT)
    def on_adopt(ack: Ack, body: dict) -> None:
        ack()
        refusal = actions.open_adopt(body["user"]["id"], value_of(body), body.get("trigger_id", ""))
        if refusal:
            tell_clicker(manage.d.delivery, body, refusal)

    @app.view(say.ADOPT_CALLBACK_ID)
    def on_adopt_submit(ack: Ack, body: dict, view: dict) -> None:
        user_id = body["user"]["id"]
        submitted = actions.submit_adopt(
            user_id, view.get("private_metadata"), (view.get("state") or {}).get("values") or {}
        )
        ack(**submitted.ack)
        after_submit(user_id, submitted)

    @app.action(say.ACTION_TAKE_OVER)
    def on_take_over(ack: Ack, body: dict) -> None:
        ack()
        tell_later(body, lambda: governance.owners.take_over(body["user"]["id"], value_of(body)))

    def review(answer: Answer):
        def on_answer(ack: Ack, body: dict) -> None:
            ack()

            def work() -> str:
                outcome = governance.reviews.answer(body["user"]["id"], value_of(body), answer)
                return outcome if isinstance(outcome, str) else outcome.text

            tell_later(body, work)

        return on_answer

    app.action(say.ACTION_REVIEW_KEEP)(review(Answer.STILL_NEEDED))
    app.action(say.ACTION_REVIEW_DELETE)(review(Answer.DELETE))
