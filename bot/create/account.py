"""Making the account and handing over its token: the part of the create flow after the request is stored.

Invariants (see docs/guarantees.md; bot/create/flow.py has the rest):
- A token is written to exactly one place: the private message to its requester.
- Every account the bot creates is either delivered or deleted again: it is recorded before its token
  leaves, and a failed delivery or an unrecordable one deletes it.
- A create that ended ambiguously is never retried blindly: Mixpanel is asked what really happened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.audit.trail import AuditTrail
from bot.create import messages
from bot.create.cleanup import Cleanup
from bot.create.secret_store import NotStored, SecretStore, Stored
from bot.create.views import status_view
from bot.db.schema import AuditEvent, RequestState, StoredRequest
from bot.db.store import StateMoved
from bot.dependencies import FlowDependencies
from bot.destinations.base import Replaced
from bot.mixpanel.catalog import OrganizationUnknown
from bot.mixpanel.client import MixpanelError
from bot.mixpanel.models import CreatedServiceAccount, NewServiceAccount, ProjectGrant
from bot.models import SubmissionContext, mixpanel_timestamp
from bot.redaction import redactor
from bot.slack.delivery import DeliveryOutcome

log = logging.getLogger(__name__)

# Shows a new account's credentials to its requester; the default is a private message.
Deliver = Callable[[dict[str, Any]], DeliveryOutcome]


def new_account_body(request: StoredRequest) -> NewServiceAccount:
    """What Mixpanel is asked to create for a stored request (also a rotation's successor)."""
    return NewServiceAccount(
        username=request.username,
        role=request.role,
        expires=mixpanel_timestamp(request.expires_at) if request.expires_at else None,
        projects=tuple(ProjectGrant(id=pid, role=request.role) for pid in request.project_ids),
    )


class AccountCreation:
    """Creates a stored request's account, records it, delivers the token, records the delivery; and on
    every failure tells the requester one plain sentence and leaves nothing half-done."""

    def __init__(self, deps: FlowDependencies, audit: AuditTrail, cleanup: Cleanup):
        self.d = deps
        self.audit = audit
        self.cleanup = cleanup
        self.secrets = SecretStore(
            deps.destinations, deps.store, deps.public_host + "/api/app", lambda: self.d.clock()
        )

    @property
    def _contact(self) -> str:
        return self.d.policy.contact

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
            sentence = (
                messages.mixpanel_failure_text(error, contact=self._contact)
                if isinstance(error, MixpanelError)
                else messages.CONFIGURATION_PROBLEM.format(contact=self._contact)
            )
            self._fail(request, context, view_id, str(error), sentence)
            return
        body = new_account_body(request)
        try:
            request = self.d.store.record_create_attempt(request.id, now=self.d.clock())
        except StateMoved as moved:  # the sweeper settled it while Slack or Mixpanel kept us waiting
            log.warning(
                "Request %s was %s before its create began; nothing created", request.id, moved.actual
            )
            self.tell(context, view_id, messages.CLOSED_BEFORE_CREATE)
            return
        try:
            account = self.d.mixpanel.create_service_account(organization_id, body)
        except MixpanelError as error:
            if not error.ambiguous:
                sentence = messages.mixpanel_failure_text(error, contact=self._contact)
                self._fail(request, context, view_id, str(error), sentence)
                return
            try:
                self.cleanup.after_ambiguous_create(
                    request, organization_id, error, lambda sentence: self.tell(context, view_id, sentence)
                )
            except StateMoved:
                self.tell(context, view_id, self.cleanup.unconfirmed_text(error))  # the sweeper has it
            return
        redactor.add(account.token.get_secret_value())
        # Record the account before the token leaves: from here on no cleanup can mistake it for an orphan.
        try:
            request = self._record_surely(
                request.id,
                RequestState.CREATED,
                expected=RequestState.SUBMITTED,
                account_id=account.id,
                event=AuditEvent.CREATED,
                mixpanel_username=account.username,
            )
        except (SQLAlchemyError, StateMoved) as error:
            # Unrecorded, the token must not go out: revoke it now (else the sweeper finds it by name).
            log.error(
                "Request %s: could not record account %s (%s); deleting it", request.id, account.id, error
            )
            self._delete_unrecorded(organization_id, account.id)
            self.tell(context, view_id, messages.UNEXPECTED_FAILURE.format(contact=self._contact))
            return
        self._deliver(request, context, view_id, organization_id, account, deliver)

    def _fail(
        self,
        request: StoredRequest,
        context: SubmissionContext,
        view_id: str | None,
        detail: str,
        sentence: str,
    ) -> None:
        try:
            self.d.store.transition(
                request.id,
                RequestState.FAILED,
                expected=(RequestState.SUBMITTED,),
                event=AuditEvent.MIXPANEL_ERROR,
                detail=detail,
            )
        except StateMoved as moved:
            log.warning("Request %s was %s before it could be marked failed", request.id, moved.actual)
        self.tell(context, view_id, sentence)

    def _record_surely(
        self,
        request_id: str,
        state: RequestState,
        *,
        expected: RequestState,
        account_id: int,
        **event: Any,
    ) -> StoredRequest:
        """Move the request from `expected` to `state` for `account_id`, retrying a failed write: a database
        that fails for a moment must not cost a delivered or deliverable account."""
        retried = False
        for delay in [*self.d.write_retry_delays, None]:
            try:
                return self.d.store.transition(
                    request_id, state, expected=(expected,), mixpanel_account_id=account_id, **event
                )
            except StateMoved as moved:
                # A commit whose acknowledgement was lost: the retry finds our own write already there.
                row = self.d.store.get(request_id) if retried and moved.actual is state else None
                if row is not None and row.mixpanel_account_id == account_id:
                    return row
                raise
            except SQLAlchemyError as error:
                if delay is None:
                    raise
                log.warning("Database write failed (%s); retrying in %.1fs", type(error).__name__, delay)
                time.sleep(delay)
                retried = True
        raise AssertionError("unreachable")

    def _delete_unrecorded(self, organization_id: int, account_id: int) -> bool:
        try:
            self.d.mixpanel.delete_service_account(organization_id, account_id)
            return True
        except MixpanelError as error:
            log.error(
                "ORPHANED CREDENTIAL: could not delete unrecorded Mixpanel service account %s: %s; "
                "the sweeper will find it by name, or delete it by hand",
                account_id,
                error,
            )
            return False

    def _deliver(
        self,
        request: StoredRequest,
        context: SubmissionContext,
        view_id: str | None,
        organization_id: int,
        account: CreatedServiceAccount,
        deliver: Deliver | None = None,
    ) -> None:
        if request.destination:
            self._store(request, context, view_id, organization_id, account)
            return
        message = messages.credentials_message(
            full_username=account.username,
            token=account.token.get_secret_value(),
            role=request.role,
            project_ids=request.project_ids,
            projects=self.audit.projects(),
            expires_at=request.expires_at,
            public_host=self.d.public_host,
        )
        outcome = deliver(message) if deliver else self.d.delivery.to_requester(context, message)
        del message
        if outcome.delivered:
            self._record_delivery(request, context, view_id, organization_id, account, outcome.path)
            return
        reason = "token could not be delivered"
        try:
            request = self.cleanup.orphan_and_delete(
                request,
                organization_id,
                [(account.id, account.username)],
                expected=(RequestState.CREATED,),
                reason=reason,
                event=AuditEvent.DELIVERY_FAILED,
                detail="; ".join(outcome.failures),
            )
            deleted = request.state is RequestState.DELETED
        except StateMoved:
            deleted = False  # the sweeper took it over and deletes it
        template = messages.DELIVERY_FAILED if deleted else messages.DELIVERY_FAILED_ORPHAN
        sentence = template.format(username=account.username, command=messages.COMMAND, contact=self._contact)
        self.tell(context, view_id, sentence)

    def _store(
        self,
        request: StoredRequest,
        context: SubmissionContext,
        view_id: str | None,
        organization_id: int,
        account: CreatedServiceAccount,
    ) -> None:
        """The token goes to the request's destination; the requester hears where, never what."""
        destination = request.destination or ""
        try:
            outcome = self.secrets.put(request, organization_id, account, replacing=self._replacing(request))
        except StateMoved:
            outcome = None  # the sweeper took the request over: it reads the destination, or deletes
        if isinstance(outcome, Stored):
            try:
                request = self._record_surely(
                    request.id,
                    RequestState.DELIVERED,
                    expected=RequestState.CREATED,
                    account_id=account.id,
                    event=AuditEvent.TOKEN_DELIVERED,
                    detail=f"stored in {outcome.where}",
                    secret_version=outcome.receipt.version,
                )
            except (SQLAlchemyError, StateMoved) as error:
                # Stored, but not recorded: left `created`, the sweeper finds the bot's mark and records it.
                log.error("Request %s: stored in %s but not recorded (%s)", request.id, destination, error)
            sentence = messages.stored_text(account.username, outcome.where)
            self.d.delivery.to_requester(context, {"text": sentence})
            try:
                self.d.delivery.update_view(view_id, status_view(sentence))
                if request.state is RequestState.DELIVERED:
                    self.audit.request_event("created", request, detail=f"Stored in {outcome.where}")
                    self.d.after_delivery(request, context)
            except Exception:
                log.exception(
                    "Request %s: stored, but the modal or audit channel could not be told", request.id
                )
            return
        if isinstance(outcome, NotStored):
            try:
                request = self.cleanup.orphan_and_delete(
                    request,
                    organization_id,
                    [(account.id, account.username)],
                    expected=(RequestState.CREATED,),
                    reason=f"token could not be stored in {destination}",
                    event=AuditEvent.DELIVERY_FAILED,
                    detail=f"{destination}: {outcome.failure}: {outcome.detail}",
                )
                deleted = request.state is RequestState.DELETED
            except StateMoved:
                deleted = True  # the sweeper took it over and deletes it
            sentence = messages.store_failed_text(
                account.username, destination, outcome.failure, deleted=deleted, contact=self._contact
            )
            self.tell(context, view_id, sentence)
            return
        log.warning(
            "Request %s: the write to %s is unsettled; the sweeper reads it back", request.id, destination
        )
        sentence = messages.STORE_UNSETTLED.format(
            username=account.username, destination=destination, contact=self._contact
        )
        self.tell(context, view_id, sentence)

    def _replacing(self, request: StoredRequest) -> Replaced | None:
        """For a Replace… into the same secret: the old account, whose secret the bot may overwrite."""
        old = self.d.store.get(request.replaces_request_id) if request.replaces_request_id else None
        if old is None or old.mixpanel_account_id is None:
            return None
        if (old.destination, old.secret_name) != (request.destination, request.secret_name):
            return None
        return Replaced(old.mixpanel_account_id, old.mixpanel_username)

    def _record_delivery(
        self,
        request: StoredRequest,
        context: SubmissionContext,
        view_id: str | None,
        organization_id: int,
        account: CreatedServiceAccount,
        path: str | None,
    ) -> None:
        """The person holds the token now: whatever happens, never tell them nothing was created."""
        revoked = None
        try:
            request = self._record_surely(
                request.id,
                RequestState.DELIVERED,
                expected=RequestState.CREATED,
                account_id=account.id,
                event=AuditEvent.TOKEN_DELIVERED,
                detail=f"via {path}",
            )
        except StateMoved:
            revoked = messages.REVOKED_AFTER_DELIVERY  # the sweeper took the request and revokes the account
        except Exception:
            log.exception("Request %s: could not record the delivery of account %s", request.id, account.id)
            # Left `created`, the sweeper will revoke it; do it now, so that the token dies at once.
            gone = self._delete_unrecorded(organization_id, account.id)
            revoked = messages.DELIVERED_UNRECORDED if gone else messages.DELIVERED_UNRECORDED_PENDING
        if revoked is not None:
            sentence = revoked.format(
                username=account.username, command=messages.COMMAND, contact=self._contact
            )
            self.tell(context, view_id, sentence)
            return
        try:
            if path != "modal":  # the modal itself shows the credentials: leave it be
                self.d.delivery.update_view(view_id, status_view(messages.done_text(account.username)))
            self.audit.request_event("created", request)
            self.d.after_delivery(request, context)
        except Exception:
            log.exception(
                "Request %s: delivered, but the modal, audit channel or follow-ups could not be told",
                request.id,
            )

    def tell(self, context: SubmissionContext, view_id: str | None, sentence: str) -> None:
        self.d.delivery.to_requester(context, {"text": sentence})
        self.d.delivery.update_view(view_id, status_view(messages.failed_view_text(sentence)))
