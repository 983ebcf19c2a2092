"""The policy file: its schema (strict: an unknown key is an error) and loading it. The decisions taken over
it are in bot/policy/access.py."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.destinations.base import KindConfig
from bot.destinations.registry import KINDS
from bot.models import Requester, Role


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonSelector(_Strict):
    users: list[str] = Field(default_factory=list)
    usergroups: list[str] = Field(default_factory=list)

    @field_validator("users", "usergroups")
    @classmethod
    def _slack_ids(cls, values: list[str]) -> list[str]:
        for value in values:
            if not isinstance(value, str) or not value or not value.isalnum() or not value.isupper():
                raise ValueError(f"{value!r} is not a Slack id (like U012ABCDE or S0123ABC)")
        return values

    def matches(self, requester: Requester) -> bool:
        return requester.user_id in self.users or not requester.usergroups.isdisjoint(self.usergroups)


class ElevatedGrant(PersonSelector):
    max_role: Role


class ExpiryPolicy(_Strict):
    max_days: int = Field(default=365, ge=1, le=3650)
    allow_never: bool = False


class ProjectPolicy(_Strict):
    allowed: list[int] | None = None


class ReminderPolicy(_Strict):
    # Days before expiry at which the creator is reminded; [] turns reminders off.
    days_before: list[int] = Field(default_factory=lambda: [7, 1], max_length=10)

    @field_validator("days_before")
    @classmethod
    def _distinct_days(cls, values: list[int]) -> list[int]:
        if any(not 1 <= value <= 365 for value in values):
            raise ValueError("each entry must be a number of days from 1 to 365")
        if len(set(values)) != len(values):
            raise ValueError("entries must be distinct")
        return sorted(values, reverse=True)


class RateLimit(_Strict):
    per_user_per_day: int = Field(default=10, ge=1, le=10_000)


class ApprovalTriggers(_Strict):
    """A request needs approval when ANY of these holds."""

    roles: list[Role] = Field(default_factory=list)
    projects: list[int] = Field(default_factory=list)  # sensitive project ids
    expiry_over_days: int | None = Field(default=None, ge=0)
    never_expires: bool = False


class ApprovalPolicy(_Strict):
    required_for: ApprovalTriggers = Field(default_factory=ApprovalTriggers)
    approvers: PersonSelector
    approvals_needed: int = Field(default=1, ge=1, le=10)
    channel: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]+$")
    request_ttl_hours: float = Field(default=24, gt=0, le=24 * 30)
    remind_after_hours: float | None = Field(default=4, gt=0)
    claim_ttl_hours: float = Field(default=72, gt=0, le=24 * 30)
    break_glass: bool = False

    @field_validator("approvers")
    @classmethod
    def _somebody_decides(cls, approvers: PersonSelector) -> PersonSelector:
        if not approvers.users and not approvers.usergroups:
            raise ValueError("names nobody, so no request that needs approval could ever be approved")
        return approvers

    @field_validator("approvals_needed")
    @classmethod
    def _enough_approvers(cls, needed: int, info: ValidationInfo) -> int:
        approvers = info.data.get("approvers")
        # User groups are resolved at run time; only a list of people alone can be counted here.
        if approvers is not None and not approvers.usergroups and len(set(approvers.users)) < needed:
            raise ValueError(
                f"is {needed}, but approval.approvers lists only {len(set(approvers.users))} "
                "people, so no request could ever collect enough approvals"
            )
        return needed


class DeleteOld(StrEnum):
    """When a rotated account's predecessor is deleted (docs/rotation.md)."""

    AFTER_OVERLAP = "after_overlap"  # once overlap_hours have passed since the new secret was verified
    WHEN_UNUSED = "when_unused"  # once Mixpanel's last_used has stood still for overlap_hours (with a cap)
    NEVER = "never"  # left to expire on its own


class RotationOverride(_Strict):
    """A destination's own `rotation:` keys; what is left out comes from the global block."""

    days_before_expiry: int | None = Field(default=None, ge=1, le=365)
    every_days: int | None = Field(default=None, ge=1, le=3650)
    overlap_hours: float | None = Field(default=None, gt=0, le=24 * 30)
    delete_old: DeleteOld | None = None
    unused_cap_hours: float | None = Field(default=None, gt=0, le=24 * 90)


