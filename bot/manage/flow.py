"""The lifecycle of minted accounts: list them, show them in the App Home, delete them.

Each click is judged again here, on the server: the clicker comes from the payload and is looked up in
the directory afresh, the button carries only an id, and `bot.manage.permissions` decides. A deletion is
claimed in the database first (`LifecycleStore.claim_deletion`), so a double click or a replay makes one
DELETE call at most.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.audit.trail import AuditTrail
from bot.create.messages import CONFIGURATION_PROBLEM
from bot.db.schema import RequestState, StoredRequest
from bot.dependencies import FlowDependencies
from bot.jobs import ShuttingDown
from bot.manage import messages as say
from bot.manage.accounts import AccountEntry, join_accounts
from bot.manage.permissions import (
    AccountOwnership,
    ManageAction,
    ManageRefusal,
    is_admin,
    may_list_all,
    may_list_own,
    may_manage,
)
from bot.manage.store import AccountRef, DeletionState, LifecycleStore
from bot.manage.views import SCOPE_ALL, SCOPE_MINE, home_view, list_message, parse_target
from bot.mixpanel.catalog import OrganizationUnknown
from bot.mixpanel.client import MixpanelError
from bot.mixpanel.listing import AccountListing
from bot.models import Project
from bot.rotate.store import RotationStore
from bot.rotate.views import with_rotation

log = logging.getLogger(__name__)

MAX_PROJECT_LISTINGS = 30


@dataclass(frozen=True)
class DeleteOutcome:
    """What to tell the clicker; `changed` when the list they look at is now out of date."""

    text: str
    changed: bool = False


class ManageFlow:
    def __init__(
        self, deps: FlowDependencies, records: LifecycleStore, *, own_username: str, listing: AccountListing
    ):
        self.d = deps
        self.records = records
        self.listing = listing
        self.audit = AuditTrail(deps.store, deps.policy, deps.delivery, deps.jobs, deps.catalog)
        self._own_username = own_username

    @property
    def _contact(self) -> str:
        return self.d.policy.contact

    def run(self, name: str, work: Callable[[], None]) -> None:
        """Off Bolt's listener pool, like creations: Mixpanel's pace must not delay anyone's ack."""
        try:
            self.d.jobs.submit(name, work)
        except ShuttingDown:
            work()

    def project_names(self) -> dict[int, Project]:
        snapshot = self.d.catalog.cached()
        if snapshot is None:
            try:
                snapshot = self.d.catalog.load()
            except (MixpanelError, OrganizationUnknown):
                return {}
        return snapshot.by_id()

    def record_refusal(
        self, actor_id: str, action: str, target: str, reason: str, account: AccountRef | None = None
    ) -> None:
        """Audit a refused action (database row and audit channel)."""
        self.audit.record(
            lambda: self.records.record_refusal(
                actor_id, f"{action} {target}: {reason}"[:500], account=account
            ),
            say.refused_audit_message(actor_id=actor_id, action=action, target=target, reason=reason),
        )

    @staticmethod
    def ref_of(request: StoredRequest) -> AccountRef:
        return AccountRef(request.mixpanel_account_id or 0, request.mixpanel_username, request)

    # --- reading -------------------------------------------------------------------------------------

    def entries(self, requester_id: str | None) -> list[AccountEntry]:
        """Live accounts joined with stored requests; closes the records of accounts deleted elsewhere.
        Raises MixpanelError or OrganizationUnknown."""
        entries, gone = self.read_entries(requester_id)
        self.close_gone(gone)
        return entries

    def read_entries(
        self, requester_id: str | None, *, outside_projects: bool = True
    ) -> tuple[list[AccountEntry], list[StoredRequest]]:
        """The entries, and the delivered records whose account Mixpanel confirmed gone (to be closed by
        `close_gone`). Only reads. `outside_projects` False skips the per-project listings that give
        accounts made outside the bot their projects and role (with `requester_id` None). Raises
        MixpanelError or OrganizationUnknown."""
        organization_id = self.d.catalog.organization_id()
        live = self.listing.accounts(organization_id)
        known = self.records.by_account_ids([account.id for account in live])
        listed = {account.id for account in live}
        unsure: set[int] = set()
        for request in self.records.delivered(requester_id):
            account_id = request.mixpanel_account_id
            if account_id is None or account_id in known:
                continue
            known[account_id] = request
            if account_id not in listed:
                # Delivered records are read after the list (which may be a few seconds old): an account made
                # meanwhile is missing from it without being gone. Only Mixpanel's own 404 for the account
                # closes its record.
                try:
                    confirmed = self.d.mixpanel.get_service_account(organization_id, account_id)
                except MixpanelError as error:
                    log.info("Could not confirm account %s is gone: %s", account_id, error)
                    unsure.add(account_id)
                    continue
                if confirmed is not None:
                    live.append(confirmed)
        outside = requester_id is None and any(account.id not in known for account in live)
        entries, gone = join_accounts(
            live,
            known,
            requester_id=requester_id,
            own_username=self._own_username,
            memberships=self._memberships() if outside and outside_projects else None,
        )
        # Governance marks idle accounts (bot/govern/job.py), when the policy's idle_days is set.
        entries = self.d.annotate_entries(entries)
        entries = with_rotation(self.d.policy, RotationStore(self.d.store), entries)
        return entries, [request for request in gone if request.mixpanel_account_id not in unsure]

    def close_gone(self, gone: list[StoredRequest]) -> None:
        for request in gone:
            self._close_gone(request)

    def _close_gone(self, request: StoredRequest) -> None:
        """Close the record of an account deleted outside the bot; announced by whoever closes it."""
        message = say.gone_audit_message(
            username=request.mixpanel_username or request.username,
            account_id=request.mixpanel_account_id or 0,
            creator_id=request.requester_id,
        )
        self.audit.record(
            lambda: self.records.close_gone(request, now=self.d.clock()),
            lambda closed: message if closed else None,
        )

    def _memberships(self) -> dict[int, list[tuple[int, str]]] | None:
        """Who is in which project, from Mixpanel's per-project listings: the only source of projects and
        role for accounts made outside the bot. One call per project, so only up to MAX_PROJECT_LISTINGS
        projects; None (shown as "not tracked") past that or when a listing fails."""
        snapshot = self.d.catalog.cached()
        if snapshot is None or len(snapshot.projects) > MAX_PROJECT_LISTINGS:
            return None
        found: dict[int, list[tuple[int, str]]] = {}
        try:
            for project in snapshot.projects:
                for member in self.d.mixpanel.list_project_service_accounts(project.id):
                    found.setdefault(member.id, []).append((project.id, member.role or "unknown role"))
        except MixpanelError as error:
            log.info("Project membership unavailable for the list: %s", error)
            return None
        return found

    @property
    def own_username(self) -> str:
        return self._own_username

    def unreadable(self, error: Exception) -> str:
        """The sentence for a person when Mixpanel (or the organization's configuration) failed."""
        return self._unreadable(error)

    def _unreadable(self, error: Exception) -> str:
        if isinstance(error, MixpanelError):
            return say.manage_failure_text(error, doing="read the service accounts", contact=self._contact)
        return CONFIGURATION_PROBLEM.format(contact=self._contact)

    def list_message(self, user_id: str, *, everything: bool, notice: str | None = None) -> dict[str, Any]:
        requester = self.d.directory.try_requester(user_id)
        if everything:
            decision = may_list_all(self.d.policy, requester, installation=self.d.installation)
            refusal = decision.refusal
        else:
            refusal = may_list_own(self.d.policy, requester, installation=self.d.installation)
        if refusal is not None:
            self.record_refusal(
                user_id, "list", "all accounts" if everything else "own accounts", str(refusal), None
            )
            return {"text": say.manage_refusal_text(refusal, contact=self._contact)}
        try:
            entries = self.entries(None if everything else user_id)
        except (MixpanelError, OrganizationUnknown) as error:
            return {"text": self._unreadable(error)}
        return list_message(
            entries,
            scope=SCOPE_ALL if everything else SCOPE_MINE,
            now=self.d.clock(),
            timezone=requester.timezone,
            projects=self.project_names(),
            notice=notice,
        )

    # --- App Home ------------------------------------------------------------------------------------

    def home(self, user_id: str, *, notice: str | None = None) -> dict[str, Any]:
        requester = self.d.directory.try_requester(user_id)
        refusal = may_list_own(self.d.policy, requester, installation=self.d.installation)
        if refusal is not None or requester is None:
            reason = refusal or ManageRefusal.UNVERIFIED
            text = say.manage_refusal_text(reason, contact=self._contact)
            return home_view(
                None, now=self.d.clock(), timezone="UTC", projects={}, notice=text, may_create=False
            )
        try:
            entries: list[AccountEntry] | None = self.entries(user_id)
        except (MixpanelError, OrganizationUnknown) as error:
            entries = None
            notice = "\n".join(filter(None, [notice, self._unreadable(error)]))
        return home_view(
            entries,
            now=self.d.clock(),
            timezone=requester.timezone,
            projects=self.project_names(),
            notice=notice,
            header=self.d.home_header() if is_admin(self.d.policy, requester) else None,
        )

    def publish_home(self, user_id: str, *, notice: str | None = None) -> None:
        try:
            view = self.home(user_id, notice=notice)
        except Exception:
            log.exception("Building the App Home for %s failed", user_id)
            view = home_view(
                None,
                now=self.d.clock(),
                timezone="UTC",
                projects={},
                notice=say.UNEXPECTED.format(contact=self._contact),
            )
        try:
            self.d.background_slack.views_publish(user_id=user_id, view=view)
        except (SlackClientError, OSError) as error:
            log.warning("views.publish for %s failed: %s", user_id, type(error).__name__)

    # --- deleting ------------------------------------------------------------------------------------

    def delete(self, user_id: str, value: Any) -> DeleteOutcome:
        """Delete the account a button names, if this person may; returns the sentence to show them."""
        target = parse_target(value)
        shown = str(value)[:64]
        if target is None:
            self.record_refusal(user_id, "delete", f"`{shown}`", "not an account id", None)
            return DeleteOutcome(say.UNKNOWN_ACCOUNT)
        if target.account_id is None:
            request = self.records.get(target.request_id or "")
            if request is None or request.mixpanel_account_id is None:
                self.record_refusal(user_id, "delete", f"request `{shown}`", "no such account", None)
                return DeleteOutcome(say.UNKNOWN_ACCOUNT)
            account = AccountRef(request.mixpanel_account_id, request.mixpanel_username, request)
        else:
            request = self.records.by_account_ids([target.account_id]).get(target.account_id)
            username = request.mixpanel_username if request else None
            account = AccountRef(target.account_id, username, request)
        requester = self.d.directory.try_requester(user_id)
        ownership = AccountOwnership(creator_id=request.owner if request else None)
        decision = may_manage(
            self.d.policy, requester, ManageAction.DELETE, ownership, installation=self.d.installation
        )
        if not decision.allowed or decision.basis is None:
            reason = decision.refusal or ManageRefusal.UNVERIFIED
            self.record_refusal(user_id, "delete", f"account {account.account_id}", str(reason), account)
            return DeleteOutcome(say.manage_refusal_text(reason, contact=self._contact))
        name = account.username or f"account {account.account_id}"
        if request is not None and request.state in (RequestState.CLOSED, RequestState.DELETED):
            return DeleteOutcome(say.already_deleted_text(name), changed=True)
        if request is not None and request.state is not RequestState.DELIVERED:
            return DeleteOutcome(say.settling_text(name), changed=True)
        try:
            organization_id = self.d.catalog.organization_id()
            if request is None:
                # Made outside the bot: learn its name for the audit trail, and never delete the bot itself.
                live = self.d.mixpanel.get_service_account(organization_id, account.account_id)
                if live is None:
                    return DeleteOutcome(say.already_deleted_text(name), changed=True)
                if live.username == self._own_username:
                    self.record_refusal(
                        user_id, "delete", f"account {account.account_id}", "the bot itself", account
                    )
                    return DeleteOutcome(say.BOT_ITSELF)
                account = AccountRef(account.account_id, live.username, None)
                name = live.username
        except (MixpanelError, OrganizationUnknown) as error:
            return DeleteOutcome(self._unreadable(error))
        return self._delete_once(user_id, account, name, str(decision.basis), organization_id)

    def delete_as_system(
        self, actor_id: str, account: AccountRef, name: str, organization_id: int
    ) -> DeleteOutcome:
        """A deletion the bot decides on its own (governance's idle or review action, after its warnings):
        claimed once and audited like a person's, with the basis "governance"."""
        return self._delete_once(actor_id, account, name, "governance", organization_id)

    def _delete_once(
        self, user_id: str, account: AccountRef, name: str, basis: str, organization_id: int
    ) -> DeleteOutcome:
        claim = self.records.claim_deletion(account, actor_id=user_id, basis=basis, now=self.d.clock())
        if not claim.won:
            if claim.state is DeletionState.DELETED:
                return DeleteOutcome(say.already_deleted_text(name), changed=True)
            return DeleteOutcome(say.deletion_in_progress_text(name), changed=True)
        try:
            deleted = self.d.mixpanel.delete_if_present(organization_id, account.account_id)
        except MixpanelError as error:
            self.records.fail_deletion(account, actor_id=user_id, detail=f"{basis}; {error.kind}")
            return DeleteOutcome(
                say.manage_failure_text(error, doing=f"delete `{name}`", contact=self._contact)
            )
        self.audit.record(
            lambda: self.records.finish_deletion(
                account,
                actor_id=user_id,
                found_gone=not deleted,
                detail=f"allowed as {basis}",
                now=self.d.clock(),
            ),
            say.deletion_audit_message(
                actor_id=user_id,
                basis=basis,
                username=name,
                account_id=account.account_id,
                creator_id=account.request.requester_id if account.request else None,
                found_gone=not deleted,
            ),
        )
        return DeleteOutcome(say.deleted_text(name) if deleted else say.already_gone_text(name), changed=True)
