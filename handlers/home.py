"""The App Home tab: the person's accounts, and a button that opens the usual creation form."""

from slack_bolt import Ack, App

from bot.create.flow import CreationFlow
from bot.manage.flow import ManageFlow
from bot.manage.views import ACTION_HOME_CREATE
from bot.models import SubmissionContext
from bot.slack.retry import TRIGGER_WINDOW_RETRY_BUDGET, retry_budget


def register(app: App, flow: CreationFlow, manage: ManageFlow) -> None:
    @app.event("app_home_opened")
    def on_home_opened(event: dict) -> None:
        if event.get("tab", "home") != "home":
            return  # the Messages tab: nothing to publish
        user_id = event["user"]
        manage.run(f"home:{user_id}", lambda: manage.publish_home(user_id))

    @app.action(ACTION_HOME_CREATE)
    def on_create(ack: Ack, body: dict) -> None:
        ack()
        user_id = body["user"]["id"]
        # The usual form, judged by the usual policy; the token then travels by the private paths it
        # always does (with no channel here, the DM with the app).
        with retry_budget(TRIGGER_WINDOW_RETRY_BUDGET):  # the trigger id dies 3 s after the click
            outcome = flow.open_form(
                trigger_id=body.get("trigger_id", ""),
                context=SubmissionContext(user_id=user_id, team_id=(body.get("team") or {}).get("id")),
            )
        if outcome.reply:
            reply = outcome.reply
            manage.run(f"home:{user_id}", lambda: manage.publish_home(user_id, notice=reply))
