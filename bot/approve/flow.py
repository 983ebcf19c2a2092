"""The approval flow: a privileged request waits for other people's yes, and the token is made on a click.

Every click is judged by `bot.approve.states.step` against the stored record (never the message) and today's
policy (`bot.approve.core`), then made with one compare-and-set in `bot.approve.store`; a click that loses is
told what happened. The requester's claim is `bot.approve.claim`'s. Creation itself, delivery and clean-up are
CreationFlow's: a claimed request is created like any other.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.approve import messages as text
from bot.approve.claim import ApprovalClaims
from bot.approve.states import Action, ApprovalState, Refusal, start
from bot.approve.store import ApprovalRecord
from bot.create.flow import CreationFlow, SubmitOutcome
from bot.create.form import parse_break_glass, parse_reason
from bot.create.views import BLOCK_REASON, update_ack
from bot.db.schema import AuditEvent, RequestState
from bot.db.store import AlreadyClaimed, OverQuota, StateMoved
from bot.models import AccountSpec, Requester, SubmissionContext, zone
from bot.policy.access import Decision, RefusalReason, within_quota
from bot.policy.file import ApprovalPolicy
from bot.slack.retry import BACKGROUND_RETRY_BUDGET, retry_budget

# Break glass makes an account nobody approved: it lives 24 hours from the submission, to the second.
BREAK_GLASS_LIFETIME = timedelta(hours=24)


class ApprovalFlow(ApprovalClaims):
    def __init__(self, creation: CreationFlow, approval: ApprovalPolicy):
        super().__init__(creation, approval)
        creation.approval_gate = self.gate

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
                requester_is_approver=self._is_approver(requester),
            )
            if not started.allowed:
                return SubmitOutcome(ack=update_ack(text.REFUSALS[Refusal.BREAK_GLASS_NOT_ALLOWED]))
            capped = _capped(spec, self._now() + BREAK_GLASS_LIFETIME)
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
        """Telling the other approvers is break glass's only check, so the account is made only once at
        least one of them (a DM, the approval channel, or the audit channel) has been told."""
        record = self._open(spec, reason, context, view_id, team_id, break_glass=True)
        if record is None:
            return
        requester_id = record.request.requester_id
        words = self.notices.words(record)
        notice = text.break_glass_notice(requester_id, self.notices.summary(record), words)
        announcement = self._announcement("break_glass", record, requester_id)
        # All notices share one 429 budget: STALE_REQUEST_SECONDS counts it before the create.
        with retry_budget(BACKGROUND_RETRY_BUDGET):
            told = sum(
                1
                for channel in self.notices.approver_channels(requester_id)
                if self.notices.post(channel, notice)
            )
            audit_channel = self.d.policy.audit_channel
            if audit_channel and announcement and self.notices.post(audit_channel, announcement):
                told += 1
        if told == 0:
            self._break_glass_refused(record, context, view_id)
            return
        self.creation.create(record.request, context, view_id)

    def _break_glass_refused(self, record: ApprovalRecord, context: SubmissionContext, view_id: str) -> None:
        # A lost compare-and-set: the sweeper took the stale request first; no create call was made.
        with contextlib.suppress(StateMoved):
            self.d.store.transition(
                record.id,
                RequestState.FAILED,
                expected=(RequestState.SUBMITTED,),
                event=AuditEvent.BREAK_GLASS_REFUSED,
                detail="no other approver could be told",
            )
        self.creation.tell(
            context, view_id, text.BREAK_GLASS_UNANNOUNCED.format(contact=self.d.policy.contact)
        )

    # --- clicks by approvers -------------------------------------------------------------------------

    def approve(self, request_id: str, user_id: str) -> str | None:
        """An approver's yes. Returns the sentence for the clicker alone, or None when it counted."""
        judged = self._judge(request_id, Action.APPROVE, user_id)
        if judged.sentence:
            return judged.sentence
        claim_ttl = timedelta(hours=self.approval.claim_ttl_hours)
        updated = self.creation.audit.record(
            lambda: self.store.approve(
                request_id,
                user_id,
                now=self._now(),
                claim_ttl=claim_ttl,
                lapsed=judged.lapsed,
                needed=judged.needed,
            ),
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
        return self._judge(request_id, Action.DENY, user_id).sentence

    def deny(self, request_id: str, user_id: str, reason: str) -> str | None:
        invalid = text.deny_reason_error(reason)  # the handler says it on the field; this is the last word
        if invalid:
            return invalid
        judged = self._judge(request_id, Action.DENY, user_id)
        if judged.sentence:
            return judged.sentence
        updated = self.creation.audit.record(
            lambda: self.store.deny(request_id, user_id, reason, now=self._now()),
            lambda updated: self._announcement("denied", updated, user_id),
        )
        if updated is None:
            return self._lost(request_id)
        self.notices.refresh_approvers(updated)
        self.notices.tell_requester(updated, self.notices.status(updated), None)
        return None

    def withdraw(self, request_id: str, user_id: str) -> str | None:
        """An approver or an admin takes back an approval the requester has not claimed yet."""
        judged = self._judge(request_id, Action.WITHDRAW, user_id)
        if judged.sentence:
            return judged.sentence
        updated = self.creation.audit.record(
            lambda: self.store.withdraw(request_id, user_id, now=self._now()),
            lambda updated: self._announcement("withdrawn", updated, user_id),
        )
        if updated is None:
            return self._lost(request_id)
        self.notices.refresh_approvers(updated)
        self.notices.tell_requester(updated, self.notices.status(updated), None)
        return None

    # --- clicks by the requester ---------------------------------------------------------------------

    def cancel(self, request_id: str, user_id: str) -> str | None:
        judged = self._judge(request_id, Action.CANCEL, user_id)
        if judged.sentence:
            return judged.sentence
        updated = self.creation.audit.record(
            lambda: self.store.cancel(request_id, user_id, now=self._now()),
            lambda updated: self._announcement("cancelled", updated, user_id),
        )
        if updated is None:
            return self._lost(request_id)
        self.notices.refresh_approvers(updated)
        self.notices.update_requester_messages(updated, self.notices.status(updated), None)
        return None

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


def _capped(spec: AccountSpec, latest: datetime) -> AccountSpec:
    """The same account (its destination included: a break glass still goes into the store), expiring when
    asked, or at `latest` (to the second, UTC) if that is sooner."""
    if spec.expires_at is not None and spec.expires_at <= latest:
        return spec
    latest = latest.replace(microsecond=0)
    return replace(spec, expires_on=latest.astimezone(zone(spec.timezone)).date(), expires_exactly=latest)
