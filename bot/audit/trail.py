"""The audit trail: what happened is written to the database (the record), then told to the audit channel
(a readable copy, best effort). One seam for every flow: creation, cleanup, the lifecycle and approvals.

The database write carries the event in the same transaction as the transition it records (see
`Store.transition(..., event=...)`, `ApprovalStore`, `LifecycleStore`); the announcement follows only once
that write has committed, so the channel never tells of something the database does not hold.

Refusals: every one is stored; the audit channel hears of at most one per person per interval. The throttle
is decided by the database in the refusal's own write (see `Store.record_refusal`), so the processes and
instances that share it agree: a per-process memory would let each of them announce.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bot.create import messages
from bot.db.schema import StoredRequest
from bot.db.store import Store
from bot.jobs import JobRunner, ShuttingDown
from bot.mixpanel.catalog import ProjectCatalog
from bot.models import AccountSpec
from bot.policy.file import Policy
from bot.slack.delivery import SlackDelivery

REFUSAL_NOTICE_INTERVAL = timedelta(minutes=10)

T = TypeVar("T")
Message = dict[str, Any]


class AuditTrail:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        delivery: SlackDelivery,
        jobs: JobRunner,
        catalog: ProjectCatalog,
    ):
        self._store = store
        self._policy = policy
        self._delivery = delivery
        self._jobs = jobs
        self._catalog = catalog

    def projects(self) -> dict[int, Any]:
        snapshot = self._catalog.cached()
        return snapshot.by_id() if snapshot else {}

    def record(
        self, write: Callable[[], T], announcement: Callable[[T], Message | None] | Message | None
    ) -> T:
        """Run `write` (which stores the event, with its transition where there is one), then announce what
        it recorded: `announcement` is the message, or makes it from the write's result (None: stay quiet).
        A write that raises announces nothing."""
        result = write()
        message = announcement(result) if callable(announcement) else announcement
        if message is not None:
            self.announce(message)
        return result

    def announce(self, message: Message) -> None:
        """Tell the audit channel about something already recorded: in the background (best effort: the
        database row is the record); inline while stopping."""
        channel = self._policy.audit_channel
        if not channel:
            return
        try:
            self._jobs.submit("announce", lambda: self._delivery.announce(channel, message))
        except ShuttingDown:
            self._delivery.announce(channel, message)

    def request_event(
        self,
        event: str,
        request: StoredRequest,
        *,
        detail: str | None = None,
        account: tuple[int, str | None] | None = None,
    ) -> None:
        """Announce a recorded event about a request. `account` names the account the event is about, when
        it is not the request's own."""
        self.announce(self.request_message(event, request, detail=detail, account=account))

    def request_message(
        self,
        event: str,
        request: StoredRequest,
        *,
        detail: str | None = None,
        account: tuple[int, str | None] | None = None,
    ) -> Message:
        account_id, full_username = account or (request.mixpanel_account_id, request.mixpanel_username)
        return messages.audit_message(
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

    def refusal(self, user_id: str, reason: str, spec: AccountSpec | None = None, *, now: datetime) -> None:
        """Store a refused creation; announce it unless the throttle keeps this one untold."""
        recorded = self._store.record_refusal(
            user_id,
            reason,
            spec,
            announce_every=REFUSAL_NOTICE_INTERVAL if self._policy.audit_channel else None,
            now=now,
        )
        if not recorded.announce:
            return
        self.announce(
            messages.audit_message(
                event="refused",
                requester_id=user_id,
                username=spec.username if spec else None,
                role=spec.role if spec else None,
                project_ids=spec.project_ids if spec else (),
                projects=self.projects(),
                expires_at=spec.expires_at if spec else None,
                detail=reason,
                suppressed=recorded.suppressed,
            )
        )
