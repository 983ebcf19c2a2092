"""Cleanup: find the accounts a request made whose token nobody holds, and delete exactly those.

Used by the live flow after an ambiguous create or a failed delivery, and by the sweeper for requests
an interrupted run left behind. Which accounts count as a request's is decided in `bot.create.reconcile`.
Every state change is a compare-and-set: when the sweeper and a live job race, one of them loses
(`StateMoved`) and leaves the request to the other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.audit.trail import AuditTrail
from bot.create import messages
from bot.create.orphans import Orphan, OrphanOutcome, OrphanRecords
from bot.create.reconcile import CLOCK_SKEW, Attribution, attribute, name_matches
from bot.create.secret_store import SecretStore, Stored, Unsettled
from bot.db.schema import AuditEvent, RequestState, StoredRequest
from bot.db.store import StateMoved, Store
from bot.destinations.base import Destination
from bot.mixpanel.catalog import OrganizationUnknown, ProjectCatalog
from bot.mixpanel.client import MixpanelClient, MixpanelError
from bot.mixpanel.models import ServiceAccountRead

log = logging.getLogger(__name__)

# Non-final states the sweeper settles once nobody has touched them for STALE_REQUEST_SECONDS.
SWEPT_STATES = (
    RequestState.SUBMITTED,
    RequestState.UNCERTAIN,
    RequestState.CREATED,
    RequestState.ORPHANED,
    RequestState.DELETE_FAILED,
)


@dataclass
class CleanupDependencies:
    store: Store
    orphans: OrphanRecords
    mixpanel: MixpanelClient
    catalog: ProjectCatalog
    audit: AuditTrail
    contact: str
    reconcile_delays: list[float] = field(default_factory=lambda: [0.0, 5.0, 30.0])
    # How long after its last create call an uncertain request is re-checked before it is called failed.
    recheck_for: timedelta = timedelta(hours=6)
    skew: timedelta = CLOCK_SKEW
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Waits between reconciliation passes; False means the process is stopping.
    pause: Callable[[float], bool] = field(default=lambda seconds: time.sleep(seconds) is None)
    # The policy's secret stores: a `created` request whose write began is settled by reading its store.
    destinations: dict[str, Destination] = field(default_factory=dict)
    # A direct message to a requester (user id, text): the sweeper's news comes long after their request.
    tell_user: Callable[[str, str], object] = lambda user_id, text: None


class Cleanup:
    def __init__(self, deps: CleanupDependencies):
        self.d = deps

    # --- finding ---------------------------------------------------------------------------------------

    def find(self, request: StoredRequest, organization_id: int) -> Attribution | None:
        """The listed accounts this request made. None when Mixpanel could not be asked."""
        try:
            bot_user_id = self.d.catalog.bot_user_id()
        except (MixpanelError, OrganizationUnknown) as error:
            log.warning("Cannot tell the bot's own accounts to reconcile request %s: %s", request.id, error)
            return None
        if bot_user_id is None:
            log.error("Mixpanel's /me gave no user id, so no account can be attributed to the bot")
            return None
        try:
            listed = self.d.mixpanel.list_service_accounts(organization_id)
        except MixpanelError as error:
            log.warning("Could not list service accounts to reconcile request %s: %s", request.id, error)
            return None
        namesakes = [account for account in listed if name_matches(request.username, account.username)]
        return attribute(
            namesakes,
            request,
            bot_user_id=bot_user_id,
            known_ids=self.d.orphans.known_account_ids([a.id for a in namesakes], besides=request.id),
            creates_in_flight=self.d.orphans.creates_in_flight(request.username, besides=request.id),
            skew=self.d.skew,
        )

    # --- deleting --------------------------------------------------------------------------------------

    def orphan_and_delete(
        self,
        request: StoredRequest,
        organization_id: int,
        accounts: list[tuple[int, str | None]],
        *,
        expected: tuple[RequestState, ...],
        reason: str,
        event: AuditEvent | None = None,
        detail: str | None = None,
    ) -> StoredRequest:
        """Record the accounts as this request's orphans (compare-and-set), then delete each one."""
        for account_id, _ in accounts:
            log.warning("Request %s: deleting account %s, whose token nobody holds", request.id, account_id)
        stored = self.d.orphans.record_orphans(
            request.id, accounts, expected=expected, event=event, detail=detail
        )
        return self.delete_recorded(stored, organization_id, reason=reason)

    def delete_recorded(self, request: StoredRequest, organization_id: int, *, reason: str) -> StoredRequest:
        """Delete every orphan of this request not deleted yet; each outcome is recorded on its own."""
        current = request
        for orphan in self.d.orphans.orphans(request.id):
            if orphan.outcome is OrphanOutcome.DELETED:
                continue
            detail = reason
            try:
                self.d.mixpanel.delete_service_account(organization_id, orphan.account_id)
                deleted = True
            except MixpanelError as error:
                log.error(
                    "ORPHANED CREDENTIAL: could not delete Mixpanel service account %s (request %s): %s; "
                    "the sweeper retries, or delete it by hand",
                    orphan.account_id,
                    request.id,
                    error,
                )
                deleted = False
                detail = f"{reason}; delete failed: {error.kind}"
            stored = self._record_deletion(request, orphan, deleted=deleted, detail=detail, reason=reason)
            if stored is None:
                continue  # another cleanup recorded this orphan's deletion first
            current = stored
        return current

    def _record_deletion(
        self, request: StoredRequest, orphan: Orphan, *, deleted: bool, detail: str, reason: str
    ) -> StoredRequest | None:
        """Record one orphan's deletion (or its failure) and announce it, unless another cleanup did."""
        return self.d.audit.record(
            lambda: self.d.orphans.record_deletion(
                request.id, orphan.account_id, deleted=deleted, detail=detail
            ),
            lambda stored: (
                self.d.audit.request_message(
                    "deleted" if deleted else "delete_failed",
                    stored,
                    detail=reason,
                    account=(orphan.account_id, orphan.username),
                )
                if stored is not None
                else None
            ),
        )

    # --- after an ambiguous create (live) --------------------------------------------------------------

    def after_ambiguous_create(
        self,
        request: StoredRequest,
        organization_id: int,
        error: MixpanelError,
        tell: Callable[[str], None],
    ) -> None:
        """The account may exist with a token nobody will ever see: find it and delete it; never retry
        blindly. Found nothing: the request stays `uncertain`, for the sweeper to look again later."""
        request = self.d.store.record_ambiguous_create(request.id, str(error), now=self.d.clock())
        checked = messages.mixpanel_failure_text(error, contact=self.d.contact, checked_for_orphans=True)
        told = False
        for delay in self.d.reconcile_delays or [0.0]:
            if delay and not self.d.pause(delay):
                break  # shutting down: the sweeper takes over
            found = self.find(request, organization_id)
            if found is None:
                continue
            if found.ours:
                try:
                    self._delete_found(request, organization_id, found.ours)
                except StateMoved:
                    log.info("Request %s: the sweeper is cleaning up already", request.id)
                break
            if not found.contested and not told:
                # Nothing there yet; say so now, and keep looking in case Mixpanel finishes late.
                tell(checked)
                told = True
        if not told:
            # Either cleaned up, or Mixpanel could not be asked (then the sweeper keeps trying).
            cleaned = self.d.store.get(request.id)
            listed = cleaned is not None and cleaned.state is not RequestState.UNCERTAIN
            tell(checked if listed else self.unconfirmed_text(error))

    def unconfirmed_text(self, error: MixpanelError) -> str:
        return messages.mixpanel_failure_text(error, contact=self.d.contact, unconfirmed=True)

    def _delete_found(
        self, request: StoredRequest, organization_id: int, accounts: list[ServiceAccountRead]
    ) -> StoredRequest:
        return self.orphan_and_delete(
            request,
            organization_id,
            [(account.id, account.username) for account in accounts],
            expected=(RequestState.UNCERTAIN,),
            reason="created despite an error; token lost",
        )

    # --- the sweeper -----------------------------------------------------------------------------------

    def sweep(self, idle_for: timedelta) -> int:
        """Settle what interrupted runs left behind, and look again at uncertain creates. Returns how many
        requests reached a final state."""
        stale = self.d.store.lease_stale(SWEPT_STATES, idle_for=idle_for, now=self.d.clock())
        if not stale:
            return 0
        try:
            organization_id = self.d.catalog.organization_id()
        except (MixpanelError, OrganizationUnknown) as error:
            log.warning("Cannot sweep %d request(s) yet: %s", len(stale), error)
            return 0
        settled = 0
        for request in stale:
            try:
                final = self._settle(request, organization_id)
            except StateMoved as moved:
                log.info("Request %s moved to %s while sweeping; left to its owner", request.id, moved.actual)
                continue
            settled += final.state in (RequestState.FAILED, RequestState.DELETED)
        return settled

    def _settle(self, request: StoredRequest, organization_id: int) -> StoredRequest:
        log.warning("Sweeping request %s, left in state %s", request.id, request.state)
        if request.state is RequestState.CREATED:
            stored = self._stored_by_a_lost_run(request)
            if stored is not None:
                return stored
            # The run that held the token died with it (or could not record its delivery): revoke, and tell
            # the requester, whose form or "will look again" notice was the last they heard.
            settled = self.orphan_and_delete(
                request,
                organization_id,
                [(request.mixpanel_account_id, request.mixpanel_username)],
                expected=(RequestState.CREATED,),
                reason="left behind by an interrupted run; token lost",
            )
            sentence = messages.token_lost_text(
                request.mixpanel_username or request.username,
                request.destination,
                deleted=settled.state is RequestState.DELETED,
                contact=self.d.contact,
            )
            self.d.tell_user(request.requester_id, sentence)
            return settled
        if request.state in (RequestState.ORPHANED, RequestState.DELETE_FAILED):
            return self.delete_recorded(request, organization_id, reason="retried by the sweeper")
        if request.state is RequestState.SUBMITTED:
            if request.last_create_attempt_at is None:
                return self.d.store.transition(
                    request.id,
                    RequestState.FAILED,
                    expected=(RequestState.SUBMITTED,),
                    event=AuditEvent.MIXPANEL_ERROR,
                    detail="interrupted before the create call",
                )
            request = self.d.store.transition(
                request.id,
                RequestState.UNCERTAIN,
                expected=(RequestState.SUBMITTED,),
                event=AuditEvent.MIXPANEL_ERROR,
                detail="interrupted during the create call",
            )
        return self._recheck(request, organization_id)

    def _stored_by_a_lost_run(self, request: StoredRequest) -> StoredRequest | None:
        """A `created` request whose write to its destination began: if the store holds the bot's write for
        this account, it was delivered (recorded now); if the store cannot be read, the request waits for the
        next sweep. None: nothing of ours is there (or no write began), so the token is lost."""
        destination = self.d.destinations.get(request.destination or "")
        if destination is None or request.store_started_at is None or request.mixpanel_account_id is None:
            return None
        from_reading = SecretStore.settle_by_reading(
            destination, request.secret_name or "", request.mixpanel_account_id, request.store_started_at
        )
        if isinstance(from_reading, Unsettled):
            log.warning("Request %s: %s; the next sweep reads it again", request.id, from_reading.detail)
            return request
        if isinstance(from_reading, Stored):
            delivered = self.d.store.transition(
                request.id,
                RequestState.DELIVERED,
                expected=(RequestState.CREATED,),
                event=AuditEvent.TOKEN_DELIVERED,
                detail=f"stored in {from_reading.where} (found by the sweeper)",
                secret_version=from_reading.receipt.version,
            )
            self.d.audit.request_event("created", delivered, detail=f"Stored in {from_reading.where}")
            # The requester last heard that the store did not confirm (or nothing, after a crash).
            self.d.tell_user(
                request.requester_id,
                messages.stored_text(request.mixpanel_username or request.username, from_reading.where),
            )
            return delivered
        return None

    def _recheck(self, request: StoredRequest, organization_id: int) -> StoredRequest:
        found = self.find(request, organization_id)
        if found is None:
            return request  # Mixpanel could not be asked: the next sweep tries again
        if found.ours:
            return self._delete_found(request, organization_id, found.ours)
        last_call = request.last_create_attempt_at or request.created_at
        if found.contested or self.d.clock() < last_call + self.d.recheck_for:
            return request  # Mixpanel may still finish the create: stay uncertain, look again later
        return self.d.store.transition(
            request.id,
            RequestState.FAILED,
            expected=(RequestState.UNCERTAIN,),
            event=AuditEvent.MIXPANEL_ERROR,
            detail="Mixpanel has no such account",
        )
