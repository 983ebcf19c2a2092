"""Projects…: add an existing account to projects, or remove it from some, within the policy.

The modal offers only projects this person may grant, and only for an account whose role is within their
ceiling. The submission is judged again from scratch: the modal's metadata carries only the request id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackClientError

from bot import manage_messages as say
from bot.catalog import OrganizationUnknown
from bot.manage import ManageFlow
from bot.manage_policy import AccountOwnership, ManageAction, ManageRefusal, may_manage
from bot.manage_views import SCOPE_HOME, parse_target
from bot.messages import CONFIGURATION_PROBLEM
from bot.mixpanel import MixpanelError
from bot.mixpanel_models import ProjectGrant
from bot.models import Project
from bot.policy import Entitlement, entitlement_for
from bot.projects_view import BLOCK_PROJECT_CHOICE as BLOCK
from bot.projects_view import projects_modal, selected_project_ids
from bot.schema import RequestState, StoredRequest
from bot.views import offered_projects, status_view

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


def _update(text: str) -> dict[str, Any]:
    return {"response_action": "update", "view": status_view(text)}


def judge_account(
    manage: ManageFlow, user_id: str, request_id: str | None, action: ManageAction, verb: str
) -> Judged:
    """Re-scope or replace: the account must be a live one the bot made, this person's to manage, and its
    role within the person's ceiling. Refusals are audited."""
    request = manage.records.get(request_id) if request_id else None
    if request is None or request.mixpanel_account_id is None:
        manage.record_refusal(user_id, verb, f"request `{str(request_id)[:64]}`", "no such account")
        return Judged(refusal=say.UNKNOWN_ACCOUNT)
    requester = manage.d.directory.try_requester(user_id)
    decision = may_manage(
        manage.d.policy, requester, action, AccountOwnership(creator_id=request.requester_id)
    )
    ref = manage.ref_of(request)
    if not decision.allowed or requester is None:
        reason = decision.refusal or ManageRefusal.UNVERIFIED
        manage.record_refusal(user_id, verb, f"account {ref.account_id}", str(reason), ref)
        return Judged(refusal=say.manage_refusal_text(reason, contact=manage.d.policy.contact))
    if request.state is not RequestState.DELIVERED:
        return Judged(refusal=say.already_deleted_text(ref.username or request.username))
    entitlement = entitlement_for(manage.d.policy, requester)
    if request.role.rank > entitlement.max_role.rank:
        manage.record_refusal(user_id, verb, f"account {ref.account_id}", "role above ceiling", ref)
        return Judged(refusal=say.role_above_ceiling_text(str(request.role), str(entitlement.max_role), verb))
    return Judged(request=request, entitlement=entitlement, basis=str(decision.basis))


class RescopeFlow:
    def __init__(self, manage: ManageFlow):
        self.m = manage
        self.d = manage.d

    def _catalog(self) -> list[Project] | None:
        snapshot = self.d.catalog.cached()
        if snapshot is None:
            try:
                snapshot = self.d.catalog.load()
            except (MixpanelError, OrganizationUnknown):
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
        catalog = self._catalog()
        if catalog is None:
            return say.PROJECTS_UNAVAILABLE
        request = judged.request
        view = projects_modal(
            username=request.mixpanel_username or request.username,
            role=str(request.role),
            current=request.project_ids,
            offered=offered_projects(catalog, judged.entitlement),
            projects={p.id: p for p in catalog},
            metadata=json.dumps({"r": request.id, "s": scope}),
        )
        try:
            self.d.slack.views_open(trigger_id=trigger_id, view=view)
        except (SlackClientError, OSError) as error:
            log.warning("views.open for projects failed: %s", type(error).__name__)
            return say.FORM_NOT_OPENED
        return None

    def submit(
        self, *, user_id: str, metadata: str | None, values: dict[str, Any], view_id: str | None
    ) -> ProjectsSubmitOutcome:
        try:
            carried = json.loads(metadata or "")
            request_id, scope = str(carried["r"]), str(carried.get("s") or "")
        except (ValueError, TypeError, KeyError):
            self.m.record_refusal(user_id, "change projects of", "a garbled form", "bad metadata")
            return ProjectsSubmitOutcome(ack=_update(say.UNKNOWN_ACCOUNT))
        judged = judge_account(self.m, user_id, request_id, ManageAction.RESCOPE, "change projects of")
        if judged.refusal is not None or judged.request is None or judged.entitlement is None:
            return ProjectsSubmitOutcome(ack=_update(judged.refusal or say.UNKNOWN_ACCOUNT))
        request, entitlement = judged.request, judged.entitlement
        chosen = selected_project_ids(values)
        catalog = self._catalog() or []
        offered = {p.id for p in offered_projects(catalog, entitlement)}
        if chosen is None or not chosen <= offered:
            return ProjectsSubmitOutcome(
                ack={"response_action": "errors", "errors": {BLOCK: "Choose projects from the list."}}
            )
        current = set(request.project_ids)
        kept = current - offered  # projects this person may not touch stay as they are
        if not (kept | chosen):
            return ProjectsSubmitOutcome(
                ack={"response_action": "errors", "errors": {BLOCK: "Keep at least one project."}}
            )
        add, remove = sorted(chosen - current), sorted((current & offered) - chosen)
        name = request.mixpanel_username or request.username
        if not add and not remove:
            return ProjectsSubmitOutcome(ack=_update(say.projects_unchanged_text(name)))

        def apply() -> None:
            text = self._apply(user_id, request, add, remove, str(judged.basis), {p.id: p for p in catalog})
            self.d.delivery.update_view(view_id, status_view(text))
            if scope == SCOPE_HOME:
                self.m.publish_home(user_id, notice=text)

        return ProjectsSubmitOutcome(
            ack=_update(say.projects_updating_text(name)), start=lambda: self.m.run("projects", apply)
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
        now_in = set(request.project_ids)
        failure: str | None = None
        failure_kind = ""
        try:
            organization_id = self.d.catalog.organization_id()
            if add:
                grants = tuple(ProjectGrant(id=pid, role=request.role) for pid in add)
                self.d.mixpanel.add_to_projects(organization_id, [account_id], grants)
                now_in |= set(add)
            if remove:
                self.d.mixpanel.remove_from_projects(organization_id, [account_id], remove)
                now_in -= set(remove)
        except MixpanelError as error:
            doing = f"change the projects of `{name}`"
            failure = say.manage_failure_text(error, doing=doing, contact=self.d.policy.contact)
            failure_kind = str(error.kind)
        except OrganizationUnknown:
            failure = CONFIGURATION_PROBLEM.format(contact=self.d.policy.contact)
            failure_kind = "configuration"
        final = tuple(sorted(now_in))
        if final != tuple(sorted(request.project_ids)):
            detail = f"allowed as {basis}; added {add or 'none'}; removed {remove or 'none'}"
            if failure is not None:
                detail += f"; then failed: {failure_kind}"
            self.m.audit.record(
                lambda: self.m.records.set_projects(request, final, actor_id=user_id, detail=detail),
                say.projects_audit_message(
                    actor_id=user_id,
                    basis=basis,
                    username=name,
                    account_id=account_id,
                    added=[_name(p, projects) for p in add if p in now_in],
                    removed=[_name(p, projects) for p in remove if p not in now_in],
                ),
            )
        if failure is not None:
            return failure
        return say.projects_changed_text(name, [_name(p, projects) for p in final])


def _name(project_id: int, projects: dict[int, Project]) -> str:
    return projects[project_id].name if project_id in projects else f"project {project_id}"
