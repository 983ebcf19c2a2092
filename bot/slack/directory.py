"""Who a Slack user is, as far as the policy cares: standing, user groups and time zone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.cache import TTLCache
from bot.models import Requester, Standing, Workspace

log = logging.getLogger(__name__)


class DirectoryUnavailable(Exception):
    """Slack could not confirm who someone is; callers must fail closed."""


class UnknownUser(DirectoryUnavailable):
    """Slack does not know the user (any more): they left the workspace, or the id is wrong."""


def standing_of(user: dict[str, Any]) -> Standing:
    if user.get("deleted"):
        return Standing.DEACTIVATED
    if user.get("is_bot") or user.get("is_app_user") or user.get("id") == "USLACKBOT":
        return Standing.BOT
    if user.get("is_restricted") or user.get("is_ultra_restricted"):
        return Standing.GUEST
    return Standing.MEMBER


def installation_of(client: WebClient) -> Workspace:
    """The workspace (and Grid organization) the bot's token belongs to, as auth.test reports it."""
    answer = client.auth_test()
    return Workspace(team_id=answer.get("team_id") or None, enterprise_id=answer.get("enterprise_id") or None)


# How long a user group's last known members are still trusted when Slack cannot list them (outage, or
# usergroups.users.list's rate limit of about 20 calls a minute). People are never served stale: a
# deactivated or demoted person must not keep access through a cache.
MEMBERS_STALE_SECONDS = 15 * 60


class SlackDirectory:
    """Lookups are cached and single-flight: a burst of people on a cold cache makes one call per group."""

    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float,
        patient_client: WebClient | None = None,
        usergroups: set[str],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = client
        # After the ack (the form opened first), a lookup may wait out Slack's 429s for longer.
        self._patient_client = patient_client or client
        self._usergroups = sorted(usergroups)  # only the groups the policy names are ever fetched
        self._users: TTLCache[dict[str, Any]] = TTLCache(ttl, clock=clock)
        self._members: TTLCache[frozenset[str]] = TTLCache(
            ttl, clock=clock, stale_for=MEMBERS_STALE_SECONDS, stale_on=(DirectoryUnavailable,)
        )

    def _user(self, user_id: str, client: WebClient, *, fresh: bool = False) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            try:
                return dict(client.users_info(user=user_id)["user"])
            except SlackApiError as error:
                if error.response.get("error") == "user_not_found":
                    raise UnknownUser(f"users.info does not know {user_id}") from None
                raise DirectoryUnavailable(
                    f"users.info failed for {user_id}: {error.response.get('error')}"
                ) from None
            except (SlackClientError, OSError, KeyError, TypeError) as error:
                raise DirectoryUnavailable(
                    f"users.info failed for {user_id}: {type(error).__name__}"
                ) from None

        if fresh:
            user = load()
            self._users.put(user_id, user)
            return user
        return self._users.get_or_load(user_id, load)

    def _group_members(self, group_id: str, client: WebClient) -> frozenset[str]:
        def load() -> frozenset[str]:
            try:
                users = client.usergroups_users_list(usergroup=group_id)["users"]
            except (SlackClientError, OSError, KeyError, TypeError) as error:
                raise DirectoryUnavailable(
                    f"usergroups.users.list failed for {group_id}: {type(error).__name__}"
                ) from None
            return frozenset(users or ())

        return self._members.get_or_load(group_id, load)

    def group_members(self, group_id: str) -> frozenset[str]:
        """Who is in one of the user groups the policy names (after the ack: waits out rate limits)."""
        return self._group_members(group_id, self._patient_client)

    def requester(self, user_id: str, *, patient: bool = False, fresh: bool = False) -> Requester:
        """`fresh`: ask Slack now rather than trust the last few seconds' answer."""
        client = self._patient_client if patient else self._client
        user = self._user(user_id, client, fresh=fresh)
        groups = frozenset(
            group for group in self._usergroups if user_id in self._group_members(group, client)
        )
        enterprise = user.get("enterprise_user") or {}
        return Requester(
            user_id=user_id,
            standing=standing_of(user),
            usergroups=groups,
            timezone=user.get("tz") or "UTC",
            team_id=user.get("team_id"),
            enterprise_id=enterprise.get("enterprise_id") if isinstance(enterprise, dict) else None,
            is_stranger=bool(user.get("is_stranger")),
        )

    def try_requester(self, user_id: str, *, patient: bool = False) -> Requester | None:
        try:
            return self.requester(user_id, patient=patient)
        except DirectoryUnavailable as error:
            log.warning("Refusing %s: membership could not be verified (%s)", user_id, error)
            return None
