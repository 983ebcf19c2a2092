"""What the listeners for button clicks share: who clicked, where, and a private answer to them."""

from bot.models import SubmissionContext
from bot.slack.delivery import SlackDelivery


def click_context(body: dict) -> SubmissionContext:
    """Where a click came from: its conversation and response_url are where a private answer may go."""
    return SubmissionContext(
        user_id=body["user"]["id"],
        team_id=(body.get("team") or {}).get("id"),
        channel_id=(body.get("channel") or {}).get("id"),
        response_url=body.get("response_url"),
    )


def tell_clicker(delivery: SlackDelivery, body: dict, sentence: str) -> None:
    """To the clicker alone, through delivery's private paths (which wait out a 429 and fall back)."""
    delivery.to_requester(click_context(body), {"text": sentence})
