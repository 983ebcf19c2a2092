"""`/mp-service-account [list | list all | help]`."""

import logging

from slack_bolt import Ack, App

from bot.create.flow import CreationFlow
from bot.create.messages import COMMAND, HELP_TEXT
from bot.manage.flow import ManageFlow
from bot.manage.messages import UNEXPECTED
from bot.models import SubmissionContext
from bot.slack.retry import TRIGGER_WINDOW_RETRY_BUDGET, retry_budget

log = logging.getLogger(__name__)

HELP_WORDS = {"help", "-h", "--help", "?"}
LIST_WORDS = {"list": False, "list all": True}


def register(app: App, flow: CreationFlow, manage: ManageFlow) -> None:
    @app.command(COMMAND)
    def on_command(ack: Ack, command: dict) -> None:
        text = " ".join((command.get("text") or "").lower().split())
        context = SubmissionContext(
            user_id=command["user_id"],
            team_id=command.get("team_id"),
            channel_id=command.get("channel_id"),
            response_url=command.get("response_url"),
        )
        if text in LIST_WORDS:
            ack()  # the list needs Mixpanel; it follows as a private message
            everything = LIST_WORDS[text]

            def answer() -> None:
                try:
                    listing = manage.list_message(context.user_id, everything=everything)
                except Exception:
                    log.exception("Listing accounts for %s failed unexpectedly", context.user_id)
                    listing = {"text": UNEXPECTED.format(contact=manage.d.policy.contact)}
                # Not Bolt's respond(): that one gives up on a 429.
                manage.d.delivery.to_requester(context, listing)

            manage.run(f"list:{context.user_id}", answer)
            return
        if text:
            prefix = "" if text in HELP_WORDS else f"I don't know `{text[:40]}`. "
            ack(response_type="ephemeral", text=prefix + HELP_TEXT)
            return
        ack()  # first: the form is opened below, and nothing may delay Slack's 3 s deadline
        with retry_budget(TRIGGER_WINDOW_RETRY_BUDGET):  # the trigger id dies 3 s after the command
            outcome = flow.open_form(trigger_id=command.get("trigger_id", ""), context=context)
        if outcome.reply:
            flow.answer(context, outcome.reply)  # not Bolt's respond(): that one gives up on a 429
