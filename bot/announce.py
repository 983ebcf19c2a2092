"""The audit channel: a readable copy of what the database recorded (best effort), shared by creation and
the lifecycle flows."""

from __future__ import annotations

from typing import Any

from bot import messages
from bot.catalog import ProjectCatalog
from bot.delivery import SlackDelivery
from bot.jobs import JobRunner, ShuttingDown
from bot.policy import Policy
from bot.schema import StoredRequest


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


class AuditAnnouncer:
    def __init__(self, policy: Policy, delivery: SlackDelivery, jobs: JobRunner, catalog: ProjectCatalog):
        self._policy = policy
        self._delivery = delivery
        self._jobs = jobs
        self._catalog = catalog

    def projects(self) -> dict[int, Any]:
        snapshot = self._catalog.cached()
        return snapshot.by_id() if snapshot else {}

    def post(self, message: dict[str, Any]) -> None:
        announce(self._policy.audit_channel, message, delivery=self._delivery, jobs=self._jobs)

    def request_event(
        self,
        event: str,
        request: StoredRequest,
        *,
        detail: str | None = None,
        account: tuple[int, str | None] | None = None,
    ) -> None:
        """`account` names the account the event is about, when it is not the request's own."""
        account_id, full_username = account or (request.mixpanel_account_id, request.mixpanel_username)
        self.post(
            messages.audit_message(
                event=event,
                requester_id=request.requester_id,
                username=request.username,
                full_username=full_username,
                account_id=account_id,
                role=request.role,
                project_ids=request.project_ids,
                projects=self.projects(),
                expires_at=request.expires_at,
                detail=detail,
            )
        )
