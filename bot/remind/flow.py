"""Expiry reminders: before an account expires, its creator gets a DM (never a secret) with a Delete control.

Which reminder is due is a pure function of the expiry, the clock and the policy's `reminders.days_before`.
Each reminder is claimed in the database before it is sent (`reminders_sent`, keyed by request and
threshold), so restarts, reruns and several instances never send one twice. If the creator is deactivated
or has left the workspace, the reminder goes to the audit channel instead: no account outlives its owner
unnoticed. In the app, one instance at a time runs the job, under a database lease.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.manage.accounts import AccountEntry, Presence
from bot.manage.flow import ManageFlow
from bot.manage.views import reminder_message
from bot.models import Standing
from bot.remind.store import ReminderStore
from bot.slack.directory import standing_of

log = logging.getLogger(__name__)

LEASE_NAME = "expiry-reminders"


def due_threshold(expires_at: datetime | None, now: datetime, days_before: list[int]) -> int | None:
    """The reminder due now: the nearest threshold crossed. An account that crossed several thresholds
    since the last look gets one reminder, for the nearest; the farther ones are then never due."""
    if expires_at is None or expires_at <= now or not days_before:
        return None
    crossed = [days for days in days_before if expires_at - now <= timedelta(days=days)]
    return min(crossed) if crossed else None


class OwnerStatus(StrEnum):
    PRESENT = "present"
    DEACTIVATED = "deactivated"
    LEFT = "left"  # Slack no longer knows the user


OWNER_PHRASES = {OwnerStatus.DEACTIVATED: "is deactivated", OwnerStatus.LEFT: "has left the workspace"}


def owner_status(client: WebClient, user_id: str) -> OwnerStatus | None:
    """Is the person still here? None when Slack could not say (the caller waits for its next run)."""
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError as error:
        if error.response.get("error") == "user_not_found":
            return OwnerStatus.LEFT
        log.warning("users.info for %s failed: %s", user_id, error.response.get("error"))
        return None
    except (SlackClientError, OSError, KeyError, TypeError) as error:
        log.warning("users.info for %s failed: %s", user_id, type(error).__name__)
        return None
    return OwnerStatus.DEACTIVATED if standing_of(user) is Standing.DEACTIVATED else OwnerStatus.PRESENT


@dataclass(frozen=True)
class Reminder:
    entry: AccountEntry
    days_before: int
    owner_status: OwnerStatus

    @property
    def creator_id(self) -> str:
        return self.entry.creator_id or ""

    def describe(self, audit_channel: str | None) -> str:
        where = (
            f"DM to {self.creator_id}"
            if self.owner_status is OwnerStatus.PRESENT
            else f"audit channel {audit_channel or '(none set)'}: {self.creator_id} is {self.owner_status}"
        )
        return f"{self.entry.username}: {self.days_before}-day reminder, {where}"


class ReminderJob:
    def __init__(self, manage: ManageFlow, store: ReminderStore, *, holder: str | None = None):
        self.m = manage
        self.d = manage.d
        self.store = store
        self.holder = holder or uuid.uuid4().hex

    def _owner_status(self, user_id: str) -> OwnerStatus | None:
        return owner_status(self.d.background_slack, user_id)

    def plan(self, now: datetime) -> list[Reminder]:
        """The reminders due now and not yet sent. Raises MixpanelError/OrganizationUnknown."""
        thresholds = self.d.policy.reminders.days_before
        if not thresholds:
            return []
        entries = [
            e for e in self.m.entries(None) if e.made_by_bot and e.presence is Presence.LIVE and e.request
        ]
        due = [(e, due_threshold(e.expires_at, now, thresholds)) for e in entries]
        due = [(e, days) for e, days in due if days is not None]
        sent = self.store.sent([e.request.id for e, _ in due if e.request])
        reminders = []
        for entry, days in due:
            if entry.request is None or days is None or (entry.request.id, days) in sent:
                continue
            status = self._owner_status(entry.request.requester_id)
            if status is not None:
                reminders.append(Reminder(entry, days, status))
        return reminders

    def run_once(self, now: datetime | None = None, *, dry_run: bool = False) -> list[Reminder]:
        """Send what is due; returns what was sent (or, with dry_run, what would be)."""
        now = now or self.d.clock()
        planned = self.plan(now)
        if dry_run:
            return planned
        return [reminder for reminder in planned if self._send(reminder, now)]

    def _send(self, reminder: Reminder, now: datetime) -> bool:
        request = reminder.entry.request
        if request is None:
            return False
        owner_gone = reminder.owner_status is not OwnerStatus.PRESENT
        channel = self.d.policy.audit_channel if owner_gone else None
        if owner_gone and not channel:
            log.error(
                "Account %s belongs to %s, who is %s, and no audit channel is set to warn",
                reminder.entry.username,
                request.requester_id,
                reminder.owner_status,
            )
            return False
        recipient = channel or request.requester_id
        if not self.store.claim(request, reminder.days_before, recipient=recipient, now=now):
            return False  # another run or instance sent it
        message = reminder_message(
            reminder.entry,
            days_before=reminder.days_before,
            now=now,
            projects=self.m.project_names(),
            owner_status=OWNER_PHRASES.get(reminder.owner_status),
            # Shown in Slack, so not rotated: offer a move into a store, where it will be.
            move_to_store=request.destination is None and bool(self.d.policy.destinations),
        )
        try:
            if channel is None:
                channel = self.d.background_slack.conversations_open(users=request.requester_id)["channel"][
                    "id"
                ]
            self.d.background_slack.chat_postMessage(
                channel=channel, unfurl_links=False, unfurl_media=False, **message
            )
        except (SlackClientError, OSError, KeyError, TypeError) as error:
            log.warning(
                "Could not send the reminder for %s: %s", reminder.entry.username, type(error).__name__
            )
            self.store.release(request, reminder.days_before)
            return False
        detail = f"{reminder.days_before} days before expiry, to {recipient}"
        self.store.record_sent(self.m.records, request, detail, now)
        return True

    def run_under_lease(self, interval: float, now: datetime | None = None) -> list[Reminder] | None:
        """One pass if this instance holds (or can take) the lease; None if another instance does."""
        now = now or self.d.clock()
        lease = timedelta(seconds=interval) + timedelta(seconds=60)
        if not self.store.acquire_lease(LEASE_NAME, self.holder, now=now, duration=lease):
            return None
        return self.run_once(now)

    def start(self, interval: float, stopping: threading.Event) -> None:
        def loop() -> None:
            # First wait: a fresh start must not hold up its own warm-up with a list of every account.
            while not stopping.wait(interval):
                try:
                    self.run_under_lease(interval)
                except Exception:
                    log.exception("Sending expiry reminders failed")

        threading.Thread(target=loop, name="reminders", daemon=True).start()
