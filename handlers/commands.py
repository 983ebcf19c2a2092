"""`/mp-service-account [help]`."""

from slack_bolt import Ack, App

from bot.messages import COMMAND, HELP_TEXT
from bot.models import SubmissionContext
from bot.service import CreationFlow
from bot.slack_retry import TRIGGER_WINDOW_RETRY_BUDGET, retry_budget

HELP_WORDS = {"help", "-h", "--help", "?"}


def register(app: App, flow: CreationFlow) -> None:
    @app.command(COMMAND)
    def on_command(ack: Ack, command: dict) -> None:
        text = (command.get("text") or "").strip().lower()
        if text:
            prefix = "" if text in HELP_WORDS else f"I don't know `{text[:40]}`. "
            ack(response_type="ephemeral", text=prefix + HELP_TEXT)
            return
        ack()  # first: the form is opened below, and nothing may delay Slack's 3 s deadline
        context = SubmissionContext(
            user_id=command["user_id"],
            team_id=command.get("team_id"),
            channel_id=command.get("channel_id"),
            response_url=command.get("response_url"),
        )
        with retry_budget(TRIGGER_WINDOW_RETRY_BUDGET):  # the trigger id dies 3 s after the command
            outcome = flow.open_form(trigger_id=command.get("trigger_id", ""), context=context)
        if outcome.reply:
            flow.answer(context, outcome.reply)  # not Bolt's respond(): that one gives up on a 429
