"""Options for the project picker when an organization has more projects than a static select holds."""

from slack_bolt import Ack, App

from bot.create.flow import CreationFlow
from bot.create.views import ACTION_PROJECTS


def register(app: App, flow: CreationFlow) -> None:
    @app.options(ACTION_PROJECTS)
    def on_project_options(ack: Ack, body: dict) -> None:
        ack(options=flow.project_options(body["user"]["id"], body.get("value") or ""))
