"""`python -m bot rotate [--dry-run]` and the in-app schedule: every account that is due, or whose rotation
is under way, is moved on as far as it goes now.

Safe beside running instances and concurrent runs: each account's rotation is one database row, each step
is claimed in it, and each move is a compare-and-set. In the app, one instance at a time runs the schedule,
under a database lease (the reminders' `job_leases`). A run first sweeps what interrupted runs left behind
(bot/create/cleanup.py), so that a successor whose token was lost is deleted before a new one is made.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.create.flow import CreationFlow
from bot.db.schema import StoredRequest
from bot.jobs import lease_for, run_every
from bot.manage.store import LifecycleStore
from bot.remind.store import ReminderStore
from bot.rotate.flow import RotationFlow
from bot.rotate.messages import when
from bot.rotate.schedule import due_at, is_due, rotation_settings
from bot.rotate.states import RotationState
from bot.rotate.store import Rotation, RotationStore

log = logging.getLogger(__name__)

LEASE_NAME = "rotation"


@dataclass(frozen=True)
class PlannedRotation:
    request: StoredRequest
    rotation: Rotation | None  # None: due, and not started yet
    passed: tuple[RotationState, ...] = ()  # what this run moved it through
    due_since: datetime | None = None  # for one not started yet: since when it is due

    def describe(self) -> str:
        name = self.request.mixpanel_username or self.request.username
        where = f"{self.request.destination}/{self.request.secret_name}"
        if self.passed:
            return f"{name} ({where}): {' -> '.join(str(state) for state in self.passed)}"
        if self.rotation is None:
            return f"{name} ({where}): due since {when(self.due_since)}; a successor would be made"
        return f"{name} ({where}): {self.rotation.state}"


class RotationJob:
    def __init__(
        self,
        flow: RotationFlow,
        creation: CreationFlow,
        records: LifecycleStore,
        leases: ReminderStore,
        *,
        stale_after: timedelta,
    ):
        self.flow = flow
        self.d = flow.d
        self.creation = creation
        self.records = records
        self.rotations: RotationStore = flow.rotations
        self.leases = leases
        self.stale_after = stale_after

    def plan(self, now: datetime) -> list[PlannedRotation]:
        """Accounts due for rotation, and those whose rotation is under way (not yet finished)."""
        live = [r for r in self.records.delivered() if r.destination]
        known = self.rotations.for_requests([request.id for request in live])
        written_over = self.rotations.written_over([request.id for request in live])
        planned = []
        for request in live:
            rotation = known.get(request.id)
            if request.id in written_over and (rotation is None or not rotation.began):
                continue  # a newer account holds its secret (Replace…): that one is rotated
            # One under way is finished even if the policy stopped rotating since: its successor exists.
            if rotation is not None and not rotation.finished:
                planned.append(PlannedRotation(request, rotation))
            elif rotation is None and is_due(self.d.policy, request, now):
                settings = rotation_settings(self.d.policy, request)
                since = due_at(request, settings) if settings else None
                planned.append(PlannedRotation(request, None, due_since=since))
        # An old account a person deleted during the overlap: its rotation is finished by the next step.
        listed = {request.id for request in live}
        for rotation in self.rotations.unfinished():
            if rotation.request_id not in listed and rotation.state is RotationState.OVERLAPPING:
                closed = self.d.store.get(rotation.request_id)
                if closed is not None:
                    planned.append(PlannedRotation(closed, rotation))
        return planned

    def run_once(self, now: datetime | None = None, *, dry_run: bool = False) -> list[PlannedRotation]:
        """Move every planned rotation on; returns the plan with what each moved through (dry_run: only
        the plan, nothing changed)."""
        now = now or self.d.clock()
        if dry_run:
            return self.plan(now)
        self.creation.sweep_stale(self.stale_after)
        done = []
        for item in self.plan(now):
            try:
                passed = self.flow.advance(item.request, now)
            except Exception:
                log.exception(
                    "Rotating %s failed; the next run goes on from where it stopped", item.request.id
                )
                passed = []
            done.append(PlannedRotation(item.request, self.rotations.get(item.request.id), tuple(passed)))
        return done

    def run_under_lease(self, interval: float, now: datetime | None = None) -> list[PlannedRotation] | None:
        now = now or self.d.clock()
        if not self.leases.acquire_lease(LEASE_NAME, self.flow.holder, now=now, duration=lease_for(interval)):
            return None
        return self.run_once(now)

    def start(self, interval: float, stopping: threading.Event) -> None:
        if interval > 0:
            run_every(interval, stopping, lambda: self.run_under_lease(interval), name="rotation")
