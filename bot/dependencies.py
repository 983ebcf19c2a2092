"""What every flow is handed: the policy, the store and the clients of the outside systems, built once by
bot/runtime.py. Flows read them as `self.d`; nothing here does I/O on import."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient

from bot.db.schema import StoredRequest
from bot.db.store import Store
from bot.destinations.base import Destination
from bot.jobs import JobRunner
from bot.mixpanel.catalog import ProjectCatalog
from bot.mixpanel.client import MixpanelClient
from bot.models import SubmissionContext, Workspace
from bot.policy.file import Policy
from bot.slack.delivery import SlackDelivery
from bot.slack.directory import SlackDirectory


@dataclass
class FlowDependencies:
    policy: Policy
    store: Store
    mixpanel: MixpanelClient
    catalog: ProjectCatalog
    directory: SlackDirectory
    delivery: SlackDelivery
    slack: WebClient  # short 429 budget: only for calls inside Slack's 3 s trigger window (views.open)
    # Every call made after the ack (approval notices, views.update, reminders, App Home): waits out a 429.
    background_slack: WebClient
    jobs: JobRunner
    public_host: str
    installation: Workspace  # whom the bot is installed for (auth.test); others are external
    reconcile_delays: list[float] = field(default_factory=lambda: [0.0, 5.0, 30.0])
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Waits between reconciliation passes; False means the process is stopping.
    pause: Callable[[float], bool] = field(default=lambda seconds: time.sleep(seconds) is None)
    uncertain_recheck: timedelta = timedelta(hours=6)
    # The policy's secret stores, by name (bot/destinations), with the bot's credentials for each.
    destinations: dict[str, Destination] = field(default_factory=dict)
    # Backoff between tries of a write that must not be lost (the record of a created or delivered account).
    write_retry_delays: tuple[float, ...] = (0.2, 1.0, 3.0)
    # The lifecycle (bot/manage/replace.py): may this person replace that request's account; and what
    # follows a delivery (an offer to delete a replaced account, a refreshed App Home).
    may_replace: Callable[[str, str], bool] = lambda user_id, request_id: False
    after_delivery: Callable[[StoredRequest, SubmissionContext], None] = lambda request, context: None
