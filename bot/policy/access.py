"""The access policy's decisions: who may create which accounts (the policy file is bot/policy/file.py).

`decide` is the single, pure decision used both when the command is typed (to build a form that offers
only what is allowed) and when the form comes back (to refuse anything forged or stale).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum

from bot.models import AccountSpec, Requester, Role, Standing, Workspace
from bot.policy.file import Policy


class RefusalReason(StrEnum):
    NOT_A_MEMBER = "not_a_member"
    EXTERNAL = "external"
    NOT_LISTED = "not_listed"
    RATE_LIMITED = "rate_limited"
    UNVERIFIED = "unverified"


class FormField(StrEnum):
    USERNAME = "username"
    ROLE = "role"
    PROJECTS = "projects"
    EXPIRY = "expiry"
    DESTINATION = "destination"
    SECRET_NAME = "secret_name"  # noqa: S105 - a form field, not a secret


@dataclass(frozen=True)
class Violation:
    field: FormField
    message: str


class ApprovalTrigger(StrEnum):
    """Which rule of `approval.required_for` made a request need someone else's yes."""

    ROLE = "role"
    PROJECT = "project"
    LONG_EXPIRY = "long_expiry"
    NEVER_EXPIRES = "never_expires"


@dataclass(frozen=True)
class Entitlement:
    """What a permitted requester may choose: the form is built from this and nothing else."""

    max_role: Role
    project_ids: frozenset[int] | None  # None: every project of the organization
    max_expiry_days: int
    allow_never: bool
    may_need_approval: bool = False  # some choice on offer needs approval: the form asks for a reason
    destinations: tuple[str, ...] = ()  # the policy's destinations this person may pick
    to_me: bool = True  # may the credentials come to the person, in Slack (for some choice of account)?

    @property
    def roles(self) -> list[Role]:
        return self.max_role.roles_up_to()

    def offers_project(self, project_id: int) -> bool:
        return self.project_ids is None or project_id in self.project_ids


@dataclass(frozen=True)
class Decision:
    entitlement: Entitlement | None
    refusal: RefusalReason | None = None
    violations: tuple[Violation, ...] = field(default=())
    needs_approval: tuple[ApprovalTrigger, ...] = field(default=())  # empty: no approval needed

    @property
    def allowed(self) -> bool:
        return self.refusal is None and not self.violations


def within_quota(policy: Policy, recent_creations: int) -> bool:
    """May one more account be made, given how many this person made in the last 24 hours?"""
    return recent_creations < policy.rate_limit.per_user_per_day


def entitlement_for(policy: Policy, requester: Requester) -> Entitlement:
    ceiling = policy.max_role
    for grant in policy.elevated:
        if grant.matches(requester) and grant.max_role.rank > ceiling.rank:
            ceiling = grant.max_role
    allowed = frozenset(policy.projects.allowed) if policy.projects.allowed is not None else None
    entitlement = Entitlement(
        max_role=ceiling,
        project_ids=allowed,
        max_expiry_days=policy.expiry.max_days,
        allow_never=policy.expiry.allow_never,
        destinations=tuple(d.name for d in policy.destinations if d.may_pick(requester)),
        to_me=policy.destination_required is None or not policy.destination_required.everyone,
    )
    if policy.approval is None:
        return entitlement
    rules = policy.approval.required_for
    may_need = (
        any(role.rank <= ceiling.rank for role in rules.roles)
        or any(entitlement.offers_project(project_id) for project_id in rules.projects)
        or (rules.expiry_over_days is not None and rules.expiry_over_days < entitlement.max_expiry_days)
        or (rules.never_expires and entitlement.allow_never)
    )
    return replace(entitlement, may_need_approval=may_need)


def destination_required(policy: Policy, spec: AccountSpec) -> bool:
    """Must this account's credentials go straight into a secret store (never to a person)?"""
    rule = policy.destination_required
    if rule is None:
        return False
    return rule.everyone or spec.role in rule.roles or not set(spec.project_ids).isdisjoint(rule.projects)


def latest_expiry(entitlement: Entitlement, today: date) -> date:
    """The latest expiry date the policy grants an account asked for on `today` (the person's local date)."""
    return today + timedelta(days=entitlement.max_expiry_days)


def is_approver(policy: Policy, person: Requester | None, *, installation: Workspace) -> bool:
    """May this person decide other people's requests? Full members from here or an admitted workspace
    only, like requesters."""
    return (
        policy.approval is not None
        and person is not None
        and (person.belongs_to(installation) or policy.admits_external(person))
        and person.standing is Standing.MEMBER
        and policy.approval.approvers.matches(person)
    )


def break_glass_offered(policy: Policy, person: Requester) -> bool:
    """For a person `decide` has already admitted (so the other-workspace rule is already applied)."""
    return (
        policy.approval is not None
        and policy.approval.break_glass
        and person.standing is Standing.MEMBER
        and policy.approval.approvers.matches(person)
    )


