"""The organization's projects, from Mixpanel's /me, cached so the modal opens inside Slack's 3 s."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from bot.mixpanel.client import MixpanelClient, MixpanelError
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
    """One fetch of /me at a time per process (single flight): whoever asks while a fetch is in flight
    waits for that fetch and shares its answer or its error, instead of fetching again."""

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
        self._in_flight: Future[Snapshot] | None = None
        self._lock = threading.Lock()  # guards the two fields above; never held while fetching

    def cached(self) -> Snapshot | None:
        """The last good snapshot, even if stale (a refresh is started in the background). Never blocks."""
        with self._lock:
            snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.fetched_at > self._ttl:
            self.refresh_in_background()
        return snapshot

    def load(self) -> Snapshot:
        """A fetch that starts no earlier than now: the one in flight, or a new one.
        Raises MixpanelError or OrganizationUnknown."""
        return self._await(reuse_snapshot=False)

    def get(self) -> Snapshot:
        """Any snapshot: the cached one (even stale), else the fetch in flight, else a new fetch."""
        snapshot = self.cached()
        return snapshot if snapshot is not None else self._await(reuse_snapshot=True)

    def organization_id(self) -> int:
        if self._configured_org is not None:
            return self._configured_org
        return self.get().organization_id

    def bot_user_id(self) -> int | None:
        """The bot's own Mixpanel user id (None if /me did not say); raises like `load`."""
        return self.get().bot_user_id

    def within(self, seconds: float) -> Snapshot | None:
        """The cached snapshot; else the fetch in flight (one is started in the background if none is),
        waited for at most `seconds`. None when it has not come by then or failed: the caller fails closed."""
        snapshot = self.cached()
        if snapshot is not None:
            return snapshot
        flight, leader = self._join_or_start(reuse_snapshot=True)
        if leader:
            threading.Thread(
                target=self._fly, args=(flight, True), name="project-catalog-refresh", daemon=True
            ).start()
        if seconds <= 0:
            return None
        try:
            return flight.result(timeout=seconds)
        except Exception:  # a timeout, or the fetch failed (logged by the background flight)
            return None

    def refresh_in_background(self) -> None:
        """Start a fetch unless one is in flight; never waits for it."""
        flight, leader = self._join_or_start(reuse_snapshot=False)
        if leader:
            threading.Thread(
                target=self._fly, args=(flight, True), name="project-catalog-refresh", daemon=True
            ).start()

    def _await(self, *, reuse_snapshot: bool) -> Snapshot:
        flight, leader = self._join_or_start(reuse_snapshot=reuse_snapshot)
        if leader:
            self._fly(flight, False)
        return flight.result()

    def _join_or_start(self, *, reuse_snapshot: bool) -> tuple[Future[Snapshot], bool]:
        """The flight to wait for, and whether the caller must fly it."""
        with self._lock:
            if reuse_snapshot and self._snapshot is not None:
                done: Future[Snapshot] = Future()
                done.set_result(self._snapshot)
                return done, False
            if self._in_flight is not None:
                return self._in_flight, False
            self._in_flight = Future()
            return self._in_flight, True

    def _fly(self, flight: Future[Snapshot], in_background: bool) -> None:
        try:
            snapshot = self._fetch()
        except BaseException as error:  # whatever it is, those waiting on this flight must hear it
            with self._lock:
                self._in_flight = None
            flight.set_exception(error)
            if in_background:
                if isinstance(error, MixpanelError | OrganizationUnknown):
                    log.warning("Could not refresh Mixpanel projects: %s", error)
                else:
                    log.error("Refreshing Mixpanel projects failed unexpectedly", exc_info=error)
            return
        with self._lock:
            self._snapshot = snapshot
            self._in_flight = None
        flight.set_result(snapshot)

    def _fetch(self) -> Snapshot:
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
        return Snapshot(
            organization_id=organization_id,
            projects=projects,
            fetched_at=self._clock(),
            bot_user_id=me.user_id,
        )
