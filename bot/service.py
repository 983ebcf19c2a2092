"""The create flow, from the typed command to the delivered token, with every failure accounted for.

Invariants (see README, "Guarantees"):
- A token is written to exactly one place: the private message to its requester.
- Every account the bot creates is either delivered or deleted again.
- One view submission makes at most one account, across threads and processes.
- A create that ended ambiguously is never retried blindly: Mixpanel is asked what really happened.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot import messages
from bot.catalog import OrganizationUnknown, ProjectCatalog, Snapshot
from bot.delivery import DeliveryOutcome, SlackDelivery
from bot.directory import SlackDirectory
from bot.jobs import JobRunner, ShuttingDown
from bot.mixpanel import CreatedServiceAccount, MixpanelClient, MixpanelError, NewServiceAccount, ProjectGrant
from bot.models import AccountSpec, Requester, SubmissionContext, mixpanel_timestamp, today_in
from bot.policy import (
    Decision,
    Entitlement,
    Policy,
    RefusalReason,
    break_glass_offered,
    decide,
    within_quota,
)
from bot.redaction import redactor
from bot.storage import AlreadyClaimed, AuditEvent, OverQuota, RequestState, Store, StoredRequest
from bot.views import (
    creation_view,
    decode_metadata,
    encode_metadata,
    errors_by_block,
    filter_project_options,
    loading_view,
    offered_projects,
    parse_submission,
    status_view,
)

log = logging.getLogger(__name__)

# How far Mixpanel's clock may differ from ours when matching an ambiguous create to a listed account.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class CommandOutcome:
    """What the command handler should say in the channel, if anything (the modal is opened here)."""

    reply: str | None = None


@dataclass
class SubmitOutcome:
    ack: dict[str, Any]
    start: Callable[[], None] | None = None  # run after the ack, so the final view update wins


@dataclass
class FlowDependencies:
    policy: Policy
    store: Store
    mixpanel: MixpanelClient
    catalog: ProjectCatalog
    directory: SlackDirectory
    delivery: SlackDelivery
    slack: WebClient
    jobs: JobRunner
    public_host: str
    reconcile_delays: list[float] = field(default_factory=lambda: [0.0, 5.0, 30.0])
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Waits between reconciliation passes; False means the process is stopping.
    pause: Callable[[float], bool] = field(default=lambda seconds: time.sleep(seconds) is None)


# Given a valid submission, takes it over (the ack to send) when it needs approval or breaks glass.
ApprovalGate = Callable[..., "SubmitOutcome | None"]
# Shows a new account's credentials to its requester; the default is a private message.
Deliver = Callable[[dict[str, Any]], DeliveryOutcome]


class CreationFlow:
    def __init__(self, deps: FlowDependencies):
        self.d = deps
        self.approval_gate: ApprovalGate | None = None  # set by bot.approvals when approval is configured

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
    ) -> tuple[Requester | None, Decision]:
        """Look the person up (unless already known) and apply the one policy decision."""
        if requester is None:
            requester = self.d.directory.try_requester(user_id)
        if recent_creations is None:
            recent_creations = self.d.store.recent_count(user_id, now=self.d.clock())
        snapshot = self.d.catalog.cached() if spec is not None else None
        decision = decide(
            self.d.policy,
            requester,
            spec,
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
        self.d.store.record_refusal(user_id, reason, spec)
        self._announce(
            messages.audit_message(
                event="refused",
                requester_id=user_id,
                username=spec.username if spec else None,
                role=spec.role if spec else None,
                project_ids=spec.project_ids if spec else (),
                projects=self._project_names(),
                expires_at=spec.expires_at if spec else None,
                detail=reason,
            )
        )

    def _announce(self, message: dict[str, Any]) -> None:
        channel = self.d.policy.audit_channel
        if channel:
            try:
                self.d.jobs.submit("announce", lambda: self.d.delivery.announce(channel, message))
            except ShuttingDown:
                self.d.delivery.announce(channel, message)

    def _project_names(self) -> dict[int, Any]:
        snapshot = self.d.catalog.cached()
        return snapshot.by_id() if snapshot else {}

    # --- the slash command -----------------------------------------------------------------------------

    def open_form(self, *, trigger_id: str, context: SubmissionContext) -> CommandOutcome:
        requester, decision = self.judge(context.user_id)
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
                snapshot = self.d.catalog.load()
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
            return SubmitOutcome(ack=_update(messages.failed_view_text(messages.FORM_INVALID)))
        existing, recent = self.d.store.submission_status(view_id, user_id, now=self.d.clock())
        if existing is not None:
            # A double click or a retried delivery: answer with what happened to the first one.
            return SubmitOutcome(ack=_update(self._status_of(existing)))
        requester = self.d.directory.try_requester(user_id)
        if requester is None:
            self._refuse(user_id, str(RefusalReason.UNVERIFIED))
            return SubmitOutcome(ack=_update(self._refusal_reply(RefusalReason.UNVERIFIED)))
        parsed = parse_submission(values, timezone=requester.timezone)
        if parsed.spec is None:
            return SubmitOutcome(ack={"response_action": "errors", "errors": errors_by_block(parsed.errors)})
        spec = parsed.spec
        _, decision = self.judge(user_id, spec, requester=requester, recent_creations=recent)
        if decision.refusal is not None:
            self._refuse(user_id, str(decision.refusal), spec)
            return SubmitOutcome(ack=_update(self._refusal_reply(decision.refusal)))
        if decision.violations:
            self._refuse(user_id, "; ".join(v.message for v in decision.violations), spec)
            errors = {violation.field: violation.message for violation in reversed(decision.violations)}
            return SubmitOutcome(ack={"response_action": "errors", "errors": errors_by_block(errors)})
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
            ack=_update(messages.creating_text(spec.username)),
            start=lambda: self._start_creation(spec, context, view_id, team_id),
        )

    def _start_creation(
        self, spec: AccountSpec, context: SubmissionContext, view_id: str, team_id: str | None
    ) -> None:
        try:
            self.d.jobs.submit(
                f"create:{view_id}", lambda: self._create_guarded(spec, context, view_id, team_id)
            )
        except ShuttingDown:
            self._tell(context, view_id, messages.RESTARTING)

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
            self._tell(context, view_id, messages.UNEXPECTED_FAILURE.format(contact=self._contact))

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
        )
        if isinstance(claim, AlreadyClaimed):
            return None  # the first submission's job owns the request and the modal
        if isinstance(claim, OverQuota):
            self._refuse(context.user_id, str(RefusalReason.RATE_LIMITED), spec)
            self._tell(context, view_id, self._refusal_reply(RefusalReason.RATE_LIMITED))
            return None
        return claim.request

    def create(
        self,
        request: StoredRequest,
        context: SubmissionContext,
        view_id: str | None = None,
        *,
        deliver: Deliver | None = None,
    ) -> None:
        try:
            organization_id = self.d.catalog.organization_id()
        except (MixpanelError, OrganizationUnknown) as error:
            detail = str(error)
            sentence = (
                messages.mixpanel_failure_text(error, contact=self._contact)
                if isinstance(error, MixpanelError)
                else messages.CONFIGURATION_PROBLEM.format(contact=self._contact)
            )
            self.d.store.transition(
                request.id, RequestState.FAILED, event=AuditEvent.MIXPANEL_ERROR, detail=detail
            )
            self._tell(context, view_id, sentence)
            return
        body = NewServiceAccount(
            username=request.username,
            role=request.role,
            expires=mixpanel_timestamp(request.expires_at) if request.expires_at else None,
            projects=tuple(ProjectGrant(id=pid, role=request.role) for pid in request.project_ids),
        )
        try:
            account = self.d.mixpanel.create_service_account(organization_id, body)
        except MixpanelError as error:
            self._after_failed_create(request, context, view_id, organization_id, error)
            return
        redactor.add(account.token.get_secret_value())
        # Deliver first, then record creation and delivery in one write: a crash in between leaves the
        # request `submitted`, and the sweeper then finds the account by name and deletes it.
        self._deliver(request, context, view_id, organization_id, account, deliver)

    def _deliver(
        self,
        request: StoredRequest,
        context: SubmissionContext,
        view_id: str | None,
        organization_id: int,
        account: CreatedServiceAccount,
        deliver: Deliver | None = None,
    ) -> None:
        projects = self._project_names()
        message = messages.credentials_message(
            full_username=account.username,
            token=account.token.get_secret_value(),
            role=request.role,
            project_ids=request.project_ids,
            projects=projects,
            expires_at=request.expires_at,
            public_host=self.d.public_host,
        )
        outcome = deliver(message) if deliver else self.d.delivery.to_requester(context, message)
        del message
        created = ((AuditEvent.CREATED, None),)
        if outcome.delivered:
            request = self.d.store.transition(
                request.id,
                RequestState.DELIVERED,
                earlier_events=created,
                event=AuditEvent.TOKEN_DELIVERED,
                detail=f"via {outcome.path}",
                mixpanel_account_id=account.id,
                mixpanel_username=account.username,
            )
            if outcome.path != "modal":  # the modal itself shows the credentials: leave it be
                self.d.delivery.update_view(view_id, status_view(messages.done_text(account.username)))
            self._announce(self._audit_of("created", request, projects))
            return
        request = self.d.store.transition(
            request.id,
            RequestState.CREATED,
            earlier_events=created,
            event=AuditEvent.DELIVERY_FAILED,
            detail="; ".join(outcome.failures),
            mixpanel_account_id=account.id,
            mixpanel_username=account.username,
        )
        deleted = self._delete(request, organization_id, account.id, reason="token could not be delivered")
        template = messages.DELIVERY_FAILED if deleted else messages.DELIVERY_FAILED_ORPHAN
        sentence = template.format(username=account.username, command=messages.COMMAND, contact=self._contact)
        self._tell(context, view_id, sentence)

    def _delete(self, request: StoredRequest, organization_id: int, account_id: int, *, reason: str) -> bool:
        try:
            self.d.mixpanel.delete_service_account(organization_id, account_id)
        except MixpanelError as error:
            log.error(
                "ORPHANED CREDENTIAL: could not delete Mixpanel service account %s (request %s): %s; "
                "delete it by hand",
                account_id,
                request.id,
                error,
            )
            stored = self.d.store.transition(
                request.id,
                RequestState.DELETE_FAILED,
                event=AuditEvent.DELETE_FAILED,
                detail=f"{reason}; delete failed: {error.kind}",
                mixpanel_account_id=account_id,
            )
            self._announce(self._audit_of("delete_failed", stored, self._project_names(), detail=reason))
            return False
        stored = self.d.store.transition(
            request.id,
            RequestState.DELETED,
            event=AuditEvent.DELETED,
            detail=reason,
            mixpanel_account_id=account_id,
        )
        self._announce(self._audit_of("deleted", stored, self._project_names(), detail=reason))
        return True

    def _after_failed_create(
        self,
        request: StoredRequest,
        context: SubmissionContext,
        view_id: str | None,
        organization_id: int,
        error: MixpanelError,
    ) -> None:
        if not error.ambiguous:
            self.d.store.transition(
                request.id, RequestState.FAILED, event=AuditEvent.MIXPANEL_ERROR, detail=str(error)
            )
            self._tell(context, view_id, messages.mixpanel_failure_text(error, contact=self._contact))
            return
        # The account may exist with a token nobody will ever see: find it and delete it, never retry blindly.
        self.d.store.transition(
            request.id, RequestState.UNCERTAIN, event=AuditEvent.MIXPANEL_ERROR, detail=str(error)
        )
        told = False
        listed = False
        settled = False
        for delay in self.d.reconcile_delays or [0.0]:
            if delay and not self.d.pause(delay):
                break  # shutting down: the sweeper of the next run takes over
            found = self._reconcile_once(request, organization_id)
            listed = listed or found is not None
            if found:
                settled = True
                break
            if found is not None and not told:
                # Nothing there yet; say so now, and keep looking in case Mixpanel finishes late.
                self._tell(
                    context,
                    view_id,
                    messages.mixpanel_failure_text(error, contact=self._contact, checked_for_orphans=True),
                )
                told = True
        else:
            settled = listed
        if not settled:
            # Mixpanel could not be asked, or we are stopping: stay UNCERTAIN, so the sweeper keeps trying.
            log.warning(
                "Request %s: not settled after an ambiguous create; leaving it to the sweeper", request.id
            )
            if not told:
                self._tell(
                    context,
                    view_id,
                    messages.mixpanel_failure_text(error, contact=self._contact, unconfirmed=True),
                )
            return
        current = self.d.store.get(request.id)
        if current is not None and current.state is RequestState.UNCERTAIN:
            self.d.store.transition(request.id, RequestState.FAILED)
        if not told:
            self._tell(
                context,
                view_id,
                messages.mixpanel_failure_text(error, contact=self._contact, checked_for_orphans=True),
            )

    def _reconcile_once(self, request: StoredRequest, organization_id: int) -> list[int] | None:
        """Delete accounts this request made despite the error. None when Mixpanel could not be asked."""
        try:
            accounts = self.d.mixpanel.list_service_accounts(organization_id)
        except MixpanelError as error:
            log.warning("Could not list service accounts to reconcile request %s: %s", request.id, error)
            return None
        name = re.compile(re.escape(request.username) + r"(\.[^.]+\.mp-service-account)?")
        earliest = request.created_at - CLOCK_SKEW
        candidates = [
            account
            for account in accounts
            if name.fullmatch(account.username)
            and (account.created_at() is None or account.created_at() >= earliest)
        ]
        # Accounts another request of ours owns are delivered credentials, not orphans.
        owned = self.d.store.known_account_ids([account.id for account in candidates])
        orphans = [account for account in candidates if account.id not in owned]
        for account in orphans:
            log.warning(
                "Request %s: found account %s after an ambiguous create; deleting it", request.id, account.id
            )
            self._delete(request, organization_id, account.id, reason="created despite an error; token lost")
        return [account.id for account in orphans]

    # --- recovery after a crash ---------------------------------------------------------------------

    def sweep_stale(self, idle_for: timedelta) -> int:
        """Finish what a process that died mid-creation left behind. Its tokens died with it, so any
        account it made is an orphan: delete it. Returns how many requests were settled."""
        stale = self.d.store.lease_stale(
            (
                RequestState.SUBMITTED,
                RequestState.UNCERTAIN,
                RequestState.CREATED,
                RequestState.DELETE_FAILED,
            ),
            idle_for=idle_for,
            now=self.d.clock(),
        )
        if not stale:
            return 0
        try:
            organization_id = self.d.catalog.organization_id()
        except (MixpanelError, OrganizationUnknown) as error:
            log.warning("Cannot sweep %d interrupted request(s) yet: %s", len(stale), error)
            return 0
        settled = 0
        for request in stale:
            log.warning(
                "Settling request %s left in state %s by an interrupted run", request.id, request.state
            )
            if request.mixpanel_account_id is not None:
                self._delete(
                    request,
                    organization_id,
                    request.mixpanel_account_id,
                    reason="left behind by an interrupted run; token lost",
                )
            else:
                # The create call may or may not have been made: ask Mixpanel.
                found = self._reconcile_once(request, organization_id)
                if found is None:
                    continue  # Mixpanel unreachable: the next sweep tries again
                if not found:
                    self.d.store.transition(
                        request.id,
                        RequestState.FAILED,
                        event=AuditEvent.MIXPANEL_ERROR,
                        detail="interrupted; Mixpanel has no such account",
                    )
            settled += 1
        return settled

    def _tell(self, context: SubmissionContext, view_id: str | None, sentence: str) -> None:
        self.d.delivery.to_requester(context, {"text": sentence})
        self.d.delivery.update_view(view_id, status_view(messages.failed_view_text(sentence)))

    def _audit_of(
        self, event: str, request: StoredRequest, projects: dict, detail: str | None = None
    ) -> dict:
        return messages.audit_message(
            event=event,
            requester_id=request.requester_id,
            username=request.username,
            full_username=request.mixpanel_username,
            account_id=request.mixpanel_account_id,
            role=request.role,
            project_ids=request.project_ids,
            projects=projects,
            expires_at=request.expires_at,
            detail=detail,
        )


def _update(text: str) -> dict[str, Any]:
    return {"response_action": "update", "view": status_view(text)}
