"""The requester's Create and show token: re-check them, the account and the approvals, claim once, create,
show the credentials in the modal the click opened (or, if that is gone, privately as today).

An approved request whose approvals no longer suffice under today's policy is not claimed: it goes back to
pending (a compare-and-set, audited) and today's approvers are asked again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.approve import messages as text
from bot.approve.core import ApprovalCore, Judgement
from bot.approve.states import Action, Refusal
from bot.approve.store import ApprovalRecord
from bot.create import messages
from bot.create.views import status_view
from bot.db.schema import RequestState
from bot.models import AccountSpec, Requester, SubmissionContext, zone
from bot.slack.delivery import DeliveryOutcome

log = logging.getLogger(__name__)


class ApprovalClaims(ApprovalCore):
    def may_claim(self, request_id: str, user_id: str) -> str | None:
        """Before opening the modal: only the requester's click on an approved request goes further. The
        approvals are recounted after the modal is open (the directory may be slower than the trigger)."""
        return self._judge(request_id, Action.CLAIM, user_id, recount=False).sentence

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
        judged = self.judge_claim(request_id, user_id)
        record = judged.record
        if judged.refusal is Refusal.APPROVALS_LAPSED:
            self.d.delivery.update_view(view_id, status_view(judged.sentence or ""))
            return
        if judged.sentence or record is None:
            self.d.delivery.update_view(
                view_id, status_view(messages.failed_view_text(judged.sentence or ""))
            )
            return
        why = self._still_allowed(record)
        if why is not None:
            self.creation._refuse(user_id, f"claim refused: {why}")  # stored, and told to the audit channel
            sentence = text.CLAIM_REFUSED.format(why=why, contact=self.d.policy.contact)
            self.d.delivery.update_view(view_id, status_view(sentence))
            return
        claimed = self.creation.audit.record(
            lambda: self.store.claim(
                request_id, user_id, now=self._now(), lapsed=judged.lapsed, needed=judged.needed
            ),
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

    def judge_claim(self, request_id: str, user_id: str) -> Judgement:
        """A claim judged under today's policy: the approvals recounted (only people who are approvers now,
        against max(stored, today's) approvals_needed). One whose approvals lapsed is reopened here, so that
        every claimer (the requester's click, a rotation) sends it back to today's approvers the same way.
        Claim only when the sentence is None, passing on `lapsed` and `needed` to the store's claim."""
        judged = self._judge(request_id, Action.CLAIM, user_id)
        if judged.refusal is Refusal.APPROVALS_LAPSED and judged.record is not None:
            self._reopen(judged.record, judged)
        return judged

    def _reopen(self, record: ApprovalRecord, judged: Judgement) -> None:
        """Approved → pending under today's policy; today's approvers are asked again, the requester told."""
        now = self._now()
        reopened = self.creation.audit.record(
            lambda: self.store.reopen(
                record.id,
                lapsed=judged.lapsed,
                needed=judged.needed,
                now=now,
                decide_by=now + timedelta(hours=self.approval.request_ttl_hours),
            ),
            lambda reopened: self._announcement("reopened", reopened, None),
        )
        if reopened is None:  # moved meanwhile (withdrawn, expired): that step told everyone
            return
        self.notices.refresh_approvers(reopened)
        self.notices.ask_approvers(reopened)
        status = text.reopened_text(len(reopened.approved_by), reopened.approvals_needed)
        self.notices.tell_requester(reopened, status, "cancel")

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
