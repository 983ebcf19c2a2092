"""The approval flow: a privileged request waits for other people's yes, and the token is made on a click.

Every click is judged by `bot.approve.states.step` against the stored record (never the message), then
made with one compare-and-set in `bot.approve.store`; a click that loses is told what happened. Creation
itself, delivery and clean-up are CreationFlow's: a claimed request is created like any other, its
credentials shown in the modal the click opened (or, if that is gone, privately as today).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.approve import messages as text
from bot.approve.notices import ApprovalNotices
from bot.approve.states import Action, ApprovalState, Refusal, start, step
from bot.approve.store import ApprovalRecord, ApprovalStore
from bot.create import messages
from bot.create.flow import CreationFlow, SubmitOutcome
from bot.create.form import parse_break_glass, parse_reason
from bot.create.views import BLOCK_REASON, status_view, update_ack
from bot.db.schema import RequestState
from bot.db.store import AlreadyClaimed, OverQuota
from bot.jobs import ShuttingDown
from bot.models import AccountSpec, Requester, SubmissionContext, today_in, zone
from bot.policy.access import Decision, RefusalReason, is_approver, within_quota
from bot.policy.file import ApprovalPolicy
from bot.slack.delivery import DeliveryOutcome
from bot.slack.retry import BACKGROUND_RETRY_BUDGET, retry_budget

log = logging.getLogger(__name__)

BREAK_GLASS_DAYS = 1


class ApprovalFlow:
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
        creation.approval_gate = self.gate

    def _now(self) -> datetime:
        return self.d.clock()

    # --- the submission ------------------------------------------------------------------------------

    def gate(
        self,
        *,
        spec: AccountSpec,
        decision: Decision,
        requester: Requester,
        context: SubmissionContext,
        view_id: str,
        team_id: str | None,
        values: dict[str, Any],
    ) -> SubmitOutcome | None:
        """Take over a submission that needs approval; None lets creation go ahead as usual."""
        if not decision.needs_approval:
            return None
        reason = parse_reason(values)
        if not reason:
            return SubmitOutcome(
                ack={"response_action": "errors", "errors": {BLOCK_REASON: text.REASON_REQUIRED}}
            )
        if parse_break_glass(values):
            started = start(
                requester.user_id,
                self.approval.approvals_needed,
                break_glass=True,
                break_glass_enabled=self.approval.break_glass,
                requester_is_approver=is_approver(self.d.policy, requester, installation=self.d.installation),
            )
            if not started.allowed:
                return SubmitOutcome(ack=update_ack(text.REFUSALS[Refusal.BREAK_GLASS_NOT_ALLOWED]))
            capped = _capped(
                spec, today_in(requester.timezone, self._now()) + timedelta(days=BREAK_GLASS_DAYS)
            )
            return SubmitOutcome(
                ack=update_ack(text.break_glass_view_text(spec.username)),
                start=lambda: self._background(
                    lambda: self._break_glass(capped, reason, context, view_id, team_id), context, view_id
                ),
            )
        if self._too_few_other_approvers(requester.user_id):
            self.creation._refuse(requester.user_id, "too few approvers other than the requester", spec)
            return SubmitOutcome(
                ack=update_ack(
                    text.too_few_approvers_text(self.approval.approvals_needed, self.d.policy.contact)
                )
            )
        return SubmitOutcome(
            ack=update_ack(
                text.pending_view_text(
                    spec.username, text.people(self.approval.approvers), self.approval.approvals_needed
                )
            ),
            start=lambda: self._background(
                lambda: self._request(spec, reason, context, view_id, team_id), context, view_id
            ),
        )

    def _too_few_other_approvers(self, requester_id: str) -> bool:
        """Nobody decides their own request: when the approvers are listed by name alone (no user group,
        which would need Slack to count), an approver's own request may lack enough other approvers.
        Start-up refuses only what is impossible for everyone; this is impossible for this person."""
        approvers = self.approval.approvers
        if approvers.usergroups:
            return False
        return len(set(approvers.users) - {requester_id}) < self.approval.approvals_needed

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

    def _open(self, spec, reason, context, view_id, team_id, *, break_glass: bool):
        now = self._now()
        opened = self.store.open(
            submission_key=view_id,
            requester_id=context.user_id,
            team_id=team_id,
            channel_id=context.channel_id,
            spec=spec,
            reason=reason,
            approvals_needed=self.approval.approvals_needed,
            decide_by=now + timedelta(hours=self.approval.request_ttl_hours),
            within_quota=lambda recent: within_quota(self.d.policy, recent),
            now=now,
            break_glass=break_glass,
            replaces_request_id=context.replaces_request_id,  # Replace…: keep the link through approval
        )
        if isinstance(opened, AlreadyClaimed):
            return None
        if isinstance(opened, OverQuota):
            self.creation._refuse(context.user_id, str(RefusalReason.RATE_LIMITED), spec)
            self.creation.tell(context, view_id, self.creation._refusal_reply(RefusalReason.RATE_LIMITED))
            return None
        return self.store.get(opened.request.id)

    def _request(self, spec, reason, context, view_id, team_id) -> None:
        record = self._open(spec, reason, context, view_id, team_id, break_glass=False)
        if record is None:
            return
        self._announce("approval_requested", record, record.request.requester_id)
        if self.notices.ask_approvers(record) == 0:
            self._unreachable(record, context, view_id)
            return
        self.notices.tell_requester(record, text.waiting_text(text.people(self.approval.approvers)), "cancel")

    def _unreachable(self, record: ApprovalRecord, context: SubmissionContext, view_id: str) -> None:
        """Neither the approval channel nor any approver's DM took the request: nobody would ever decide
        it. End it now (as expired: nothing was created), say so in the audit channel, and tell the
        requester in the modal and privately what happened and what to do."""
        ended = self.store.unreachable(record.id, now=self._now())
        if ended is None:  # settled meanwhile (cancelled by the requester): nothing to undo
            return
        self._announce("unreachable", ended, None)
        sentence = text.UNREACHABLE.format(contact=self.d.policy.contact)
        self.creation.tell(context, view_id, sentence)

    def _break_glass(self, spec, reason, context, view_id, team_id) -> None:
        record = self._open(spec, reason, context, view_id, team_id, break_glass=True)
        if record is None:
            return
        notice = text.break_glass_notice(record.request.requester_id, self.notices.summary(record))
        # All notices share one 429 budget: STALE_REQUEST_SECONDS counts it before the create.
        with retry_budget(BACKGROUND_RETRY_BUDGET):
            for channel in self.notices.approver_channels(record.request.requester_id):
                self.notices.post(channel, notice)
        self._announce("break_glass", record, record.request.requester_id)
        self.creation.create(record.request, context, view_id)

    # --- clicks by approvers -------------------------------------------------------------------------

    def _judge(
        self, request_id: str, action: Action, user_id: str
    ) -> tuple[ApprovalRecord | None, str | None]:
        """The stored record, and the sentence refusing this click (None: it may happen)."""
        record = self.store.get(request_id)
        if record is None:
            return None, text.UNKNOWN_REQUEST
        approver = False
        if action in (Action.APPROVE, Action.DENY) and user_id != record.request.requester_id:
            clicker = self.d.directory.try_requester(user_id)
            if clicker is None:
                return record, text.UNVERIFIED
            approver = is_approver(self.d.policy, clicker, installation=self.d.installation)
        deadline = record.deadline()
        result = step(
            record.as_machine(),
            action,
            user_id,
            actor_is_approver=approver,
            deadline_passed=deadline is not None and deadline <= self._now(),
        )
        if result.allowed:
            return record, None
        if result.refusal is Refusal.NOT_PENDING:
            return record, text.lost_click_text(self.notices.status(record))
        return record, text.REFUSALS[result.refusal]

    def approve(self, request_id: str, user_id: str) -> str | None:
        """An approver's yes. Returns the sentence for the clicker alone, or None when it counted."""
        _record, refusal = self._judge(request_id, Action.APPROVE, user_id)
        if refusal:
            return refusal
        claim_ttl = timedelta(hours=self.approval.claim_ttl_hours)
        updated = self.creation.audit.record(
            lambda: self.store.approve(request_id, user_id, now=self._now(), claim_ttl=claim_ttl),
            lambda updated: self._announcement("approved", updated, user_id),
        )
        if updated is None:
            return self._lost(request_id)
        self.notices.refresh_approvers(updated)
        if updated.state is ApprovalState.APPROVED:
            self.notices.tell_requester(
                updated, text.claimable_text(updated.approved_by, updated.claim_by), "claim"
            )
        return None

    def may_deny(self, request_id: str, user_id: str) -> str | None:
        return self._judge(request_id, Action.DENY, user_id)[1]

    def deny(self, request_id: str, user_id: str, reason: str) -> str | None:
        _record, refusal = self._judge(request_id, Action.DENY, user_id)
        if refusal:
            return refusal
        updated = self.creation.audit.record(
            lambda: self.store.deny(request_id, user_id, reason, now=self._now()),
            lambda updated: self._announcement("denied", updated, user_id, reason),
        )
        if updated is None:
            return self._lost(request_id)
        self.notices.refresh_approvers(updated)
        self.notices.tell_requester(updated, self.notices.status(updated), None)
        return None

    def _lost(self, request_id: str) -> str:
        current = self.store.get(request_id)
        return text.lost_click_text(self.notices.status(current)) if current else text.UNKNOWN_REQUEST

    # --- clicks by the requester ---------------------------------------------------------------------

    def cancel(self, request_id: str, user_id: str) -> str | None:
        _record, refusal = self._judge(request_id, Action.CANCEL, user_id)
        if refusal:
            return refusal
        updated = self.creation.audit.record(
            lambda: self.store.cancel(request_id, user_id, now=self._now()),
            lambda updated: self._announcement("cancelled", updated, user_id),
        )
        if updated is None:
            return self._lost(request_id)
        self.notices.refresh_approvers(updated)
        self.notices.update_requester_messages(updated, self.notices.status(updated), None)
        return None

    def may_claim(self, request_id: str, user_id: str) -> str | None:
        """Before opening the modal: only the requester's click on an approved request goes further."""
        return self._judge(request_id, Action.CLAIM, user_id)[1]

    def start_claim(self, request_id: str, user_id: str, view_id: str, context: SubmissionContext) -> None:
        """Off the listener pool: creation may take as long as Mixpanel does."""
        self._background(
            lambda: self.claim(request_id, user_id, view_id, context),
            context,
            view_id,
            name=f"claim:{request_id}",
        )

    def claim(self, request_id: str, user_id: str, view_id: str, context: SubmissionContext) -> None:
        """The requester clicked and a modal is open: re-check them, claim once, create, show it there."""
        record, refusal = self._judge(request_id, Action.CLAIM, user_id)
        if refusal:
            self.d.delivery.update_view(view_id, status_view(messages.failed_view_text(refusal)))
            return
        why = self._still_allowed(record)
        if why is not None:
            self.d.store.record_refusal(user_id, f"claim refused: {why}")
            sentence = text.CLAIM_REFUSED.format(why=why, contact=self.d.policy.contact)
            self.d.delivery.update_view(view_id, status_view(sentence))
            return
        claimed = self.creation.audit.record(
            lambda: self.store.claim(request_id, user_id, now=self._now()),
            lambda claimed: self._announcement("claimed", claimed, user_id),
        )
        if claimed is None:
            self.d.delivery.update_view(view_id, status_view(self._lost(request_id)))
            return
        try:
            self.creation.create(
                claimed.request,
                context,
                view_id,
                deliver=lambda message: self._to_modal(view_id, context, message),
            )
        except Exception:
            # The claim is recorded, so the sweeper settles the request (deleting any account made).
            log.exception("Creating the account for approved request %s failed unexpectedly", request_id)
            sentence = messages.UNEXPECTED_FAILURE.format(contact=self.d.policy.contact)
            self.d.delivery.update_view(view_id, status_view(messages.failed_view_text(sentence)))
        final = self.store.get(request_id)
        if final is not None:
            status = (
                text.created_for_requester_text(final.request.mixpanel_username)
                if final.request.state is RequestState.DELIVERED
                else text.CLAIM_NOT_COMPLETED
            )
            self.notices.update_requester_messages(final, status, None)
            self.notices.refresh_approvers(final)

    def _still_allowed(self, record: ApprovalRecord) -> str | None:
        """Re-apply the policy to the person and the account as they are now (quota: counted when made).
        Returns why not, or None."""
        requester = self.d.directory.try_requester(record.request.requester_id)
        if requester is None:
            return text.WHY_UNVERIFIED
        _, decision = self.creation.judge(
            requester.user_id, self._spec_of(record, requester), requester=requester, recent_creations=0
        )
        if decision.refusal is not None:
            return text.WHY_REFUSED[decision.refusal]
        if decision.violations:
            return "; ".join(violation.message.rstrip(".") for violation in decision.violations)
        return None

    @staticmethod
    def _spec_of(record: ApprovalRecord, requester: Requester) -> AccountSpec:
        request = record.request
        expires_on = (
            request.expires_at.astimezone(zone(requester.timezone)).date() if request.expires_at else None
        )
        return AccountSpec(
            username=request.username,
            role=request.role,
            project_ids=request.project_ids,
            expires_on=expires_on,
            timezone=requester.timezone,
            # Judged with where the token will go: a store may be required, or no longer open to them.
            destination=request.destination,
            secret_name=request.secret_name,
        )

    def _to_modal(self, view_id: str, context: SubmissionContext, message: dict[str, Any]) -> DeliveryOutcome:
        """Show the credentials in the claim modal; if it is gone, privately as for any creation."""
        try:
            self.d.background_slack.views_update(view_id=view_id, view=text.credentials_view(message))
            return DeliveryOutcome(path="modal")
        except (SlackClientError, OSError) as error:
            failure = f"views.update: {type(error).__name__}"
        outcome = self.d.delivery.to_requester(context, message)
        outcome.failures.insert(0, failure)
        return outcome

    # --- expiry and reminders --------------------------------------------------------------------------

    def expire_due(self) -> int:
        """Expire overdue requests; each expiry is a compare-and-set, so one instance does each."""
        now = self._now()
        expired = 0
        for request_id in self.store.overdue(now):
            record = self.creation.audit.record(
                lambda request_id=request_id: self.store.expire(request_id, now=now),
                lambda record: self._announcement("expired", record, None),
            )
            if record is None:
                continue
            expired += 1
            self.notices.refresh_approvers(record)
            self.notices.tell_requester(record, self.notices.status(record), None)
        return expired

    def remind_due(self) -> int:
        """One reminder per request, in the thread of each approvers' post, mentioning the approvers."""
        if self.approval.remind_after_hours is None:
            return 0
        now = self._now()
        reminded = 0
        for request_id in self.store.reminders_due(now, timedelta(hours=self.approval.remind_after_hours)):
            if not self.store.take_reminder(request_id, now=now):
                continue
            reminded += 1
            self.notices.remind(request_id)
        return reminded

    def _announce(
        self, event: str, record: ApprovalRecord, actor_id: str | None, detail: str | None = None
    ) -> None:
        self.creation.audit.announce(
            text.audit_announcement(event, actor_id, self.notices.summary(record), detail)
        )

    def _announcement(
        self, event: str, record: ApprovalRecord | None, actor_id: str | None, detail: str | None = None
    ) -> dict[str, Any] | None:
        """The audit channel's line about a recorded step; None when the step did not happen."""
        if record is None:
            return None
        return text.audit_announcement(event, actor_id, self.notices.summary(record), detail)


def _capped(spec: AccountSpec, latest: date) -> AccountSpec:
    """The same account (its destination included: a break glass still goes into the store) ending by
    `latest` at the latest."""
    expires_on = latest if spec.expires_on is None or spec.expires_on > latest else spec.expires_on
    return replace(spec, expires_on=expires_on)