class RotationSettings(_Strict):
    """The rotation rules in force for one destination (the global block, overridden per destination)."""

    # Rotate this many days before the old account expires: time to tell people if today's policy refuses.
    days_before_expiry: int = Field(default=14, ge=1, le=365)
    # Rotate non-expiring accounts too, this many days after they were made (None: never).
    every_days: int | None = Field(default=None, ge=1, le=3650)
    overlap_hours: float = Field(default=24, gt=0, le=24 * 30)
    delete_old: DeleteOld = DeleteOld.AFTER_OVERLAP
    # when_unused: delete anyway this long after the new secret was written, even if the old one is in use.
    unused_cap_hours: float = Field(default=24 * 7, gt=0, le=24 * 90)


class RotationPolicy(RotationSettings):
    """`rotation:` in the policy: the global rules, and `destinations:` overriding them per destination."""

    enabled: bool = True
    destinations: dict[str, RotationOverride] = Field(default_factory=dict)

    def for_destination(self, name: str) -> RotationSettings:
        override = self.destinations.get(name)
        chosen = {key: getattr(self, key) for key in RotationSettings.model_fields}
        if override is not None:
            chosen.update(override.model_dump(exclude_none=True))
        return RotationSettings(**chosen)


DESTINATION_OWN_KEYS = ("name", "kind", "allowed")
# The Deliver to option "To me, in Slack" (bot/create/views.py TO_ME_VALUE): no destination may be named so.
TO_ME_OPTION_VALUE = "slack"


