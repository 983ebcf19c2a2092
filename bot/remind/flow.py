"""Expiry reminders: before an account expires, its creator gets a DM (never a secret) with a Delete control.

Which reminder is due is a pure function of the expiry, the clock and the policy's `reminders.days_before`.
Each reminder is claimed in the database before it is sent (`reminders_sent`, keyed by request and
threshold), so restarts, reruns and several instances never send one twice. A reminder names the account,
its projects and its last use, so it goes to the creator only while the policy would let them manage the
account (`bot.manage.permissions.may_manage`, as for their clicks): a creator who is deactivated, has left,
is now a guest, or belongs to a workspace the policy no longer admits counts as gone, and the reminder
goes to the audit channel and to the admins instead. No account outlives its owner unnoticed. A dry run
changes nothing: it neither sends nor closes the records of accounts found gone. In the app, one instance
at a time runs the job, under a database lease.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.jobs import lease_for, run_every
from bot.manage.accounts import AccountEntry, Presence
from bot.manage.flow import ManageFlow
from bot.manage.permissions import AccountOwnership, Basis, ManageAction, ManageRefusal, may_manage
from bot.manage.views import reminder_message
from bot.models import Requester, Standing, Workspace
from bot.policy.file import Policy
from bot.remind.store import ReminderStore
from bot.rotate.schedule import ExpiryReminder, expiry_reminder
from bot.rotate.store import RotationStore
from bot.slack.delivery import post_lasting
from bot.slack.directory import DirectoryUnavailable, SlackDirectory, UnknownUser

log = logging.getLogger(__name__)

LEASE_NAME = "expiry-reminders"


def due_threshold(expires_at: datetime | None, now: datetime, days_before: list[int]) -> int | None:
    """The reminder due now: the nearest threshold crossed. An account that crossed several thresholds
    since the last look gets one reminder, for the nearest; the farther ones are then never due."""
    if expires_at is None or expires_at <= now or not days_before:
        return None
    crossed = [days for days in days_before if expires_at - now <= timedelta(days=days)]
    return min(crossed) if crossed else None


class OwnerStatus(StrEnum):
    PRESENT = "present"
    DEACTIVATED = "deactivated"
    LEFT = "left"  # Slack no longer knows the user
    NOT_A_MEMBER = "not_a_member"  # a guest or a bot now
    EXTERNAL = "external"  # from a workspace the policy does not (or no longer) admit


OWNER_PHRASES = {
    OwnerStatus.DEACTIVATED: "is deactivated",
    OwnerStatus.LEFT: "has left the workspace",
    OwnerStatus.NOT_A_MEMBER: "is no longer a full member of the workspace",
    OwnerStatus.EXTERNAL: "is from a workspace the policy does not admit",
}

# The reminder offers Delete now (and Replace…): whoever may delete the account may act on it.
REMINDER_ACTION = ManageAction.DELETE


def owner_status(policy: Policy, creator: Requester, *, installation: Workspace) -> OwnerStatus:
    """May the creator still manage the account they made, by the decision their clicks get? If not, why."""
    ownership = AccountOwnership(creator_id=creator.user_id)
    decision = may_manage(policy, creator, REMINDER_ACTION, ownership, installation=installation)
    if decision.allowed:
        return OwnerStatus.PRESENT
    if creator.standing is Standing.DEACTIVATED:
        return OwnerStatus.DEACTIVATED
    return OwnerStatus.EXTERNAL if decision.refusal is ManageRefusal.EXTERNAL else OwnerStatus.NOT_A_MEMBER


def look_up_owner(
    directory: SlackDirectory, policy: Policy, installation: Workspace, user_id: str
) -> OwnerStatus | None:
    """The owner's status from a fresh Slack look-up; None when Slack could not say (ask again next run)."""
    try:
        creator = directory.requester(user_id, patient=True, fresh=True)
    except UnknownUser:
        return OwnerStatus.LEFT
    except DirectoryUnavailable as error:
        log.warning("Cannot tell whether %s may still manage their accounts: %s", user_id, error)
        return None
    return owner_status(policy, creator, installation=installation)


@dataclass(frozen=True)
class Reminder:
    entry: AccountEntry
    days_before: int
    owner_status: OwnerStatus
    rotated_to: str | None = None  # the successor of an old account its rotation kept (delete_old: never)

    @property
    def creator_id(self) -> str:
        """The account's current owner, whom the reminder is for (its creator unless taken over)."""
        return self.entry.owner_id or ""

    def describe(self, audit_channel: str | None) -> str:
        where = (
            f"DM to {self.creator_id}"
            if self.owner_status is OwnerStatus.PRESENT
            else f"audit channel {audit_channel or '(none set)'} and the admins: {self.creator_id} "
            f"{OWNER_PHRASES[self.owner_status]}"
        )
        return f"{self.entry.username}: {self.days_before}-day reminder, {where}"


