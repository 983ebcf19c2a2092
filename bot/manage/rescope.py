"""Projects…: add an existing account to projects, or remove it from some, within the policy.

The modal offers only projects this person may grant, and only for an account whose role is within their
ceiling. The submission is judged again from scratch: the modal's metadata carries only the request id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.create.messages import CONFIGURATION_PROBLEM, FORM_NOT_OPENED
from bot.create.views import offered_projects, status_view, update_ack
from bot.db.schema import RequestState, StoredRequest
from bot.manage import messages as say
from bot.manage.flow import ManageFlow
from bot.manage.permissions import (
    AccountOwnership,
    AccountRefusal,
    ManageAction,
    ManageRefusal,
    account_refusal,
    may_manage,
)
from bot.manage.projects_view import BLOCK_PROJECT_CHOICE as BLOCK
from bot.manage.projects_view import projects_modal, selected_project_ids, shown_projects
from bot.manage.views import SCOPE_HOME, parse_target
from bot.mixpanel.catalog import OrganizationUnknown
from bot.mixpanel.client import MixpanelError
from bot.mixpanel.models import ProjectGrant
from bot.models import AccountSpec, Project, today_in, zone
from bot.policy.access import Entitlement, approval_triggers, entitlement_for
from bot.policy.file import Policy

log = logging.getLogger(__name__)


@dataclass
class Judged:
    request: StoredRequest | None = None
    entitlement: Entitlement | None = None
    basis: str | None = None
    refusal: str | None = None  # the sentence to show instead


@dataclass
class ProjectsSubmitOutcome:
    ack: dict[str, Any]
    start: Callable[[], None] | None = None


def _errors(text: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {BLOCK: text}}


def judge_account(
    manage: ManageFlow, user_id: str, request_id: str | None, action: ManageAction, verb: str
) -> Judged:
    """Re-scope or replace: the account must be a live one the bot made, this person's to manage, and one
    today's policy would grant them (`account_refusal`: its role, and for Projects… its expiry). Refusals
    are audited."""
    request = manage.records.get(request_id) if request_id else None
    if request is None or request.mixpanel_account_id is None:
        manage.record_refusal(user_id, verb, f"request `{str(request_id)[:64]}`", "no such account")
        return Judged(refusal=say.UNKNOWN_ACCOUNT)
    requester = manage.d.directory.try_requester(user_id)
    decision = may_manage(
        manage.d.policy,
        requester,
        action,
        AccountOwnership(creator_id=request.owner),
        installation=manage.d.installation,
    )
    ref = manage.ref_of(request)
    if not decision.allowed or requester is None:
        reason = decision.refusal or ManageRefusal.UNVERIFIED
        manage.record_refusal(user_id, verb, f"account {ref.account_id}", str(reason), ref)
        return Judged(refusal=say.manage_refusal_text(reason, contact=manage.d.policy.contact))
    if request.state is not RequestState.DELIVERED:
        return Judged(refusal=say.already_deleted_text(ref.username or request.username))
    entitlement = entitlement_for(manage.d.policy, requester)
    now = manage.d.clock()
    expires_on = (
        request.expires_at.astimezone(zone(requester.timezone)).date() if request.expires_at else None
    )
    refusal = account_refusal(
        entitlement, action, role=request.role, expires_on=expires_on, today=today_in(requester.timezone, now)
    )
    if refusal is not None:
        manage.record_refusal(user_id, verb, f"account {ref.account_id}", str(refusal), ref)
        if refusal is AccountRefusal.ROLE_ABOVE_CEILING:
            text = say.role_above_ceiling_text(str(request.role), str(entitlement.max_role), verb)
        else:
            text = say.expiry_beyond_policy_text(
                ref.username or request.username, expires_on=expires_on, max_days=entitlement.max_expiry_days
            )
        return Judged(refusal=text)
    return Judged(request=request, entitlement=entitlement, basis=str(decision.basis))


def approval_projects(policy: Policy) -> frozenset[int]:
    """Projects that need someone else's yes: Projects… never adds them (a replacement request does)."""
    return frozenset(policy.approval.required_for.projects) if policy.approval else frozenset()


def store_only_projects(policy: Policy, request: StoredRequest, catalog: list[Project]) -> frozenset[int]:
    """Projects whose accounts' tokens must go straight into a secret store: never added by Projects… to
    an account whose token went to a person (a Replace… into a store may)."""
    rule = policy.destination_required
    if rule is None or request.destination:
        return frozenset()
    return frozenset(p.id for p in catalog) if rule.everyone else frozenset(rule.projects)


def account_needs_approval(policy: Policy, request: StoredRequest, now: datetime) -> bool:
    """Would this account, by its role or expiry alone, need approval were it requested today? Then growing
    it here would skip that approval: only a replacement, which goes through it, may."""
    if policy.approval is None:
        return False
    today = now.astimezone(UTC).date()
    spec = AccountSpec(
        username=request.username,
        role=request.role,
        project_ids=(),
        expires_on=request.expires_at.astimezone(UTC).date() if request.expires_at else None,
    )
    return bool(approval_triggers(policy, spec, today))


