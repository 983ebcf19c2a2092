"""The creation modal's submit button."""

from slack_bolt import Ack, App

from bot.service import CreationFlow
from bot.views import CREATE_CALLBACK_ID


def register(app: App, flow: CreationFlow) -> None:
    @app.view(CREATE_CALLBACK_ID)
    def on_submit(ack: Ack, body: dict, view: dict) -> None:
        outcome = flow.submit(
            view_id=view["id"],
            values=(view.get("state") or {}).get("values") or {},
            private_metadata=view.get("private_metadata"),
            user_id=body["user"]["id"],
            team_id=(body.get("team") or {}).get("id"),
        )
        ack(**outcome.ack)
        if outcome.start is not None:
            outcome.start()