class ReminderJob:
    def __init__(self, manage: ManageFlow, store: ReminderStore, *, holder: str | None = None):
        self.m = manage
        self.d = manage.d
        self.store = store
        self.holder = holder or uuid.uuid4().hex

    def _owner_status(self, user_id: str) -> OwnerStatus | None:
        """None when Slack could not say: the reminder waits for the next run."""
        return look_up_owner(self.d.directory, self.d.policy, self.d.installation, user_id)

    def _admins(self, reminder: Reminder) -> list[str]:
        """The admins who may manage this account now (not the creator): they hear of an owner gone."""
        selector = self.d.policy.admins
        candidates = set(selector.users)
        for group in selector.usergroups:
            try:
                candidates.update(self.d.directory.group_members(group))
            except DirectoryUnavailable as error:
                log.warning("Cannot list the admins in %s for a reminder: %s", group, error)
        ownership = AccountOwnership(creator_id=reminder.creator_id)
        admins = []
        for user_id in sorted(candidates - {reminder.creator_id}):
            admin = self.d.directory.try_requester(user_id, patient=True)
            decision = may_manage(
                self.d.policy, admin, REMINDER_ACTION, ownership, installation=self.d.installation
            )
            if decision.allowed and decision.basis is Basis.ADMIN:
                admins.append(user_id)
        return admins

    def plan(self, entries: list[AccountEntry], now: datetime) -> list[Reminder]:
        """The reminders due now and not yet sent, among the listed accounts."""
        thresholds = self.d.policy.reminders.days_before
        entries = [e for e in entries if e.made_by_bot and e.presence is Presence.LIVE and e.request]
        due = [(e, due_threshold(e.expires_at, now, thresholds)) for e in entries]
        due = [(e, days) for e, days in due if days is not None]
        sent = self.store.sent([e.request.id for e, _ in due if e.request])
        rotation_store = RotationStore(self.d.store)
        rotations = rotation_store.for_requests([e.request.id for e, _ in due if e.request])
        written_over = rotation_store.written_over([e.request.id for e, _ in due if e.request])
        reminders = []
        for entry, days in due:
            if entry.request is None or days is None or (entry.request.id, days) in sent:
                continue
            # An account the bot rotates needs no "replace it": its rotation does that (and tells the owner
            # at each step). A stopped rotation leaves it to the owner again; a kept old one is told so.
            rotation = rotations.get(entry.request.id)
            kind = expiry_reminder(
                self.d.policy,
                entry.request,
                rotation.state if rotation else None,
                now,
                written_over=entry.request.id in written_over,
            )
            if kind is ExpiryReminder.NONE:
                continue
            status = self._owner_status(entry.request.owner)
            if status is not None:
                rotated_to = rotation.successor_username if rotation and kind is ExpiryReminder.KEPT else None
                reminders.append(Reminder(entry, days, status, rotated_to=rotated_to or None))
        return reminders

    def run_once(self, now: datetime | None = None, *, dry_run: bool = False) -> list[Reminder]:
        """Send what is due; returns what was sent (or, with dry_run, what would be: then nothing changes,
        not even the records of accounts found gone). Raises MixpanelError/OrganizationUnknown."""
        now = now or self.d.clock()
        if not self.d.policy.reminders.days_before:
            return []
        # Reminders concern accounts the bot made: the per-project listings `list all` makes for accounts
        # made elsewhere would be calls against Mixpanel's rate limit for nothing.
        entries, gone = self.m.read_entries(None, outside_projects=False)
        planned = self.plan(entries, now)
        if dry_run:
            return planned
        self.m.close_gone(gone)
        return [reminder for reminder in planned if self._send(reminder, now)]

    def _targets(self, reminder: Reminder) -> list[tuple[str, bool]]:
        """Where the reminder goes, as (channel or user id, whether it is a person's DM): the creator; with
        the creator gone, the audit channel and the admins."""
        if reminder.owner_status is OwnerStatus.PRESENT:
            return [(reminder.creator_id, True)]
        channel = self.d.policy.audit_channel
        return ([(channel, False)] if channel else []) + [(admin, True) for admin in self._admins(reminder)]

    def _send(self, reminder: Reminder, now: datetime) -> bool:
        request = reminder.entry.request
        if request is None:
            return False
        owner_gone = reminder.owner_status is not OwnerStatus.PRESENT
        targets = self._targets(reminder)
        if not targets:
            log.error(
                "Account %s belongs to %s, who %s, and neither an audit channel nor an admin can be warned",
                reminder.entry.username,
                request.owner,
                OWNER_PHRASES[reminder.owner_status],
            )
            return False
        first = targets[0][0]
        recipient = first if len(targets) == 1 else f"{first} +{len(targets) - 1}"
        if not self.store.claim(request, reminder.days_before, recipient=recipient, now=now):
            return False  # another run or instance sent it
        message = reminder_message(
            reminder.entry,
            days_before=reminder.days_before,
            now=now,
            projects=self.m.project_names(),
            owner_status=OWNER_PHRASES.get(reminder.owner_status),
            # Shown in Slack, so not rotated: offer a move into a store, where it will be.
            move_to_store=request.destination is None and bool(self.d.policy.destinations),
            rotated_to=reminder.rotated_to,
        )
        reached = [target for target, dm in targets if self._post(target, message, reminder, dm=dm)]
        if not reached:
            self.store.release(request, reminder.days_before)
            return False
        detail = f"{reminder.days_before} days before expiry, to {', '.join(reached)}"
        if owner_gone:
            detail += f"; the creator {OWNER_PHRASES[reminder.owner_status]}"
        self.store.record_sent(self.m.records, request, detail[:500], now)
        return True

    def _post(self, target: str, message: dict, reminder: Reminder, *, dm: bool) -> bool:
        """Post to a channel, or to a person's DM; False when Slack would not take it."""
        problem = post_lasting(self.d.background_slack, target, message, dm=dm)
        if problem:
            log.warning(
                "Could not send the reminder for %s to %s: %s", reminder.entry.username, target, problem
            )
        return problem is None

    def run_under_lease(self, interval: float, now: datetime | None = None) -> list[Reminder] | None:
        """One pass if this instance holds (or can take) the lease; None if another instance does."""
        now = now or self.d.clock()
        if not self.store.acquire_lease(LEASE_NAME, self.holder, now=now, duration=lease_for(interval)):
            return None
        return self.run_once(now)

    def start(self, interval: float, stopping: threading.Event) -> None:
        run_every(interval, stopping, lambda: self.run_under_lease(interval), name="reminders")
