"""`/mp-service-account [list | list all | help]`."""

import logging

from slack_bolt import Ack, App, Respond

from bot.manage import ManageFlow
from bot.manage_messages import UNEXPECTED
from bot.messages import COMMAND, HELP_TEXT
from bot.models import SubmissionContext
from bot.service import CreationFlow

log = logging.getLogger(__name__)

HELP_WORDS = {"help", "-h", "--help", "?"}
LIST_WORDS = {"list": False, "list all": True}


def register(app: App, flow: CreationFlow, manage: ManageFlow) -> None:
    @app.command(COMMAND)
    def on_command(ack: Ack, command: dict, respond: Respond) -> None:
        text = " ".join((command.get("text") or "").lower().split())
        if text in LIST_WORDS:
            ack()  # the list needs Mixpanel; it follows as a private message
            user_id = command["user_id"]
            everything = LIST_WORDS[text]

            def answer() -> None:
                try:
                    listing = manage.list_message(user_id, everything=everything)
                except Exception:
                    log.exception("Listing accounts for %s failed unexpectedly", user_id)
                    listing = {"text": UNEXPECTED.format(contact=manage.d.policy.contact)}
                respond(response_type="ephemeral", replace_original=False, **listing)

            manage.run(f"list:{user_id}", answer)
            return
        if text:
            prefix = "" if text in HELP_WORDS else f"I don't know `{text[:40]}`. "
            ack(response_type="ephemeral", text=prefix + HELP_TEXT)
            return
        ack()  # first: the form is opened below, and nothing may delay Slack's 3 s deadline
        outcome = flow.open_form(
            trigger_id=command.get("trigger_id", ""),
            context=SubmissionContext(
                user_id=command["user_id"],
                team_id=command.get("team_id"),
                channel_id=command.get("channel_id"),
                response_url=command.get("response_url"),
            ),
        )
        if outcome.reply:
            respond(text=outcome.reply, response_type="ephemeral", replace_original=False)
