"""Live accounts from Mixpanel joined with the bot's stored requests: a pure function, tested by tables.

Mixpanel knows what exists, when it expires and when it was last used; the bot knows who asked for it,
with which role and projects. Neither alone answers "what do I have?".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from bot.db.schema import RequestState, StoredRequest
from bot.mixpanel.models import ServiceAccountRead, parse_timestamp
from bot.models import Role


class Presence(StrEnum):
    LIVE = "live"
    GONE = "gone"  # the bot delivered it, and Mixpanel no longer has it
    SETTLING = "settling"  # the bot is still creating it, or cleaning up after a failed creation


@dataclass(frozen=True)
class AccountEntry:
    account_id: int
    username: str
    presence: Presence
    request: StoredRequest | None  # None: made outside the bot
    expires_at: datetime | None
    last_used: datetime | None
    created_at: datetime | None
    is_bot_itself: bool = False
    replaced_by: str | None = None  # the full username of the account that replaced this one
    # For accounts made outside the bot: (project id, role) as Mixpanel's project listings say, if asked.
    memberships: tuple[tuple[int, str], ...] | None = None
    mixpanel_creator: int | None = None  # the Mixpanel user who made it, as Mixpanel's `creator` says
    idle: bool = False  # set by governance (bot/govern/idle.py) when the policy's idle_days is set
    rotation: str | None = None  # where its rotation is, and the next date (bot/rotate/views.py)

    @property
    def made_by_bot(self) -> bool:
        return self.request is not None

    @property
    def role(self) -> Role | str | None:
        if self.request:
            return self.request.role
        roles = {role for _, role in self.memberships or ()}
        return roles.pop() if len(roles) == 1 else None

    @property
    def project_ids(self) -> tuple[int, ...] | None:
        if self.request:
            return self.request.project_ids
        return tuple(pid for pid, _ in self.memberships) if self.memberships is not None else None

    @property
    def creator_id(self) -> str | None:
        return self.request.requester_id if self.request else None

    @property
    def owner_id(self) -> str | None:
        """Who owns it now (the creator, until a takeover or an adoption); None: made outside the bot."""
        return self.request.owner if self.request else None

    @property
    def manageable(self) -> bool:
        return self.presence is Presence.LIVE and not self.is_bot_itself


def join_accounts(
    live: list[ServiceAccountRead],
    records: dict[int, StoredRequest],
    *,
    requester_id: str | None,
    own_username: str | None = None,
    memberships: dict[int, list[tuple[int, str]]] | None = None,
) -> tuple[list[AccountEntry], list[StoredRequest]]:
    """Entries to show, and delivered records whose account Mixpanel no longer has (to be closed).

    `records` maps account ids to the requests that made them (delivered ones, and any other state for the
    live accounts). `requester_id` None means every account of the organization; otherwise only the
    accounts that person owns through the bot. `memberships` (account id -> (project id, role)), when known,
    gives accounts made outside the bot their projects and role.
    """
    entries: list[AccountEntry] = []
    live_ids = set()
    for account in live:
        live_ids.add(account.id)
        request = records.get(account.id)
        if requester_id is not None and (request is None or request.owner != requester_id):
            continue
        settled = request is None or request.state is RequestState.DELIVERED
        presence = Presence.LIVE if settled else Presence.SETTLING
        entries.append(
            AccountEntry(
                account_id=account.id,
                username=account.username,
                presence=presence,
                request=request,
                expires_at=parse_timestamp(account.expires),
                last_used=parse_timestamp(account.last_used),
                created_at=request.created_at if request else parse_timestamp(account.created),
                is_bot_itself=own_username is not None and account.username == own_username,
                mixpanel_creator=account.creator,
                memberships=(
                    tuple(sorted(memberships.get(account.id, [])))
                    if memberships is not None and request is None
                    else None
                ),
            )
        )
    gone = [
        request
        for account_id, request in records.items()
        if account_id not in live_ids
        and request.state is RequestState.DELIVERED
        and (requester_id is None or request.owner == requester_id)
    ]
    for request in gone:
        entries.append(
            AccountEntry(
                account_id=request.mixpanel_account_id or 0,
                username=request.mixpanel_username or request.username,
                presence=Presence.GONE,
                request=request,
                expires_at=request.expires_at,
                last_used=None,
                created_at=request.created_at,
            )
        )
    replacements = {
        entry.request.replaces_request_id: entry.username
        for entry in entries
        if entry.request and entry.request.replaces_request_id
    }
    linked = [
        replace(entry, replaced_by=replacements[entry.request.id])
        if entry.request and entry.request.id in replacements
        else entry
        for entry in entries
    ]
    return sorted(linked, key=_order), gone


def _order(entry: AccountEntry) -> tuple[bool, bool, float, str]:
    """Gone ones last; then soonest to expire first; accounts that never expire after those that do."""
    expires = entry.expires_at.timestamp() if entry.expires_at else 0.0
    return (entry.presence is Presence.GONE, entry.expires_at is None, expires, entry.username)
