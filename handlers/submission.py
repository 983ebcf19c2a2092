"""The creation modal's submit button."""

import hashlib
import json

from slack_bolt import Ack, App

from bot.create.flow import CreationFlow
from bot.create.views import CREATE_CALLBACK_ID
from bot.slack.retry import TRIGGER_WINDOW_RETRY_BUDGET, retry_budget


def submission_key(body: dict, view: dict) -> str:
    """Slack gives every modal an id, and a double click or a retry carries the same one. Without it
    (hand-made payloads), identical submissions still map to one key."""
    if view.get("id"):
        return view["id"]
    same = [body["user"]["id"], view.get("private_metadata"), view.get("state")]
    return "sha256:" + hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()[:40]


def register(app: App, flow: CreationFlow) -> None:
    @app.view(CREATE_CALLBACK_ID)
    def on_submit(ack: Ack, body: dict, view: dict) -> None:
        # The ack is due within 3 s: the lookups before it (users.info, the groups) share one 429 budget.
        with retry_budget(TRIGGER_WINDOW_RETRY_BUDGET):
            outcome = flow.submit(
                view_id=submission_key(body, view),
                values=(view.get("state") or {}).get("values") or {},
                private_metadata=view.get("private_metadata"),
                user_id=body["user"]["id"],
                team_id=(body.get("team") or {}).get("id"),
            )
        ack(**outcome.ack)
        if outcome.start is not None:
            outcome.start()
