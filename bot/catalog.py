"""The organization's projects, from Mixpanel's /me, cached so the modal opens inside Slack's 3 s."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.mixpanel import MixpanelClient, MixpanelError
from bot.models import Project

log = logging.getLogger(__name__)


class OrganizationUnknown(Exception):
    """The bot's account sees zero or several organizations and none is configured."""


@dataclass(frozen=True)
class Snapshot:
    organization_id: int
    projects: list[Project]
    fetched_at: float
    bot_user_id: int | None = None  # /me's id: the `creator` of the accounts the bot makes

    def by_id(self) -> dict[int, Project]:
        return {project.id: project for project in self.projects}


class ProjectCatalog:
    def __init__(
        self,
        mixpanel: MixpanelClient,
        *,
        organization_id: int | None,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._mixpanel = mixpanel
        self._configured_org = organization_id
        self._ttl = ttl
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    def cached(self) -> Snapshot | None:
        """The last good snapshot, even if stale (a refresh is started in the background)."""
        with self._lock:
            snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.fetched_at > self._ttl:
            self.refresh_in_background()
        return snapshot

    def load(self) -> Snapshot:
        """Fetch now; raises MixpanelError or OrganizationUnknown."""
        with self._refreshing:
            me = self._mixpanel.me()
            organization_id = self._configured_org
            if organization_id is None:
                if len(me.organization_ids) != 1:
                    raise OrganizationUnknown(
                        f"the bot's Mixpanel account belongs to {len(me.organization_ids)} organizations; "
                        "set MIXPANEL_ORGANIZATION_ID"
                    )
                organization_id = me.organization_ids[0]
            projects = sorted(
                (p for p in me.projects if p.organization_id == organization_id),
                key=lambda p: (p.name.casefold(), p.id),
            )
            snapshot = Snapshot(
                organization_id=organization_id,
                projects=projects,
                fetched_at=self._clock(),
                bot_user_id=me.user_id,
            )
            with self._lock:
                self._snapshot = snapshot
            return snapshot

    def get(self) -> Snapshot:
        """A fresh-enough snapshot, loading it if there is none yet."""
        snapshot = self.cached()
        return snapshot if snapshot is not None else self.load()

    def organization_id(self) -> int:
        if self._configured_org is not None:
            return self._configured_org
        return self.get().organization_id

    def bot_user_id(self) -> int | None:
        """The bot's own Mixpanel user id (None if /me did not say); raises like `load`."""
        return self.get().bot_user_id

    def refresh_in_background(self) -> None:
        if self._refreshing.locked():
            return

        def refresh() -> None:
            try:
                self.load()
            except (MixpanelError, OrganizationUnknown) as error:
                log.warning("Could not refresh Mixpanel projects: %s", error)

        threading.Thread(target=refresh, name="project-catalog-refresh", daemon=True).start()
