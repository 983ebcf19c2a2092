"""The governance job: one pass over the organization's accounts (one shared listing), doing what is due.

In order: owners who left (each owner checked once with users.info), idle accounts (a DM once per idle
period; with `idle_action: {delete_after_days: N}`, a warning the day before and the deletion), accounts
made outside the bot (recorded when first seen; told to the audit channel once with `unmanaged: notify`),
review rounds, and the posture (saved per week for the trend; the weekly audit-channel summary).

Every notice is claimed in the database before it is sent (bot/govern/store.py), so reruns, restarts and
several instances send each once. A dry run reads and reports, and writes nothing: no notice, no record
closed, no snapshot. Runs from `python -m bot govern` (cron) or in the app under a database lease.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from bot.db.schema import RequestState
from bot.govern import messages as say
from bot.govern.idle import WARNING_AHEAD, CountdownStep, countdown_step, idle_period, is_idle
from bot.govern.inventory import is_unmanaged
from bot.govern.inventory_store import InventoryStore
from bot.govern.notices import Notices
from bot.govern.owners import OwnerCheck, Owners
from bot.govern.posture import AccountFacts, posture
from bot.govern.review_flow import ReviewRounds
from bot.govern.store import GovernanceStore, NoticeKind, OwnershipState
from bot.jobs import lease_for, run_every
from bot.manage.accounts import AccountEntry, Presence
from bot.manage.flow import ManageFlow
from bot.mixpanel.catalog import OrganizationUnknown
from bot.mixpanel.client import MixpanelError
from bot.mixpanel.models import parse_timestamp
from bot.policy.file import GovernancePolicy
from bot.remind.store import ReminderStore
from bot.rotate.schedule import on_schedule
from bot.rotate.states import RotationState
from bot.rotate.store import RotationStore

log = logging.getLogger(__name__)

LEASE_NAME = "governance"
UNMANAGED_DUE, UNMANAGED_TOLD = "due", "first_seen"  # the periods of an unmanaged account's notice
SYSTEM_ACTOR = "governance"  # the actor the audit trail names for what the bot does on its own


@dataclass
class GovernRun:
    actions: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    previous: dict[str, int] | None = None


def unexpired(entry: AccountEntry, now: datetime) -> bool:
    return entry.expires_at is None or entry.expires_at > now


def week_of(now: datetime) -> str:
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


class GovernJob:
    def __init__(
        self,
        manage: ManageFlow,
        store: GovernanceStore,
        inventory: InventoryStore,
        owners: Owners,
        reviews: ReviewRounds,
        leases: ReminderStore,
        notices: Notices,
        *,
        holder: str | None = None,
    ):
        self.m = manage
        self.d = manage.d
        self.store = store
        self.inventory = inventory
        self.owners = owners
        self.reviews = reviews
        self.leases = leases
        self.notices = notices
        self.holder = holder or uuid.uuid4().hex

    @property
    def g(self) -> GovernancePolicy:
        return self.d.policy.governance

    # --- marking idle accounts in list, list all and the App Home ------------------------------------

    def mark_idle(self, entries: list[AccountEntry]) -> list[AccountEntry]:
        if self.g.idle_days is None:
            return entries
        keeps = self.store.latest_keeps([e.account_id for e in entries if e.presence is Presence.LIVE])
        now = self.d.clock()
        return [
            replace(entry, idle=True)
            if entry.presence is Presence.LIVE
            and unexpired(entry, now)
            and is_idle(
                entry.last_used,
                entry.created_at,
                keeps.get(entry.account_id),
                now=now,
                idle_days=self.g.idle_days,
            )
            else entry
            for entry in entries
        ]

    # --- one pass --------------------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None, *, dry_run: bool = False) -> GovernRun:
        """Raises MixpanelError/OrganizationUnknown when the accounts cannot be listed."""
        now = now or self.d.clock()
        entries, gone = self.m.read_entries(None, outside_projects=False)
        if not dry_run:
            self.m.close_gone(gone)
        # Mixpanel keeps listing an account after it expired, but it no longer works: it is not counted,
        # and nobody is told about it (no idle notice, review, ownership offer or unmanaged notice).
        live = [
            e for e in entries if e.presence is Presence.LIVE and not e.is_bot_itself and unexpired(e, now)
        ]
        managed = [e for e in live if e.made_by_bot and e.request is not None]
        keeps = self.store.latest_keeps([e.account_id for e in live])
        checks = {owner: self.owners.check(owner) for owner in sorted({e.owner_id or "" for e in managed})}
        run = GovernRun()
        run.actions += self._returned(managed, checks, now, dry_run=dry_run)
        open_ids = {o.account_id for o in self.store.open_ownerships()}
        before = set(open_ids)
        for entry in managed:
            check = checks[entry.owner_id or ""]
            if check.gone and entry.account_id not in open_ids:
                open_ids.add(entry.account_id)
                if dry_run or self.owners.open(entry, why=check.why, now=now):
                    run.actions.append(
                        f"{entry.username}: owner {entry.owner_id} {check.why}; ownership opened"
                    )
        opened_now = open_ids - before
        for entry, opened_at in self.owners.unoffered(managed):  # opened before, its offer reached nobody
            if entry.account_id in opened_now:
                continue  # its offer was tried a moment ago
            if dry_run or self.owners.offer(entry, now=now, opened_at=opened_at):
                run.actions.append(f"{entry.username}: ownership offered again")
        owned = [e for e in managed if checks[e.owner_id or ""].known and not checks[e.owner_id or ""].gone]
        owned = [e for e in owned if e.account_id not in open_ids]
        run.actions += self._idle(owned, keeps, now, dry_run=dry_run)
        run.actions += self._unmanaged([e for e in live if is_unmanaged(e)], now, dry_run=dry_run)
        run.actions += self.reviews.run(owned, now, dry_run=dry_run)
        owned_ids = {e.account_id for e in owned}
        rotations = RotationStore(self.d.store).for_requests([e.request.id for e in managed if e.request])
        stopped = {request_id for request_id, r in rotations.items() if r.state is RotationState.FAILED}
        facts = [
            AccountFacts(
                expires_at=e.expires_at,
                owner_active=e.account_id in owned_ids,
                without_owner=e.made_by_bot and e.account_id in open_ids,
                unmanaged=is_unmanaged(e),
                idle=is_idle(
                    e.last_used, e.created_at, keeps.get(e.account_id), now=now, idle_days=self.g.idle_days
                ),
                in_destination=e.request is not None and e.request.destination is not None,
                rotated_on_schedule=e.request is not None
                and on_schedule(self.d.policy, e.request, stopped=e.request.id in stopped),
            )
            for e in live
        ]
        run.counts = posture(facts, now=now)
        week = week_of(now)
        run.previous = next((counts for period, counts in self.store.postures(3) if period < week), None)
        if not dry_run:
            self.store.save_posture(week, run.counts, now=now)
            if self._weekly_summary(run, week, now):
                run.actions.append(f"weekly summary {week} posted to {self.d.policy.audit_channel}")
        return run

    def _returned(
        self, managed: list[AccountEntry], checks: dict[str, OwnerCheck], now: datetime, *, dry_run: bool
    ) -> list[str]:
        """An open ownership whose former owner Slack now says may own accounts again (reactivated, or a
        full member again), and whose record still names them, is theirs again: settled, audited, told."""
        by_id = {entry.account_id: entry for entry in managed}
        actions = []
        for ownership in self.store.open_ownerships():
            entry = by_id.get(ownership.account_id)
            check = checks.get(ownership.former_owner)
            if entry is None or entry.request is None or entry.owner_id != ownership.former_owner:
                continue
            if check is None or not check.known or check.gone:
                continue
            request, former = entry.request, ownership.former_owner
            message = say.owner_back_notice(entry, former)
            settled = dry_run or self.m.audit.record(
                lambda request=request, former=former: self.store.settle_return(
                    request, former_owner=former, actor_id=SYSTEM_ACTOR, now=now
                ),
                lambda done, message=message: message if done else None,
            )
            if settled:
                actions.append(f"{entry.username}: owner {former} is back; ownership settled")
        return actions

    # --- idle ------------------------------------------------------------------------------------------

    def _idle(
        self, owned: list[AccountEntry], keeps: dict[int, datetime], now: datetime, *, dry_run: bool
    ) -> list[str]:
        idle_days = self.g.idle_days
        if idle_days is None:
            return []
        idle = [
            (e, idle_period(e.last_used, e.created_at, keeps.get(e.account_id)))
            for e in owned
            if is_idle(e.last_used, e.created_at, keeps.get(e.account_id), now=now, idle_days=idle_days)
        ]
        ids = [e.account_id for e, _ in idle]
        told = self.store.notices(NoticeKind.IDLE, ids)
        warned = self.store.notices(NoticeKind.IDLE_WARNING, ids)
        after = self.g.idle_delete_after_days
        actions = []
        for entry, period in idle:
            key = (entry.account_id, period)
            if key not in told:
                message = say.idle_message(entry, idle_days=idle_days, projects=self.m.project_names())
                if dry_run or self.notices.to_owner(NoticeKind.IDLE, entry, period, message, now):
                    actions.append(f"{entry.username}: idle notice to {entry.owner_id}")
                continue
            if after is None:
                continue
            warned_at = self.notices.warned_at(warned, entry.account_id, period)
            step = countdown_step(told[key], warned_at, now=now, after=timedelta(days=after))
            why = f"idle, and its owner did nothing for {after} days"
            if step is CountdownStep.WARN:
                due = max(told[key] + timedelta(days=after), now + WARNING_AHEAD)
                message = say.deletion_warning(entry, why=why, when=due)
                if dry_run or self.notices.warn(NoticeKind.IDLE_WARNING, entry, period, message, now):
                    actions.append(f"{entry.username}: warned of its deletion tomorrow")
            elif step is CountdownStep.DELETE and (
                dry_run
                or self.delete(
                    entry,
                    NoticeKind.IDLE_DELETED,
                    period,
                    why=why,
                    now=now,
                    still_due=lambda entry=entry, period=period: self._still_idle(entry, period, now),
                )
            ):
                actions.append(f"{entry.username}: deleted ({why})")
        return actions

    def _still_idle(self, entry: AccountEntry, period: str, now: datetime) -> bool:
        """Asked right before an idle account is deleted: the run's listing may be a shared cached one, and
        the owner may have kept it since the run began. Mixpanel's own word on its last use, fresh, and the
        latest keep must still make it idle in the very period that was warned about."""
        try:
            live = self.d.mixpanel.get_service_account(self.d.catalog.organization_id(), entry.account_id)
        except (MixpanelError, OrganizationUnknown) as error:
            log.warning("Not deleting idle account %s: cannot read it again (%s)", entry.account_id, error)
            return False  # a later run asks again
        if live is None:
            return False
        last_used = parse_timestamp(live.last_used)
        kept = self.store.latest_keeps([entry.account_id]).get(entry.account_id)
        return is_idle(
            last_used, entry.created_at, kept, now=now, idle_days=self.g.idle_days
        ) and period == idle_period(last_used, entry.created_at, kept)

    def delete(
        self,
        entry: AccountEntry,
        kind: NoticeKind,
        period: str,
        *,
        why: str,
        now: datetime,
        still_due: Callable[[], bool] | None = None,
    ) -> bool:
        """The bot deletes on its own (only with idle_action or review_action delete), once: `still_due`
        judges it again on fresh facts, the notice is claimed, then the usual deletion (claimed once per
        account, audited), then both told."""
        if entry.request is None or (still_due is not None and not still_due()):
            return False
        if not self.store.claim_notice(
            kind, entry.account_id, period, recipient=entry.owner_id or "", now=now
        ):
            return False
        try:
            organization_id = self.d.catalog.organization_id()
        except Exception:
            self.store.release_notice(kind, entry.account_id, period)
            raise
        outcome = self.m.delete_as_system(
            SYSTEM_ACTOR, self.m.ref_of(entry.request), entry.username, organization_id
        )
        if not outcome.changed:
            self.store.release_notice(kind, entry.account_id, period)
            return False
        self.store.close_ownership(entry.account_id, actor_id=SYSTEM_ACTOR, now=now)
        message = say.deleted_notice(entry, why=why)
        self.owners.post(entry.owner_id or "", message, dm=True)
        return True

    # --- made outside the bot --------------------------------------------------------------------------

    def _unmanaged(self, outside: list[AccountEntry], now: datetime, *, dry_run: bool) -> list[str]:
        if dry_run:
            return [
                f"{e.username}: unmanaged (made in Mixpanel by user {e.mixpanel_creator})" for e in outside
            ]
        new = set(
            self.inventory.first_seen(
                [(e.account_id, e.username, e.mixpanel_creator) for e in outside], now=now
            )
        )
        actions = [f"{e.username}: first seen, made outside the bot" for e in outside if e.account_id in new]
        if self.g.unmanaged != "notify" or not self.d.policy.audit_channel:
            return actions
        # Seen first under notify: owed a notice (DUE), until one is posted (TOLD), so that a notice whose
        # post failed goes out on a later run; those first seen under report are owed none.
        for entry in outside:
            if entry.account_id in new:
                self.store.claim_notice(
                    NoticeKind.UNMANAGED, entry.account_id, UNMANAGED_DUE, recipient="", now=now
                )
        sent = self.store.notices(NoticeKind.UNMANAGED, [e.account_id for e in outside])
        owed = [
            e
            for e in outside
            if (e.account_id, UNMANAGED_DUE) in sent and (e.account_id, UNMANAGED_TOLD) not in sent
        ]
        if owed:
            claims = [(entry.account_id, UNMANAGED_TOLD) for entry in owed]

            def message(won: list[tuple[int, str]]) -> dict:
                ids = {account_id for account_id, _ in won}
                return say.unmanaged_notice([e for e in owed if e.account_id in ids])

            self.notices.to_audit_channel(NoticeKind.UNMANAGED, claims, message, now)
        return actions

    # --- the weekly summary ----------------------------------------------------------------------------

    def orphans_overdue(self, now: datetime) -> list[tuple[str, str, datetime]]:
        """(username, former owner, open since) of ownerships open longer than orphan_days."""
        limit = timedelta(days=self.g.orphan_days)
        found = []
        for ownership in self.store.open_ownerships():
            if ownership.state is OwnershipState.OPEN and now - ownership.opened_at >= limit:
                request = self.m.records.get(ownership.request_id)
                if request is None or request.state is not RequestState.DELIVERED:
                    continue  # deleted meanwhile (by a click or elsewhere): nobody needs to own it
                name = request.mixpanel_username or request.username
                found.append((name, ownership.former_owner, ownership.opened_at))
        return found

    def _weekly_summary(self, run: GovernRun, week: str, now: datetime) -> bool:
        message = say.summary_message(run.counts, run.previous, self.orphans_overdue(now))
        return bool(self.notices.to_audit_channel(NoticeKind.WEEKLY_SUMMARY, [(0, week)], message, now))

    # --- the admins' App Home header ---------------------------------------------------------------

    def home_header(self) -> list[dict]:
        snapshots = self.store.postures(2)
        current = snapshots[0][1] if snapshots else None
        previous = snapshots[1][1] if len(snapshots) > 1 else None
        return say.posture_header(current, previous)

    # --- in the app, under a lease ---------------------------------------------------------------

    def run_under_lease(self, interval: float, now: datetime | None = None) -> GovernRun | None:
        now = now or self.d.clock()
        if not self.leases.acquire_lease(LEASE_NAME, self.holder, now=now, duration=lease_for(interval)):
            return None
        return self.run_once(now)

    def start(self, interval: float, stopping: threading.Event) -> None:
        run_every(interval, stopping, lambda: self.run_under_lease(interval), name="governance")