@dataclass(frozen=True)
class Offer:
    """What the Projects… modal lists (and so the only projects a save may touch), and why others are not."""

    shown: list[Project]
    notes: tuple[str, ...]


def projects_offer(
    policy: Policy,
    catalog: list[Project],
    entitlement: Entitlement,
    current: tuple[int, ...],
    *,
    store_only: frozenset[int] = frozenset(),
) -> Offer:
    """The same computation at opening and at submission, so a save changes only what was shown."""
    sensitive = approval_projects(policy)
    grantable = offered_projects(catalog, entitlement)
    open_to_grant = [p for p in grantable if p.id not in sensitive and p.id not in store_only]
    shown = shown_projects(open_to_grant, current)
    notes: list[str] = []
    held_back = [p.name for p in grantable if p.id in sensitive and p.id not in current]
    if held_back:
        notes.append(say.approval_projects_note(held_back))
    store_held = [p.name for p in grantable if p.id in store_only - sensitive and p.id not in current]
    if store_held:
        notes.append(say.store_only_projects_note(store_held))
    if len(shown) < len(open_to_grant):
        notes.append(say.more_projects_note(len(shown), len(open_to_grant)))
    return Offer(shown=shown, notes=tuple(notes))


class RescopeFlow:
    def __init__(self, manage: ManageFlow):
        self.m = manage
        self.d = manage.d

    def _catalog(self) -> list[Project] | None:
        """The cached project list; None (a fetch started) when there is none yet. Never waits for
        Mixpanel: the click's trigger id dies in 3 s, and a listener thread is not Mixpanel's to hold."""
        snapshot = self.d.catalog.cached()
        if snapshot is None:
            self.d.catalog.refresh_in_background()
            return None
        return snapshot.projects

    def open(self, *, user_id: str, value: Any, trigger_id: str, scope: str) -> str | None:
        """Open the modal; or return the sentence that explains why not."""
        target = parse_target(value)
        judged = judge_account(
            self.m, user_id, target.request_id if target else None, ManageAction.RESCOPE, "change projects of"
        )
        if judged.refusal is not None or judged.request is None or judged.entitlement is None:
            return judged.refusal or say.UNKNOWN_ACCOUNT
        request = judged.request
        if account_needs_approval(self.d.policy, request, self.d.clock()):
            self.m.record_refusal(
                user_id,
                "change projects of",
                f"account {request.mixpanel_account_id}",
                "needs approval",
                self.m.ref_of(request),
            )
            return say.rescope_needs_approval_text(request.mixpanel_username or request.username)
        catalog = self._catalog()
        if catalog is None:
            return self._open(trigger_id, status_view(say.PROJECTS_LOADING_TRY_AGAIN))
        offer = projects_offer(
            self.d.policy,
            catalog,
            judged.entitlement,
            request.project_ids,
            store_only=store_only_projects(self.d.policy, request, catalog),
        )
        view = projects_modal(
            username=request.mixpanel_username or request.username,
            role=str(request.role),
            current=request.project_ids,
            offered=offer.shown,
            projects={p.id: p for p in catalog},
            metadata=json.dumps({"r": request.id, "s": scope}),
            notes=offer.notes,
        )
        return self._open(trigger_id, view)

    def _open(self, trigger_id: str, view: dict[str, Any]) -> str | None:
        try:
            self.d.slack.views_open(trigger_id=trigger_id, view=view)
        except (SlackClientError, OSError) as error:
            log.warning("views.open for projects failed: %s", type(error).__name__)
            return FORM_NOT_OPENED
        return None

    def submit(
        self, *, user_id: str, metadata: str | None, values: dict[str, Any], view_id: str | None
    ) -> ProjectsSubmitOutcome:
        try:
            carried = json.loads(metadata or "")
            request_id, scope = str(carried["r"]), str(carried.get("s") or "")
        except (ValueError, TypeError, KeyError):
            self.m.record_refusal(user_id, "change projects of", "a garbled form", "bad metadata")
            return ProjectsSubmitOutcome(ack=update_ack(say.UNKNOWN_ACCOUNT))
        judged = judge_account(self.m, user_id, request_id, ManageAction.RESCOPE, "change projects of")
        if judged.refusal is not None or judged.request is None or judged.entitlement is None:
            return ProjectsSubmitOutcome(ack=update_ack(judged.refusal or say.UNKNOWN_ACCOUNT))
        request, entitlement = judged.request, judged.entitlement
        name = request.mixpanel_username or request.username
        if account_needs_approval(self.d.policy, request, self.d.clock()):
            self.m.record_refusal(
                user_id,
                "change projects of",
                f"account {request.mixpanel_account_id}",
                "needs approval",
                self.m.ref_of(request),
            )
            return ProjectsSubmitOutcome(ack=update_ack(say.rescope_needs_approval_text(name)))
        # Never wait for Mixpanel before the ack: without a cached catalog, ask for the save again.
        snapshot = self.d.catalog.cached()
        if snapshot is None:
            self.d.catalog.refresh_in_background()
            return ProjectsSubmitOutcome(ack=_errors(say.PROJECTS_STILL_LOADING))
        catalog = snapshot.projects
        chosen = selected_project_ids(values)
        current = set(request.project_ids)
        target, ref = f"account {request.mixpanel_account_id}", self.m.ref_of(request)
        sensitive = sorted((chosen or set()) & (approval_projects(self.d.policy) - current))
        if sensitive:
            # Never offered (projects_offer holds them back): a forged or stale modal. Audited like any.
            self.m.record_refusal(user_id, "change projects of", target, f"needs approval: {sensitive}", ref)
            names = [_name(p, {p.id: p for p in catalog}) for p in sensitive]
            return ProjectsSubmitOutcome(ack=_errors(say.approval_project_chosen_text(names)))
        store_only = store_only_projects(self.d.policy, request, catalog)
        into_store = sorted((chosen or set()) & (store_only - current))
        if into_store:
            names = [_name(p, {p.id: p for p in catalog}) for p in into_store]
            return ProjectsSubmitOutcome(ack=_errors(say.store_only_project_chosen_text(names)))
        offer = projects_offer(
            self.d.policy, catalog, entitlement, request.project_ids, store_only=store_only
        )
        offered = {p.id for p in offer.shown}
        if chosen is None or not chosen <= offered:
            forged = (
                "garbled choice" if chosen is None else f"projects not offered: {sorted(chosen - offered)}"
            )
            self.m.record_refusal(user_id, "change projects of", target, forged, ref)
            return ProjectsSubmitOutcome(ack=_errors("Choose projects from the list."))
        kept = current - offered  # projects the modal did not show, or this person may not touch, stay
        if not (kept | chosen):
            return ProjectsSubmitOutcome(ack=_errors("Keep at least one project."))
        add, remove = sorted(chosen - current), sorted((current & offered) - chosen)
        if not add and not remove:
            return ProjectsSubmitOutcome(ack=update_ack(say.projects_unchanged_text(name)))

        def apply() -> None:
            text = self._apply(user_id, request, add, remove, str(judged.basis), {p.id: p for p in catalog})
            self.d.delivery.update_view(view_id, status_view(text))
            if scope == SCOPE_HOME:
                self.m.publish_home(user_id, notice=text)

        return ProjectsSubmitOutcome(
            ack=update_ack(say.projects_updating_text(name)), start=lambda: self.m.run("projects", apply)
        )

    def _apply(
        self,
        user_id: str,
        request: StoredRequest,
        add: list[int],
        remove: list[int],
        basis: str,
        projects: dict[int, Project],
    ) -> str:
        name = request.mixpanel_username or request.username
        account_id = request.mixpanel_account_id or 0
        added: list[int] = []
        removed: list[int] = []
        failure: str | None = None
        failure_kind = ""
        try:
            organization_id = self.d.catalog.organization_id()
            if add:
                grants = tuple(ProjectGrant(id=pid, role=request.role) for pid in add)
                self.d.mixpanel.add_to_projects(organization_id, [account_id], grants)
                added = add
            if remove:
                self.d.mixpanel.remove_from_projects(organization_id, [account_id], remove)
                removed = remove
        except MixpanelError as error:
            doing = f"change the projects of `{name}`"
            failure = say.manage_failure_text(error, doing=doing, contact=self.d.policy.contact)
            failure_kind = str(error.kind)
        except OrganizationUnknown:
            failure = CONFIGURATION_PROBLEM.format(contact=self.d.policy.contact)
            failure_kind = "configuration"
        final = request.project_ids
        raced = False
        if added or removed:
            detail = f"allowed as {basis}; added {added or 'none'}; removed {removed or 'none'}"
            if failure is not None:
                detail += f"; then failed: {failure_kind}"
            # The delta, not a whole list: a concurrent save of another modal keeps its change too.
            change = self.m.audit.record(
                lambda: self.m.records.change_projects(
                    request, added=added, removed=removed, actor_id=user_id, detail=detail
                ),
                lambda recorded: (
                    None
                    if recorded is None
                    else say.projects_audit_message(
                        actor_id=user_id,
                        basis=basis,
                        username=name,
                        account_id=account_id,
                        added=[_name(p, projects) for p in added],
                        removed=[_name(p, projects) for p in removed],
                    )
                ),
            )
            if change is not None:
                final = change.request.project_ids
                raced = change.before != request.project_ids
        if failure is not None:
            return failure
        names = [_name(p, projects) for p in final]
        return say.projects_raced_text(name, names) if raced else say.projects_changed_text(name, names)


def _name(project_id: int, projects: dict[int, Project]) -> str:
    return projects[project_id].name if project_id in projects else f"project {project_id}"
