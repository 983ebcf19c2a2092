"""Clicks on governance's controls, judged again on the server: Keep it (with a reason) and Adopt (with an
owner). Both open a modal inside the trigger's 3 s after only cached lookups, carry only an id in its
private_metadata, and are judged afresh on submission. Take over is in bot/govern/owners.py, review
answers in bot/govern/review_flow.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.create.messages import escape
from bot.db.schema import RequestState
from bot.govern import messages as say
from bot.govern.inventory_store import InventoryStore
from bot.govern.store import GovernanceStore
from bot.manage.flow import ManageFlow
from bot.manage.messages import UNKNOWN_ACCOUNT, manage_refusal_text
from bot.manage.permissions import AccountOwnership, ManageAction, ManageRefusal, may_list_all, may_manage
from bot.manage.views import parse_target
from bot.mixpanel.catalog import OrganizationUnknown
from bot.mixpanel.client import MixpanelError
from bot.mixpanel.models import parse_timestamp
from bot.models import Role, Standing

log = logging.getLogger(__name__)

FORM_NOT_OPENED = "Slack did not open the form in time; click again."


@dataclass(frozen=True)
class Submitted:
    """What to answer a modal's submission with, and the sentence for the clicker afterwards (if any)."""

    ack: dict[str, Any]
    after: Callable[[], str | None] | None = None


def _errors(block_id: str, text: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {block_id: text}}


def _value(values: dict, block_id: str) -> dict:
    return (values.get(block_id) or {}).get(say.INPUT_ACTION) or {}