class DestinationPolicy(_Strict):
    """One `destinations:` entry: its name (shown in the form), its kind, who may pick it (default: everyone
    allowed to request) and the kind's own keys, checked strictly by the kind's module."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    kind: str
    allowed: PersonSelector | None = None
    config: KindConfig

    @model_validator(mode="before")
    @classmethod
    def _kind_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "config" in data:
            return data
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(sorted(KINDS))}, not {kind!r}")
        own = {key: value for key, value in data.items() if key not in DESTINATION_OWN_KEYS}
        try:
            config = KINDS[kind].config.model_validate({"kind": kind, **own})
        except ValidationError as error:
            problems = []
            for item in error.errors():
                key = ".".join(str(part) for part in item["loc"])
                problems.append(
                    f"{key}: {'unknown key' if item['type'] == 'extra_forbidden' else item['msg']}"
                )
            raise ValueError("; ".join(problems)) from None
        return {**{key: data[key] for key in DESTINATION_OWN_KEYS if key in data}, "config": config}

    @field_validator("name")
    @classmethod
    def _not_to_me(cls, name: str) -> str:
        if name == TO_ME_OPTION_VALUE:
            raise ValueError(f"{name!r} is the form's value for 'To me, in Slack'; choose another name")
        return name

    def may_pick(self, requester: Requester) -> bool:
        return self.allowed is None or self.allowed.matches(requester)


class DestinationRequirement(_Strict):
    """When "To me, in Slack" is not allowed: for everyone, or for accounts with these roles or projects."""

    everyone: bool = False
    roles: list[Role] = Field(default_factory=list)
    projects: list[int] = Field(default_factory=list)


class IdleDeletion(_Strict):
    """`idle_action: {delete_after_days: N}`: an idle account whose owner did nothing for N more days."""

    delete_after_days: int = Field(ge=2, le=365)  # 2 at least: the owner is warned a day before


class GovernancePolicy(_Strict):
    """Idle accounts, people who leave, accounts made outside the bot, periodic reviews (docs/governance.md).
    Every key is off, or only reports, by default: the bot deletes nothing here without a click unless told
    to by `idle_action` or `review_action`."""

    idle_days: int | None = Field(default=None, ge=1, le=3650)
    idle_action: Literal["notify"] | IdleDeletion = "notify"
    # A user group (S...) whose members are offered a departed owner's accounts; otherwise the admins.
    successor: str | None = Field(default=None, pattern=r"^S[A-Z0-9]+$")
    orphan_days: int = Field(default=14, ge=1, le=3650)
    unmanaged: Literal["report", "notify"] = "report"
    review_every_days: int | None = Field(default=None, ge=7, le=3650)
    review_grace_days: int = Field(default=14, ge=1, le=365)
    review_action: Literal["report", "delete"] = "report"

    @property
    def idle_delete_after_days(self) -> int | None:
        return self.idle_action.delete_after_days if isinstance(self.idle_action, IdleDeletion) else None


class Policy(_Strict):
    requesters: PersonSelector | None = None
    max_role: Role = Role.ANALYST
    elevated: list[ElevatedGrant] = Field(default_factory=list)
    expiry: ExpiryPolicy = Field(default_factory=ExpiryPolicy)
    projects: ProjectPolicy = Field(default_factory=ProjectPolicy)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    # Other workspaces (T...) or Grid organizations (E...) whose people may use the bot; default none.
    external_teams: list[str] = Field(default_factory=list)
    audit_channel: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]+$")
    contact: str = Field(default="the bot's administrators", min_length=1, max_length=200)
    # People who manage every service account of the organization, including those made outside the bot.
    admins: PersonSelector = Field(default_factory=PersonSelector)
    reminders: ReminderPolicy = Field(default_factory=ReminderPolicy)
    approval: ApprovalPolicy | None = None
    # Secret stores a new account's credentials may go to instead of the requester (bot/destinations).
    destinations: list[DestinationPolicy] = Field(default_factory=list)
    destination_required: DestinationRequirement | None = None
    # Replacing accounts that live in a destination before they expire (bot/rotate, docs/rotation.md).
    rotation: RotationPolicy = Field(default_factory=RotationPolicy)

    @field_validator("destinations")
    @classmethod
    def _unique_destination_names(cls, values: list[DestinationPolicy]) -> list[DestinationPolicy]:
        names = [destination.name for destination in values]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"names must be unique; repeated: {', '.join(repeated)}")
        return values

    @model_validator(mode="after")
    def _required_destination_exists(self) -> Policy:
        if self.destination_required is not None and not self.destinations:
            raise ValueError("destination_required: needs at least one entry in destinations")
        return self

    @model_validator(mode="after")
    def _rotated_destinations_exist(self) -> Policy:
        unknown = sorted(set(self.rotation.destinations) - {entry.name for entry in self.destinations})
        if unknown:
            raise ValueError(f"rotation.destinations names no destination: {', '.join(unknown)}")
        return self

    def destination(self, name: str | None) -> DestinationPolicy | None:
        return next((entry for entry in self.destinations if entry.name == name), None)

    governance: GovernancePolicy = Field(default_factory=GovernancePolicy)

    @field_validator("external_teams")
    @classmethod
    def _team_ids(cls, values: list[str]) -> list[str]:
        for value in values:
            if not isinstance(value, str) or not re.fullmatch(r"[TE][A-Z0-9]+", value):
                raise ValueError(
                    f"{value!r} is not a Slack team or organization id (like T0123ABC or E0123ABC)"
                )
        return values

    def admits_external(self, requester: Requester) -> bool:
        """Does the policy name the other workspace or organization this person comes from?"""
        teams = set(self.external_teams)
        return (requester.team_id is not None and requester.team_id in teams) or (
            requester.enterprise_id is not None and requester.enterprise_id in teams
        )

    def usergroups_in_use(self) -> set[str]:
        groups = set(self.requesters.usergroups) if self.requesters else set()
        groups.update(self.admins.usergroups)
        for grant in self.elevated:
            groups.update(grant.usergroups)
        if self.approval is not None:
            groups.update(self.approval.approvers.usergroups)
        for destination in self.destinations:
            if destination.allowed is not None:
                groups.update(destination.allowed.usergroups)
        if self.governance.successor:
            groups.add(self.governance.successor)
        return groups

    def selectors(self) -> list[tuple[str, PersonSelector]]:
        """Every list of people in the policy that names someone, with its key (e.g. "elevated.0"), wherever
        it sits."""
        return list(_selectors_in(self, ""))

    def channels(self) -> dict[str, str]:
        """Every channel the policy names, by key. A new channel key belongs here, in one line."""
        named = {
            "audit_channel": self.audit_channel,
            "approval.channel": self.approval.channel if self.approval else None,
        }
        return {key: channel for key, channel in named.items() if channel}


def _selectors_in(value: object, key: str) -> Iterable[tuple[str, PersonSelector]]:
    if isinstance(value, PersonSelector) and (value.users or value.usergroups):
        yield key, value
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _selectors_in(getattr(value, name), f"{key}.{name}" if key else name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _selectors_in(item, f"{key}.{index}")


class PolicyError(Exception):
    def __init__(self, path: Path, problems: list[str]):
        super().__init__("\n".join(f"{path}: {problem}" for problem in problems))
        self.problems = problems


def load_policy(path: Path | None) -> Policy:
    """Read the YAML policy; no file means the defaults, which are deliberately conservative."""
    if path is None:
        return Policy()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PolicyError(path, [f"cannot be read ({error.strerror})"]) from None
    except yaml.YAMLError as error:
        raise PolicyError(path, [f"is not valid YAML ({error})"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PolicyError(path, ["must be a mapping of policy keys"])
    try:
        return Policy.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "(top level)"
            if item["type"] == "extra_forbidden":
                message = "unknown key"
            elif item["type"] == "value_error":
                message = str(item.get("ctx", {}).get("error", item["msg"]))
            else:
                message = item["msg"]
            problems.append(f"{key}: {message}")
        raise PolicyError(path, problems) from None
