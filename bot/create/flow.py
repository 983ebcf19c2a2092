"""The create flow, from the typed command to a stored request: the form, the submission, the policy
decision and the claim. Creating the account and delivering its token is bot/create/account.py.

Invariants (see docs/guarantees.md):
- One view submission makes at most one account, across threads and processes.
- Every refusal is recorded (bot/audit/trail.py); the requester hears one plain sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.audit.trail import AuditTrail
from bot.create import messages
from bot.create.account import AccountCreation
from bot.create.cleanup import Cleanup, CleanupDependencies
from bot.create.form import errors_by_block, parse_submission
from bot.create.orphans import OrphanRecords
from bot.create.views import (
    BLOCK_SECRET_NAME,
    creation_view,
    decode_metadata,
    encode_metadata,
    filter_project_options,
    loading_view,
    offered_projects,
    status_view,
    update_ack,
)
from bot.db.schema import RequestState, StoredRequest
from bot.db.store import AlreadyClaimed, OverQuota
from bot.dependencies import FlowDependencies
from bot.destinations.base import DestinationError
from bot.jobs import ShuttingDown
from bot.mixpanel.catalog import OrganizationUnknown, Snapshot
from bot.mixpanel.client import MixpanelError
from bot.models import AccountSpec, Requester, SubmissionContext, today_in
from bot.policy.access import (
    Decision,
    Entitlement,
    FormField,
    RefusalReason,
    break_glass_offered,
    decide,
    within_quota,
)
from bot.slack.retry import BACKGROUND_RETRY_BUDGET, retry_budget, time_left

# A submission reaching a process whose project list is still loading waits for it this long at most, and
# never into the last ACK_MARGIN of the trigger window's budget (handlers/submission.py).
CATALOG_WAIT = 1.5
ACK_MARGIN = 0.5

log = logging.getLogger(__name__)

# How long the submission's ack waits for a destination to say whether a secret name is taken.
SECRET_LOOKUP_SECONDS = 1.5


@dataclass
class CommandOutcome:
    """What the command handler should say in the channel, if anything (the modal is opened here)."""

    reply: str | None = None


@dataclass
class SubmitOutcome:
    ack: dict[str, Any]
    start: Callable[[], None] | None = None  # run after the ack, so the final view update wins


# Given a valid submission, takes it over (the ack to send) when it needs approval or breaks glass.
ApprovalGate = Callable[..., "SubmitOutcome | None"]


class CreationFlow:
    def __init__(self, deps: FlowDependencies):
        self.d = deps
        self.audit = AuditTrail(deps.store, deps.policy, deps.delivery, deps.jobs, deps.catalog)
        self.cleanup = Cleanup(
            CleanupDependencies(
                store=deps.store,
                orphans=OrphanRecords(deps.store),
                mixpanel=deps.mixpanel,
                catalog=deps.catalog,
                audit=self.audit,
                contact=deps.policy.contact,
                reconcile_delays=deps.reconcile_delays,
                recheck_for=deps.uncertain_recheck,
                clock=lambda: self.d.clock(),
                pause=lambda seconds: self.d.pause(seconds),
                destinations=deps.destinations,
                tell_user=lambda user_id, text: self.d.delivery.tell_user(user_id, {"text": text}),
            )
        )
        self.account_creation = AccountCreation(deps, self.audit, self.cleanup)
        # Creating the stored request's account and delivering its token (bot/create/account.py).
        self.create = self.account_creation.create
        self.approval_gate: ApprovalGate | None = None  # set by bot.approve.flow when approval is configured
        # Asks a destination whether a secret name is taken, within the submission's ack.
        self._lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix="secret-lookup")

    @property
    def _contact(self) -> str:
        return self.d.policy.contact

    # --- who may ------------------------------------------------------------------------------------

    def judge(
        self,
        user_id: str,
        spec: AccountSpec | None = None,
        *,
        requester: Requester | None = None,
        recent_creations: int | None = None,
        patient: bool = False,
        catalog: Snapshot | None = None,
    ) -> tuple[Requester | None, Decision]:
        """Look the person up (unless already known) and apply the one policy decision. `catalog`: the
        organization's projects the spec is checked against (default: the cached ones, if any)."""
        if requester is None:
            requester = self.d.directory.try_requester(user_id, patient=patient)
        if recent_creations is None:
            recent_creations = self.d.store.recent_count(user_id, now=self.d.clock())
        snapshot = catalog or (self.d.catalog.cached() if spec is not None else None)
        decision = decide(
            self.d.policy,
            requester,
            spec,
            installation=self.d.installation,
            today=today_in(requester.timezone if requester else "UTC", self.d.clock()),
            recent_creations=recent_creations,
            known_project_ids=[p.id for p in snapshot.projects] if snapshot else None,
        )
        return requester, decision

    def _refusal_reply(self, reason: RefusalReason) -> str:
        return messages.refusal_text(
            reason, contact=self._contact, quota=self.d.policy.rate_limit.per_user_per_day
        )

    def _refuse(self, user_id: str, reason: str, spec: AccountSpec | None = None) -> None:
        self.audit.refusal(user_id, reason, spec, now=self.d.clock())

    # --- the slash command -----------------------------------------------------------------------------

    def open_form(self, *, trigger_id: str, context: SubmissionContext) -> CommandOutcome:
        requester, decision = self.judge(context.user_id)
        if requester is None:
            # Slack could not answer within the trigger's 3 s (a 429 asking for a second or two): open
            # the modal while the trigger lives, and ask again after the ack, with more patience.
            return self._open_then_judge(trigger_id, context)
        if requester is None or decision.entitlement is None or decision.refusal is not None:
            reason = decision.refusal or RefusalReason.UNVERIFIED
            self._refuse(context.user_id, str(reason))
            return CommandOutcome(reply=self._refusal_reply(reason))
        entitlement = decision.entitlement
        metadata = encode_metadata(context)
        snapshot = self.d.catalog.cached()
        if snapshot is not None:
            if self._open(trigger_id, self._form(requester, entitlement, snapshot, metadata)) is None:
                return CommandOutcome(reply=messages.FORM_NOT_OPENED)
            return CommandOutcome()
        # Nothing cached yet: the trigger dies in 3 s, so open a placeholder before asking Mixpanel.
        opened = self._open(trigger_id, loading_view(metadata))
        if opened is None:
            return CommandOutcome(reply=messages.FORM_NOT_OPENED)

        def complete_the_form() -> None:
            try:
                # Joins the fetch already in flight (the start-up warm-up, or another cold form's).
                snapshot = self.d.catalog.get()
            except (MixpanelError, OrganizationUnknown) as error:
                log.warning("Could not load Mixpanel projects for the form: %s", error)
                snapshot = None
            self.d.delivery.update_view(opened, self._form(requester, entitlement, snapshot, metadata))

        # Off the listener pool: a slow or unreachable Mixpanel must not hold up other people's acks.
        try:
            self.d.jobs.submit("load-projects", complete_the_form)
        except ShuttingDown:
            self.d.delivery.update_view(opened, status_view(messages.failed_view_text(messages.RESTARTING)))
        return CommandOutcome()

    def _open_then_judge(self, trigger_id: str, context: SubmissionContext) -> CommandOutcome:
        """The modal opens first; the person is judged after the ack, with the background's 429 budget,
        and the modal shows the form or the refusal."""
        metadata = encode_metadata(context)
        opened = self._open(trigger_id, loading_view(metadata))
        if opened is None:
            return CommandOutcome(reply=messages.FORM_NOT_OPENED)

        def judge_then_fill() -> None:
            with retry_budget(BACKGROUND_RETRY_BUDGET):
                requester, decision = self.judge(context.user_id, patient=True)
            if requester is None or decision.entitlement is None or decision.refusal is not None:
                reason = decision.refusal or RefusalReason.UNVERIFIED
                self._refuse(context.user_id, str(reason))
                self.tell(context, opened, self._refusal_reply(reason))  # privately, and in the modal
                return
            try:
                snapshot = self.d.catalog.get()  # cached, or joins the fetch in flight
            except (MixpanelError, OrganizationUnknown) as error:
                log.warning("Could not load Mixpanel projects for the form: %s", error)
                snapshot = None
            self.d.delivery.update_view(
                opened, self._form(requester, decision.entitlement, snapshot, metadata)
            )

        try:
            self.d.jobs.submit("judge-and-fill-form", judge_then_fill)
        except ShuttingDown:
            self.d.delivery.update_view(opened, status_view(messages.failed_view_text(messages.RESTARTING)))
        return CommandOutcome()

    def answer(self, context: SubmissionContext, sentence: str) -> None:
        """Tell the requester one plain sentence, privately, off the listener pool (Slack may ask us to
        wait before it takes the message)."""
        try:
            self.d.jobs.submit("answer", lambda: self.d.delivery.to_requester(context, {"text": sentence}))
        except ShuttingDown:
            self.d.delivery.to_requester(context, {"text": sentence})

    def _open(self, trigger_id: str, view: dict[str, Any]) -> str | None:
        """The opened view's id ("" if Slack did not say), or None if it could not be opened."""
        try:
            response = self.d.slack.views_open(trigger_id=trigger_id, view=view)
            return (response.get("view") or {}).get("id", "")
        except (SlackClientError, OSError) as error:
            log.warning("views.open failed: %s", type(error).__name__)
            return None

    def _form(
        self, requester: Requester, entitlement: Entitlement, snapshot: Snapshot | None, metadata: str
    ) -> dict:
        return creation_view(
            entitlement=entitlement,
            projects=snapshot.projects if snapshot else None,
            today=today_in(requester.timezone, self.d.clock()),
            metadata=metadata,
            projects_unavailable_text=messages.PROJECTS_UNAVAILABLE.format(contact=self._contact),
            no_projects_text=messages.NO_PROJECTS.format(contact=self._contact),
            offer_break_glass=break_glass_offered(self.d.policy, requester),
        )

    def project_options(self, user_id: str, query: str) -> list[dict[str, Any]]:
        """Options for the external project select: only what this person may choose."""
        # Asked on every keystroke; the quota does not change which projects may be chosen, so skip its read.
        requester, decision = self.judge(user_id, recent_creations=0)
        snapshot = self.d.catalog.cached()
        if decision.entitlement is None or requester is None or snapshot is None:
            return []
        return filter_project_options(offered_projects(snapshot.projects, decision.entitlement), query)

    # --- the submission ------------------------------------------------------------------------------

    def submit(
        self,
        *,
        view_id: str,
        values: dict[str, Any],
        private_metadata: str | None,
        user_id: str,
        team_id: str | None,
    ) -> SubmitOutcome:
        context = decode_metadata(private_metadata)
        if context is None or context.user_id != user_id:
            # Slack echoes our own metadata back; a mismatch means the payload was not ours.
            self._refuse(user_id, "submission metadata did not match the requester")
            return SubmitOutcome(ack=update_ack(messages.failed_view_text(messages.FORM_INVALID)))
        if context.replaces_request_id and not self.d.may_replace(user_id, context.replaces_request_id):
            return SubmitOutcome(ack=update_ack(messages.failed_view_text(messages.FORM_INVALID)))
        existing, recent = self.d.store.submission_status(view_id, user_id, now=self.d.clock())
        if existing is not None:
            # A double click or a retried delivery: answer with what happened to the first one.
            return SubmitOutcome(ack=update_ack(self._status_of(existing)))
        requester = self.d.directory.try_requester(user_id)
        if requester is None:
            self._refuse(user_id, str(RefusalReason.UNVERIFIED))
            return SubmitOutcome(ack=update_ack(self._refusal_reply(RefusalReason.UNVERIFIED)))
        parsed = parse_submission(values, timezone=requester.timezone)
        if parsed.spec is None:
            return SubmitOutcome(ack={"response_action": "errors", "errors": errors_by_block(parsed.errors)})
        spec = self._same_destination_as_replaced(parsed.spec, context)
        # A cold process (just started, or Mixpanel's /me failing) waits for the list only as long as the ack
        # allows; then it fails closed, since without the list a project of another organization could pass.
        catalog = self.d.catalog.within(min(CATALOG_WAIT, time_left() - ACK_MARGIN))
        if catalog is None:
            errors = errors_by_block({FormField.PROJECTS: messages.PROJECTS_NOT_CHECKED})
            return SubmitOutcome(ack={"response_action": "errors", "errors": errors})
        _, decision = self.judge(user_id, spec, requester=requester, recent_creations=recent, catalog=catalog)
        if decision.refusal is not None:
            self._refuse(user_id, str(decision.refusal), spec)
            return SubmitOutcome(ack=update_ack(self._refusal_reply(decision.refusal)))
        if decision.violations:
            self._refuse(user_id, "; ".join(v.message for v in decision.violations), spec)
            errors = {violation.field: violation.message for violation in reversed(decision.violations)}
            if FormField.DESTINATION in errors and spec.destination != parsed.spec.destination:
                # A Replace… goes where the old account went, shown as text, not as a choice: Slack shows
                # errors beside input blocks only, so say it in the modal.
                sentence = messages.REPLACE_DESTINATION_CLOSED.format(
                    destination=spec.destination, contact=self._contact
                )
                return SubmitOutcome(ack=update_ack(messages.failed_view_text(sentence)))
            return SubmitOutcome(ack={"response_action": "errors", "errors": errors_by_block(errors)})
        taken = self._secret_taken(spec, context)
        if taken is not None:
            self._refuse(user_id, taken, spec)
            return SubmitOutcome(ack={"response_action": "errors", "errors": {BLOCK_SECRET_NAME: taken}})
        if self.approval_gate is not None:
            gated = self.approval_gate(
                spec=spec,
                decision=decision,
                requester=requester,
                context=context,
                view_id=view_id,
                team_id=team_id,
                values=values,
            )
            if gated is not None:
                return gated
        # Storing the request takes the database's write lock; it happens after the ack, so that a busy
        # database never delays Slack's 3 s deadline. The claim re-checks duplicates and the quota atomically.
        return SubmitOutcome(
            ack=update_ack(messages.creating_text(spec.username)),
            start=lambda: self._start_creation(spec, context, view_id, team_id),
        )

    def _same_destination_as_replaced(self, spec: AccountSpec, context: SubmissionContext) -> AccountSpec:
        """A replacement of an account that went to a destination goes to the same secret, as a new version:
        taken from the stored record, never from the form."""
        old = self.d.store.get(context.replaces_request_id) if context.replaces_request_id else None
        if old is None or not old.destination:
            return spec
        return replace(spec, destination=old.destination, secret_name=old.secret_name)

    def _secret_taken(self, spec: AccountSpec, context: SubmissionContext) -> str | None:
        """The inline refusal of a secret name that exists already. Asked within the ack, so bounded: a store
        that cannot answer in time is asked again by the write itself, which never overwrites."""
        destination = self.d.destinations.get(spec.destination or "")
        if destination is None or not spec.secret_name or context.replaces_request_id:
            return None
        look = self._lookups.submit(destination.exists, spec.secret_name)
        try:
            exists = look.result(timeout=SECRET_LOOKUP_SECONDS)
        except (DestinationError, FutureTimeout) as error:
            log.info("Could not tell whether %s exists in %s: %s", spec.secret_name, destination.name, error)
            return None
        return messages.secret_taken_text(spec.secret_name, destination.name) if exists else None

    def _start_creation(
        self, spec: AccountSpec, context: SubmissionContext, view_id: str, team_id: str | None
    ) -> None:
        try:
            self.d.jobs.submit(
                f"create:{view_id}",
                lambda: self._create_guarded(spec, context, view_id, team_id),
                on_cancel=lambda: self.tell(context, view_id, messages.RESTARTING),
            )
        except ShuttingDown:
            self.tell(context, view_id, messages.RESTARTING)

    def _status_of(self, request: StoredRequest) -> str:
        if request.state is RequestState.DELIVERED and request.mixpanel_username:
            return messages.done_text(request.mixpanel_username)
        return messages.already_submitted_text()

    # --- the background part ---------------------------------------------------------------------------

    def _create_guarded(
        self, spec: AccountSpec, context: SubmissionContext, view_id: str, team_id: str | None
    ) -> None:
        try:
            request = self._claim(spec, context, view_id, team_id)
            if request is not None:
                self.create(request, context, view_id)
        except Exception:
            # A bug or an unreachable database. A stored request keeps its state, so the sweeper settles it
            # (deleting any account whose token is now lost); the requester hears something plain.
            log.exception("Creating the account for view %s failed unexpectedly", view_id)
            self.tell(context, view_id, messages.UNEXPECTED_FAILURE.format(contact=self._contact))

    def _claim(
        self, spec: AccountSpec, context: SubmissionContext, view_id: str, team_id: str | None
    ) -> StoredRequest | None:
        """Store the submission once, within the quota, atomically across threads and instances."""
        claim = self.d.store.claim(
            submission_key=view_id,
            requester_id=context.user_id,
            team_id=team_id,
            channel_id=context.channel_id,
            spec=spec,
            within_quota=lambda recent: within_quota(self.d.policy, recent),
            now=self.d.clock(),
            replaces_request_id=context.replaces_request_id,
        )
        if isinstance(claim, AlreadyClaimed):
            return None  # the first submission's job owns the request and the modal
        if isinstance(claim, OverQuota):
            self._refuse(context.user_id, str(RefusalReason.RATE_LIMITED), spec)
            self.tell(context, view_id, self._refusal_reply(RefusalReason.RATE_LIMITED))
            return None
        return claim.request

    # --- recovery after a crash ---------------------------------------------------------------------

    def sweep_stale(self, idle_for: timedelta) -> int:
        """Settle what interrupted runs left behind (see bot.create.cleanup). Returns the count settled."""
        return self.cleanup.sweep(idle_for)

    def tell(self, context: SubmissionContext, view_id: str | None, sentence: str) -> None:
        """One plain sentence to the requester, privately and in the modal."""
        self.account_creation.tell(context, view_id, sentence)