class GovernActions:
    def __init__(self, manage: ManageFlow, store: GovernanceStore, inventory: InventoryStore):
        self.m = manage
        self.d = manage.d
        self.store = store
        self.inventory = inventory

    def _open(self, trigger_id: str, view: dict) -> str | None:
        try:
            self.d.slack.views_open(trigger_id=trigger_id, view=view)
        except (SlackClientError, OSError) as error:
            log.warning("views.open for a governance form failed: %s", type(error).__name__)
            return FORM_NOT_OPENED
        return None

    # --- Keep it ----------------------------------------------------------------------------------

    def _keep_refusal(self, user_id: str, value: Any, *, patient: bool):
        target = parse_target(value)
        request = self.m.records.get(target.request_id) if target and target.request_id else None
        if request is None or request.state is not RequestState.DELIVERED:
            return None, UNKNOWN_ACCOUNT, None  # unknown, or deleted since the idle message: nothing to keep
        person = self.d.directory.try_requester(user_id, patient=patient)
        decision = may_manage(
            self.d.policy,
            person,
            ManageAction.DELETE,  # whoever may delete it may keep it
            AccountOwnership(creator_id=request.owner),
            installation=self.d.installation,
        )
        if not decision.allowed:
            reason = decision.refusal or ManageRefusal.UNVERIFIED
            self.m.record_refusal(
                user_id, "keep", f"account {request.mixpanel_account_id}", str(reason), self.m.ref_of(request)
            )
            return request, manage_refusal_text(reason, contact=self.d.policy.contact), None
        return request, None, decision.basis

    def open_keep(self, user_id: str, value: Any, trigger_id: str) -> str | None:
        request, refusal, _ = self._keep_refusal(user_id, value, patient=False)
        if refusal is not None or request is None:
            return refusal or UNKNOWN_ACCOUNT
        return self._open(trigger_id, say.keep_modal(f"r:{request.id}"))

    def submit_keep(self, user_id: str, metadata: Any, values: dict) -> Submitted:
        reason = " ".join(str(_value(values, say.BLOCK_KEEP_REASON).get("value") or "").split())
        if len(reason) < 3:
            return Submitted(_errors(say.BLOCK_KEEP_REASON, say.KEEP_REASON_MISSING))
        reason = reason[: say.KEEP_REASON_MAX]

        def keep() -> str | None:
            request, refusal, basis = self._keep_refusal(user_id, metadata, patient=True)
            if refusal is not None or request is None:
                return refusal or UNKNOWN_ACCOUNT
            name = request.mixpanel_username or request.username
            now = self.d.clock()
            self.m.audit.record(
                lambda: self.store.record_keep(
                    request, actor_id=user_id, reason=reason, basis=str(basis), now=now
                ),
                say.kept_notice(user_id, name, reason),
            )
            return say.KEPT.format(name=name)

        return Submitted({}, keep)

    # --- Adopt -----------------------------------------------------------------------------------------

    def _admin(self, user_id: str, *, patient: bool) -> bool:
        person = self.d.directory.try_requester(user_id, patient=patient)
        return may_list_all(self.d.policy, person, installation=self.d.installation).allowed

    def open_adopt(self, user_id: str, value: Any, trigger_id: str) -> str | None:
        target = parse_target(value)
        if target is None or target.account_id is None:
            return UNKNOWN_ACCOUNT
        if not self._admin(user_id, patient=False):
            self.m.record_refusal(user_id, "adopt", f"account {target.account_id}", "not_an_admin", None)
            return say.ADOPT_REFUSED
        return self._open(trigger_id, say.adopt_modal(f"a:{target.account_id}", user_id))

    def submit_adopt(self, user_id: str, metadata: Any, values: dict) -> Submitted:
        owner_id = str(_value(values, say.BLOCK_ADOPT_OWNER).get("selected_user") or "")
        owner = self.d.directory.try_requester(owner_id) if owner_id.isalnum() else None
        if (
            owner is None
            or owner.standing is not Standing.MEMBER
            or not owner.belongs_to(self.d.installation)
        ):
            return Submitted(_errors(say.BLOCK_ADOPT_OWNER, say.ADOPT_OWNER_INVALID))
        target = parse_target(metadata)
        return Submitted({}, lambda: self._adopt(user_id, owner_id, target.account_id if target else None))

    def _adopt(self, user_id: str, owner_id: str, account_id: int | None) -> str:
        if account_id is None:
            return UNKNOWN_ACCOUNT
        if not self._admin(user_id, patient=True):
            self.m.record_refusal(user_id, "adopt", f"account {account_id}", "not_an_admin", None)
            return say.ADOPT_REFUSED
        try:
            organization_id = self.d.catalog.organization_id()
            live = self.d.mixpanel.get_service_account(organization_id, account_id)
            if (
                live is None
                or live.username == self.m.own_username
                or self.m.records.by_account_ids([account_id])
            ):
                return say.ADOPT_GONE.format(name=f"account {account_id}")
            memberships = self._memberships(account_id)
        except (MixpanelError, OrganizationUnknown) as error:
            return self.m.unreadable(error)
        roles = [Role(role) for _, role in memberships if role in Role.__members__.values()]
        # The highest role it holds anywhere: what the policy then judges its Projects… and Replace… by.
        role = max(roles, key=lambda r: r.rank) if roles else Role.CONSUMER
        adopted = self.m.audit.record(
            lambda: self.inventory.adopt(
                account_id=account_id,
                username=live.username,
                role=role,
                project_ids=tuple(sorted(pid for pid, _ in memberships)),
                expires_at=parse_timestamp(live.expires),
                created_at=parse_timestamp(live.created),
                mixpanel_creator=live.creator,
                admin_id=user_id,
                owner_id=owner_id,
                now=self.d.clock(),
            ),
            lambda request: (
                say.section_message(
                    f":inbox_tray: <@{user_id}> adopted `{escape(live.username)}` (made in Mixpanel by user "
                    f"{live.creator}); owner <@{owner_id}>."
                )
                if request
                else None
            ),
        )
        if adopted is None:
            return say.ADOPT_GONE.format(name=live.username)
        return say.ADOPTED.format(name=live.username, owner=owner_id)

    def _memberships(self, account_id: int) -> list[tuple[int, str]]:
        """(project, role) for one account, from the per-project listings (Mixpanel has no other way)."""
        snapshot = self.d.catalog.cached() or self.d.catalog.load()
        found = []
        for project in snapshot.projects:
            for member in self.d.mixpanel.list_project_service_accounts(project.id):
                if member.id == account_id:
                    found.append((project.id, member.role or ""))
        return found
