"""Domain types shared by policy, storage, views and the Mixpanel client."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo


class Role(StrEnum):
    """Mixpanel's RoleEnum, declared from least to most privileged."""

    CONSUMER = "consumer"
    ANALYST = "analyst"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return ROLES_BY_PRIVILEGE.index(self)

    def roles_up_to(self) -> list[Role]:
        return ROLES_BY_PRIVILEGE[: self.rank + 1]


ROLES_BY_PRIVILEGE: list[Role] = list(Role)

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.CONSUMER: "Consumer: read reports",
    Role.ANALYST: "Analyst: query and build reports",
    Role.ADMIN: "Admin: manage projects and data",
    Role.OWNER: "Owner: full control of the organization",
}

USERNAME_MAX_LENGTH = 64
# Letters, digits and . _ - keep the name safe in URLs, shells and Mixpanel's `name.<hex>.suffix` scheme.
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# What Mixpanel appends (`etl` becomes `etl.<hex>.mp-service-account`). A requested name ending in it could
# pass for another request's account in the clean-up's name match, so the form refuses it.
MIXPANEL_USERNAME_SUFFIX = ".mp-service-account"


class Standing(StrEnum):
    """What Slack says about a person, reduced to what the policy needs."""

    MEMBER = "member"
    GUEST = "guest"
    BOT = "bot"
    DEACTIVATED = "deactivated"


@dataclass(frozen=True)
class Workspace:
    """A Slack workspace (team) and, on Enterprise Grid, its organization: whom an installation belongs to."""

    team_id: str | None
    enterprise_id: str | None = None


@dataclass(frozen=True)
class Requester:
    user_id: str
    standing: Standing
    usergroups: frozenset[str] = frozenset()
    timezone: str = "UTC"
    # Where the person's account lives (users.info `team_id`, `enterprise_user.enterprise_id`), and whether
    # Slack marks them as a stranger (Slack Connect). None: Slack did not say, which counts as external.
    team_id: str | None = None
    enterprise_id: str | None = None
    is_stranger: bool = False

    def belongs_to(self, installation: Workspace) -> bool:
        """Is this person a member of the installation's own workspace (or, on Grid, organization)?"""
        if self.is_stranger:
            return False
        if self.team_id is not None and self.team_id == installation.team_id:
            return True
        return self.enterprise_id is not None and self.enterprise_id == installation.enterprise_id


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    organization_id: int


@dataclass(frozen=True)
class AccountSpec:
    """What a requester asked for, after parsing the form."""

    username: str
    role: Role
    project_ids: tuple[int, ...]
    expires_on: date | None  # None: never expires
    timezone: str = "UTC"
    # Where the credentials go: a policy destination's name and the secret's name there; None: to the
    # requester, in Slack.
    destination: str | None = None
    secret_name: str | None = None

    @property
    def expires_at(self) -> datetime | None:
        return end_of_day_utc(self.expires_on, self.timezone) if self.expires_on else None


@dataclass(frozen=True)
class SubmissionContext:
    """Where the requester can be reached; carried from the command to the submission."""

    user_id: str
    team_id: str | None = None
    channel_id: str | None = None
    response_url: str | None = field(default=None, repr=False)
    replaces_request_id: str | None = None  # Replace…: the request whose account this one replaces


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError, OSError):
        return ZoneInfo("UTC")


def end_of_day_utc(day: date, timezone: str) -> datetime:
    """The last second of `day` in the requester's time zone, as an aware UTC datetime."""
    local = datetime.combine(day, time(23, 59, 59), tzinfo=zone(timezone))
    return local.astimezone(UTC)


def mixpanel_timestamp(moment: datetime) -> str:
    """Mixpanel accepts exactly YYYY-MM-DDTHH:MM:SSZ."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def today_in(timezone: str, now: datetime) -> date:
    return now.astimezone(zone(timezone)).date()