def approval_triggers(policy: Policy, spec: AccountSpec, today: date) -> tuple[ApprovalTrigger, ...]:
    """Every rule of `approval.required_for` that this account matches; empty when none does."""
    if policy.approval is None:
        return ()
    rules = policy.approval.required_for
    triggers = []
    if spec.role in rules.roles:
        triggers.append(ApprovalTrigger.ROLE)
    if not set(spec.project_ids).isdisjoint(rules.projects):
        triggers.append(ApprovalTrigger.PROJECT)
    if spec.expires_on is None:
        if rules.never_expires:
            triggers.append(ApprovalTrigger.NEVER_EXPIRES)
    elif rules.expiry_over_days is not None and spec.expires_on > today + timedelta(
        days=rules.expiry_over_days
    ):
        triggers.append(ApprovalTrigger.LONG_EXPIRY)
    return tuple(triggers)


def decide(
    policy: Policy,
    requester: Requester | None,
    spec: AccountSpec | None,
    *,
    installation: Workspace,
    today: date,
    recent_creations: int,
    known_project_ids: Iterable[int] | None = None,
) -> Decision:
    """May this person create this account?

    `requester` is None when Slack could not tell us who they are: that is a refusal, never a pass.
    `spec` is None at command time, when only the person is judged. `installation` is the workspace the
    bot is installed in: people from elsewhere pass only if the policy names their team. `today` is the
    requester's local date. `known_project_ids` are the organization's projects, when known.
    """
    if requester is None:
        return Decision(entitlement=None, refusal=RefusalReason.UNVERIFIED)
    if not requester.belongs_to(installation) and not policy.admits_external(requester):
        return Decision(entitlement=None, refusal=RefusalReason.EXTERNAL)
    if requester.standing is not Standing.MEMBER:
        return Decision(entitlement=None, refusal=RefusalReason.NOT_A_MEMBER)
    if policy.requesters is not None and not policy.requesters.matches(requester):
        return Decision(entitlement=None, refusal=RefusalReason.NOT_LISTED)
    entitlement = entitlement_for(policy, requester)
    if not within_quota(policy, recent_creations):
        return Decision(entitlement=entitlement, refusal=RefusalReason.RATE_LIMITED)
    if spec is None:
        return Decision(entitlement=entitlement)
    violations = tuple(_spec_violations(entitlement, spec, today, known_project_ids)) + tuple(
        _destination_violations(policy, entitlement, spec)
    )
    return Decision(
        entitlement=entitlement,
        violations=violations,
        needs_approval=() if violations else approval_triggers(policy, spec, today),
    )


def _spec_violations(
    entitlement: Entitlement, spec: AccountSpec, today: date, known_project_ids: Iterable[int] | None
) -> Iterable[Violation]:
    if spec.role.rank > entitlement.max_role.rank:
        yield Violation(FormField.ROLE, f"You may grant at most the {entitlement.max_role} role.")
    known = set(known_project_ids) if known_project_ids is not None else None
    if not spec.project_ids:
        yield Violation(FormField.PROJECTS, "Choose at least one project.")
    refused = [
        project_id
        for project_id in spec.project_ids
        if not entitlement.offers_project(project_id) or (known is not None and project_id not in known)
    ]
    if refused:
        listed = ", ".join(str(project_id) for project_id in sorted(refused))
        yield Violation(FormField.PROJECTS, f"You may not add an account to these projects: {listed}.")
    if spec.expires_on is None:
        if not entitlement.allow_never:
            yield Violation(
                FormField.EXPIRY, "Choose an expiry date: accounts that never expire are not allowed."
            )
    elif spec.expires_on <= today:
        yield Violation(FormField.EXPIRY, "The expiry date must be in the future.")
    elif spec.expires_on > latest_expiry(entitlement, today):
        yield Violation(
            FormField.EXPIRY,
            f"The expiry may be at most {entitlement.max_expiry_days} days from today.",
        )


def _destination_violations(
    policy: Policy, entitlement: Entitlement, spec: AccountSpec
) -> Iterable[Violation]:
    if spec.destination is None:
        if not destination_required(policy, spec):
            return
        if entitlement.destinations:
            yield Violation(
                FormField.DESTINATION,
                "This account's token must go straight into a secret store: choose one of them.",
            )
            return
        # The form has no Deliver to block (no store is open to this person): key the error to the choice
        # that made a store necessary, so that Slack can show it and the person can change it.
        rule = policy.destination_required
        field = FormField.USERNAME
        if rule is not None and not rule.everyone:
            field = FormField.ROLE if spec.role in rule.roles else FormField.PROJECTS
        yield Violation(
            field,
            "This account's token must go straight into a secret store, and none is open to you; "
            f"choose another role or projects, or ask {policy.contact}.",
        )
    elif spec.destination not in entitlement.destinations:
        yield Violation(FormField.DESTINATION, "You may not deliver to that secret store; choose another.")
