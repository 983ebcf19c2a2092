"""What Mixpanel's Service Accounts API sends and takes: the response models (the subset of the published
spec the bot relies on, lenient about extra fields), the parsed `/me`, and the body of a create call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from bot.models import Project, Role


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ServiceAccountRead(Lenient):
    id: int
    username: str
    expires: str | None = None
    created: str | None = None
    last_used: str | None = None
    creator: int | None = None
    user: int | None = None

    def created_at(self) -> datetime | None:
        return parse_timestamp(self.created)


class CreatedServiceAccount(ServiceAccountRead):
    token: SecretStr


class CreateResponse(Lenient):
    status: str
    results: CreatedServiceAccount


class ListResponse(Lenient):
    status: str
    results: list[ServiceAccountRead]


class ProjectMember(ServiceAccountRead):
    """An account as `GET /projects/{id}/service-accounts` lists it: with its role on that project."""

    role: str | None = None


class ProjectMembersResponse(Lenient):
    status: str
    results: list[ProjectMember]


class GetResponse(Lenient):
    status: str
    results: ServiceAccountRead


class Organization(Lenient):
    id: int | None = None
    name: str | None = None
    role: str | None = None  # the bot's own role in this organization


class MeProject(Lenient):
    name: str
    organization_id: int


class MeResults(Lenient):
    id: int | None = None  # the bot's own Mixpanel user: `creator` of every account it makes
    user_id: int | None = None  # some answers name it so
    organizations: dict[str, Organization] = {}
    projects: dict[str, MeProject] = {}


class MeResponse(Lenient):
    results: MeResults


@dataclass(frozen=True)
class MeOrganization:
    id: int
    name: str | None
    role: str | None  # the bot's own organization role, when /me shows it


@dataclass(frozen=True)
class Me:
    organization_ids: list[int]
    projects: list[Project]
    organizations: tuple[MeOrganization, ...] = ()
    user_id: int | None = None  # the bot's own Mixpanel user: `creator` of the accounts it makes

    def organization(self, organization_id: int) -> MeOrganization | None:
        return next((org for org in self.organizations if org.id == organization_id), None)


@dataclass(frozen=True)
class ProjectGrant:
    id: int
    role: Role


@dataclass(frozen=True)
class NewServiceAccount:
    """The body of a create call (spec: ServiceAccountWrite)."""

    username: str
    role: Role
    expires: str | None
    projects: tuple[ProjectGrant, ...]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "username": self.username,
            "role": str(self.role),
            "projects": [{"id": grant.id, "role": str(grant.role)} for grant in self.projects],
        }
        if self.expires is not None:
            body["expires"] = self.expires
        return body


def parse_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
