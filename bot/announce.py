"""The audit channel announcement, shared by creation and the lifecycle flows."""

from __future__ import annotations

from typing import Any

from bot.delivery import SlackDelivery
from bot.jobs import JobRunner, ShuttingDown


def announce(
    channel: str | None, message: dict[str, Any], *, delivery: SlackDelivery, jobs: JobRunner
) -> None:
    """Post in the background (best effort: the database row is the record); inline while stopping."""
    if not channel:
        return
    try:
        jobs.submit("announce", lambda: delivery.announce(channel, message))
    except ShuttingDown:
        delivery.announce(channel, message)
