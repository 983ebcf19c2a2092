"""What every approval step shares: the stored record judged by `bot.approve.states` under today's policy,
the background runner, and the audit lines.

A policy can change while requests wait (a restart with a new policy file). Each click therefore asks the
directory, now, which of the people who said yes are still approvers, and the state machine counts only
those, against max(stored, today's) `approvals_needed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.approve import messages as text
from bot.approve.notices import ApprovalNotices
from bot.approve.states import Action, Refusal, TodaysPolicy, step
from bot.approve.store import ApprovalRecord, ApprovalStore
from bot.create import messages
from bot.create.flow import CreationFlow
from bot.jobs import ShuttingDown
from bot.manage.permissions import is_admin
from bot.models import Requester, SubmissionContext
from bot.policy.access import is_approver
from bot.policy.file import ApprovalPolicy

log = logging.getLogger(__name__)

_DECISIONS = (Action.APPROVE, Action.DENY, Action.WITHDRAW)  # clicks by approvers (or, to withdraw, admins)


@dataclass(frozen=True)
class Judgement:
    """A click judged against the stored record and today's policy."""

    record: ApprovalRecord | None
    sentence: str | None = None  # for the clicker when refused; None: the click may happen
    refusal: Refusal | None = None
    lapsed: frozenset[str] = frozenset()  # who said yes but is no approver today
    needed: int = 1  # today's approvals_needed


class ApprovalCore:
    def __init__(self, creation: CreationFlow, approval: ApprovalPolicy):
        self.creation = creation
        self.d = creation.d
        self.approval = approval
        self.store = ApprovalStore(self.d.store)
        self.notices = ApprovalNotices(
            slack=self.d.background_slack,  # every notice is sent after the ack
            store=self.store,
            approval=approval,
            clock=lambda: self.d.clock(),
            project_names=creation.audit.projects,
        )

    def _now(self) -> datetime:
        return self.d.clock()

    def _background(
        self, work: Callable[[], None], context: SubmissionContext, view_id: str, *, name: str | None = None
    ) -> None:
        """Run `work` off the listener pool; whatever happens, the requester hears one plain sentence."""

        def guarded() -> None:
            try:
                work()
            except Exception:
                # A bug or an unreachable database: a stored request keeps its state for the sweeper.
                log.exception("Approval work for view %s failed unexpectedly", view_id)
                self.creation.tell(
                    context, view_id, messages.UNEXPECTED_FAILURE.format(contact=self.d.policy.contact)
                )

        try:
            self.d.jobs.submit(
                name or f"approval:{view_id}",
                guarded,
                on_cancel=lambda: self.creation.tell(context, view_id, messages.RESTARTING),
            )
        except ShuttingDown:
            self.creation.tell(context, view_id, messages.RESTARTING)

    # --- judging -------------------------------------------------------------------------------------

    def _admitted(self, person: Requester) -> bool:
        return person.belongs_to(self.d.installation) or self.d.policy.admits_external(person)

    def _is_approver(self, person: Requester | None) -> bool:
        return is_approver(self.d.policy, person, installation=self.d.installation)

    def _today(self, record: ApprovalRecord) -> TodaysPolicy | None:
        """Who of those who said yes are approvers today; None when Slack could not tell for someone (a
        click then changes nothing, rather than counting or discarding a yes on a guess)."""
        still = set()
        for approver_id in record.approved_by:
            person = self.d.directory.try_requester(approver_id)
            if person is None:
                return None
            if self._is_approver(person):
                still.add(approver_id)
        return TodaysPolicy(still_approvers=frozenset(still), approvals_needed=self.approval.approvals_needed)

    def _judge(self, request_id: str, action: Action, user_id: str, *, recount: bool = True) -> Judgement:
        """The stored record, judged for this click. `recount`: ask the directory whether earlier approvers
        still are (False only where a trigger must be used within 3 s; the click is judged again later)."""
        record = self.store.get(request_id)
        if record is None:
            return Judgement(None, text.UNKNOWN_REQUEST)
        approver = admin = False
        if action in _DECISIONS and user_id != record.request.requester_id:
            clicker = self.d.directory.try_requester(user_id)
            if clicker is None:
                return Judgement(record, text.UNVERIFIED)
            approver = self._is_approver(clicker)
            admin = action is Action.WITHDRAW and self._admitted(clicker) and is_admin(self.d.policy, clicker)
        today = TodaysPolicy(approvals_needed=self.approval.approvals_needed)
        if recount and action in (Action.APPROVE, Action.CLAIM):
            today = self._today(record)
            if today is None:
                return Judgement(record, text.APPROVERS_UNVERIFIED)
        deadline = record.deadline()
        result = step(
            record.as_machine(),
            action,
            user_id,
            actor_is_approver=approver,
            actor_is_admin=admin,
            deadline_passed=deadline is not None and deadline <= self._now(),
            today=today,
        )
        approved_by = frozenset(record.approved_by)
        still = today.still_approvers if today.still_approvers is not None else approved_by
        lapsed = approved_by - still
        judged = Judgement(record, lapsed=lapsed, needed=today.approvals_needed)
        if result.allowed:
            return judged
        if result.refusal is Refusal.NOT_PENDING:
            sentence = text.lost_click_text(self.notices.status(record))
        else:
            sentence = text.REFUSALS[result.refusal]
        return Judgement(record, sentence, result.refusal, judged.lapsed, judged.needed)

    def _lost(self, request_id: str) -> str:
        current = self.store.get(request_id)
        return text.lost_click_text(self.notices.status(current)) if current else text.UNKNOWN_REQUEST

    # --- the audit channel ---------------------------------------------------------------------------

    def _announce(self, event: str, record: ApprovalRecord, actor_id: str | None) -> None:
        self.creation.audit.announce(self._announcement(event, record, actor_id))

    def _announcement(
        self, event: str, record: ApprovalRecord | None, actor_id: str | None
    ) -> dict[str, Any] | None:
        """The audit channel's line about a recorded step; None when the step did not happen."""
        if record is None:
            return None
        return text.audit_announcement(
            event, actor_id, self.notices.summary(record), self.notices.words(record)
        )
