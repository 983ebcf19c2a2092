"""What the approval flow posts and updates in Slack: the approvers' request, the requester's DMs.

Every message is rebuilt from the stored record (never read back from Slack) and updated in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.approve import messages as text
from bot.approve.states import ApprovalState
from bot.approve.store import FOR_APPROVERS, FOR_REQUESTER, ApprovalRecord, ApprovalStore
from bot.models import Project
from bot.policy.file import ApprovalPolicy

log = logging.getLogger(__name__)


class ApprovalNotices:
    def __init__(
        self,
        *,
        slack: WebClient,
        store: ApprovalStore,
        approval: ApprovalPolicy,
        clock: Callable[[], datetime],
        project_names: Callable[[], dict[int, Project]],
    ):
        self._slack = slack
        self._store = store
        self.approval = approval
        self._clock = clock
        self._project_names = project_names

    def ask_approvers(self, record: ApprovalRecord) -> int:
        """Post the request, with Approve and Deny, where the approvers will see it; how many posts got
        through (0: nobody was told)."""
        message = text.approval_request_message(
            record.id, self.summary(record), self.words(record), None, "decide"
        )
        reached = 0
        for channel in self.approver_channels(record.request.requester_id):
            posted = self.post(channel, message)
            if posted:
                self._store.add_message(record.id, FOR_APPROVERS, *posted)
                reached += 1
        return reached

    def remind(self, request_id: str) -> None:
        reminder = text.reminder_text(text.people(self.approval.approvers))
        for channel, ts in self._store.messages(request_id, FOR_APPROVERS):
            try:
                self._slack.chat_postMessage(channel=channel, thread_ts=ts, text=reminder)
            except (SlackClientError, OSError) as error:
                log.warning("Could not remind approvers in %s: %s", channel, type(error).__name__)

    def status(self, record: ApprovalRecord) -> str:
        state = record.state
        if state is ApprovalState.PENDING:
            return (
                text.progress_text(record.approved_by, record.approvals_needed) if record.approved_by else ""
            )
        if state is ApprovalState.APPROVED:
            return text.approved_text(record.approved_by, record.decided_at or self._clock())
        if state is ApprovalState.DENIED:
            return text.denied_text(record.decided_by or "", record.decided_at or self._clock())
        if state is ApprovalState.CANCELLED:
            return text.cancelled_text(record.decided_at or self._clock())
        if state is ApprovalState.EXPIRED:
            return text.expired_text(record.decided_at or self._clock())
        if state is ApprovalState.WITHDRAWN:
            return text.withdrawn_text(record.decided_by or "", record.decided_at or self._clock())
        if record.break_glass:
            return text.BREAK_GLASS_STATUS
        return (
            text.approved_text(record.approved_by, record.decided_at or self._clock())
            + "\n"
            + text.CLAIMED_STATUS
        )

    def summary(self, record: ApprovalRecord) -> str:
        request = record.request
        return text.summary_lines(
            requester_id=request.requester_id,
            username=request.username,
            role=str(request.role),
            project_ids=request.project_ids,
            projects=self._project_names(),
            expires_at=request.expires_at,
        )

    @staticmethod
    def words(record: ApprovalRecord) -> text.Words:
        """What people wrote about this request, shown as plain text beside the bot's own lines."""
        words: text.Words = ((text.REASON_LABEL, record.reason),)
        if record.denial_reason:
            words += ((text.DENIAL_LABEL, record.denial_reason),)
        return words

    def refresh_approvers(self, record: ApprovalRecord) -> None:
        controls = {ApprovalState.PENDING: "decide", ApprovalState.APPROVED: "withdraw"}.get(record.state)
        message = text.approval_request_message(
            record.id, self.summary(record), self.words(record), self.status(record) or None, controls
        )
        for channel, ts in self._store.messages(record.id, FOR_APPROVERS):
            self.update(channel, ts, message)

    def update_requester_messages(self, record: ApprovalRecord, status: str, control: str | None) -> None:
        message = text.requester_message(record.id, self.summary(record), self.words(record), status, control)
        for channel, ts in self._store.messages(record.id, FOR_REQUESTER):
            self.update(channel, ts, message)

    def tell_requester(self, record: ApprovalRecord, status: str, control: str | None) -> None:
        """Earlier DMs lose their controls; a new DM (which notifies) carries the news and the next one."""
        self.update_requester_messages(record, status, None)
        channel = self.dm_channel(record.request.requester_id)
        posted = (
            self.post(
                channel,
                text.requester_message(record.id, self.summary(record), self.words(record), status, control),
            )
            if channel
            else None
        )
        if posted:
            self._store.add_message(record.id, FOR_REQUESTER, *posted)

    def approver_channels(self, requester_id: str | None) -> list[str]:
        if self.approval.channel:
            return [self.approval.channel]
        people = set(self.approval.approvers.users)
        for group in self.approval.approvers.usergroups:
            try:
                people.update(self._slack.usergroups_users_list(usergroup=group)["users"] or ())
            except (SlackClientError, OSError, KeyError, TypeError) as error:
                log.warning("Could not list approver group %s: %s", group, type(error).__name__)
        people.discard(requester_id)
        return [channel for person in sorted(people) if (channel := self.dm_channel(person))]

    def dm_channel(self, user_id: str) -> str | None:
        try:
            return self._slack.conversations_open(users=user_id)["channel"]["id"]
        except (SlackClientError, OSError, KeyError, TypeError) as error:
            log.warning("Could not open a DM with %s: %s", user_id, type(error).__name__)
            return None

    def post(self, channel: str, message: dict[str, Any]) -> tuple[str, str] | None:
        try:
            response = self._slack.chat_postMessage(channel=channel, unfurl_links=False, **message)
            return response["channel"], response["ts"]
        except (SlackClientError, OSError, KeyError, TypeError) as error:
            log.warning("Could not post an approval message to %s: %s", channel, type(error).__name__)
            return None

    def update(self, channel: str, ts: str, message: dict[str, Any]) -> None:
        try:
            self._slack.chat_update(channel=channel, ts=ts, **message)
        except (SlackClientError, OSError) as error:
            log.info("Could not update approval message %s/%s: %s", channel, ts, type(error).__name__)
