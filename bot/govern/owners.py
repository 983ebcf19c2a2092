"""People who leave, as effects: look the owner up again, open their accounts' ownership, offer it, and
let a successor take it over. The decisions are in bot/govern/leavers.py.

`user_change` only ever starts a re-check: the person is looked up again with `users.info` (fresh, not
from the cache), and only what Slack says then counts. The periodic job checks every owner the same way,
each one once per run and single flight (concurrent checks of one person share one call), through the
background client, which waits out Slack's 429s within its budget (bot/slack/retry.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from bot.cache import TTLCache
from bot.create.messages import escape
from bot.db.schema import RequestState
from bot.govern import messages as say
from bot.govern.leavers import GONE_STANDINGS, takeover_refusal
from bot.govern.store import GovernanceStore, NoticeKind, OwnershipState
from bot.manage.accounts import AccountEntry, Presence
from bot.manage.flow import ManageFlow
from bot.manage.views import parse_target
from bot.mixpanel.catalog import OrganizationUnknown
from bot.mixpanel.client import MixpanelError
from bot.models import Requester, today_in
from bot.slack.delivery import post_lasting
from bot.slack.directory import DirectoryUnavailable, UnknownUser

log = logging.getLogger(__name__)

# One users.info per owner per this many seconds, however many accounts, events or threads ask.
OWNER_CHECK_SECONDS = 60.0


@dataclass(frozen=True)
class OwnerCheck:
    """What Slack says of an owner now. `gone`: deactivated, a guest or a bot now, or unknown to Slack.
    `known` False: Slack could not say (an outage): nothing is decided on that."""

    known: bool
    gone: bool = False
    why: str = ""


UNKNOWN = OwnerCheck(known=False)


def offer_period(opened_at: datetime) -> str:
    """An ownership offer is sent once per opening of the ownership."""
    return opened_at.isoformat(timespec="seconds")


class Owners:
    def __init__(self, manage: ManageFlow, store: GovernanceStore):
        self.m = manage
        self.d = manage.d
        self.store = store
        self._checks: TTLCache[OwnerCheck] = TTLCache(OWNER_CHECK_SECONDS)
        # user_change re-checks in progress: a person's burst of events costs one users.info, plus one more
        # if events came in meanwhile (that lookup may have read Slack from before them).
        self._rechecks: dict[str, bool] = {}  # user id -> another re-check is due after this one
        self._rechecks_lock = threading.Lock()

    def check(self, user_id: str, *, fresh: bool = False) -> OwnerCheck:
        """`fresh`: after an event about this person, never trust an answer from before it."""

        def load() -> OwnerCheck:
            try:
                person = self.d.directory.requester(user_id, patient=True, fresh=True)
            except UnknownUser:
                return OwnerCheck(known=True, gone=True, why="has left the workspace")
            if person.standing in GONE_STANDINGS:
                return OwnerCheck(known=True, gone=True, why=f"is {person.standing}")
            return OwnerCheck(known=True)

        try:
            if fresh:
                check = load()
                self._checks.put(user_id, check)
                return check
            return self._checks.get_or_load(user_id, load)
        except DirectoryUnavailable as error:  # not cached: the next call asks again
            log.warning("Cannot tell whether owner %s is still here: %s", user_id, error)
            return UNKNOWN

    # --- a person left ----------------------------------------------------------------------------

    def on_user_change(self, user_id: str, *, now: datetime | None = None) -> list[str]:
        """A `user_change` event said this person may have left: look them up again, and only if Slack
        confirms it, open the ownership of every account they own. Deletes nothing. Single flight per
        person: an event that comes while a re-check of the same person runs makes it run once more."""
        with self._rechecks_lock:
            if user_id in self._rechecks:
                self._rechecks[user_id] = True
                return []
            self._rechecks[user_id] = False
        done: list[str] = []
        try:
            while True:
                done += self._recheck(user_id, now)
                with self._rechecks_lock:
                    if not self._rechecks[user_id]:
                        del self._rechecks[user_id]
                        return done
                    self._rechecks[user_id] = False
        except BaseException:
            with self._rechecks_lock:
                self._rechecks.pop(user_id, None)  # the next event re-checks afresh
            raise

    def _recheck(self, user_id: str, now: datetime | None) -> list[str]:
        check = self.check(user_id, fresh=True)
        if not check.gone:
            return []
        # Through the shared, briefly cached listing: a burst of events costs one Mixpanel call. If Mixpanel
        # cannot be read now, the periodic job's sweep finds the person later.
        try:
            entries, _ = self.m.read_entries(user_id, outside_projects=False)
        except (MixpanelError, OrganizationUnknown) as error:
            log.warning("Cannot list %s's accounts after they left: %s", user_id, error)
            return []
        done = []
        for entry in entries:
            if entry.presence is not Presence.LIVE or entry.request is None:
                continue
            if self.open(entry, why=check.why, now=now or self.d.clock()):
                done.append(f"{entry.username}: ownership opened ({user_id} {check.why})")
        return done

    def open(self, entry: AccountEntry, *, why: str, now: datetime) -> bool:
        """Open the ownership (once) and offer it. True when this call opened it."""
        request = entry.request
        if request is None:
            return False
        if not self.store.open_ownership(request, detail=f"owner {request.owner} {why}", now=now):
            return False
        self.offer(entry, now=now)
        return True

    def offer(self, entry: AccountEntry, *, now: datetime, opened_at: datetime | None = None) -> bool:
        """To the successor group's members by DM; otherwise to the admins through the audit channel. Once
        per opening (`opened_at`, default `now`: it opened just now): an offer nobody could be sent is
        released, and the job offers it again (`unoffered`)."""
        request = entry.request
        if request is None:
            return False
        message = say.ownership_offer(entry, former_owner=request.owner, projects=self.m.project_names())
        group = self.d.policy.governance.successor
        targets: list[tuple[str, bool]] = []
        if group:
            try:
                targets = [(user, True) for user in sorted(self.d.directory.group_members(group))]
            except DirectoryUnavailable as error:
                log.warning("Cannot list the successor group %s: %s", group, error)
        if not targets and self.d.policy.audit_channel:
            targets = [(self.d.policy.audit_channel, False)]
        period = offer_period(opened_at or now)
        account_id = entry.account_id
        if not targets or not self.store.claim_notice(
            NoticeKind.OWNERSHIP_OFFER, account_id, period, recipient=targets[0][0], now=now
        ):
            return False
        reached = [target for target, dm in targets if self.post(target, message, dm=dm)]
        if not reached:
            self.store.release_notice(NoticeKind.OWNERSHIP_OFFER, account_id, period)
        return bool(reached)

    def unoffered(self, entries: list[AccountEntry]) -> list[tuple[AccountEntry, datetime]]:
        """The open ownerships among these accounts whose offer reached nobody yet, with when they opened."""
        by_id = {entry.account_id: entry for entry in entries}
        ownerships = [o for o in self.store.open_ownerships() if o.account_id in by_id]
        offered = self.store.notices(NoticeKind.OWNERSHIP_OFFER, [o.account_id for o in ownerships])
        return [
            (by_id[o.account_id], o.opened_at)
            for o in ownerships
            if o.state is OwnershipState.OPEN and (o.account_id, offer_period(o.opened_at)) not in offered
        ]

    def post(self, target: str, message: dict, *, dm: bool) -> bool:
        problem = post_lasting(self.d.background_slack, target, message, dm=dm)
        if problem:
            log.warning("Could not post a governance notice to %s: %s", target, problem)
        return problem is None

    # --- Take over ---------------------------------------------------------------------------------

    def take_over(self, user_id: str, value: object) -> str:
        """Judged again here: an open ownership, a candidate clicker, and the policy's yes for this account
        today. Returns the sentence for the clicker."""
        target = parse_target(value)
        request = self.m.records.get(target.request_id or "") if target and target.request_id else None
        if request is None or request.mixpanel_account_id is None:
            self.m.record_refusal(user_id, "take over", f"`{str(value)[:64]}`", "no such account", None)
            return say.TAKEOVER_REFUSED["not_open"].format(name=str(value)[:64])
        name = request.mixpanel_username or request.username
        ownership = self.store.ownership(request.mixpanel_account_id)
        is_open = (
            ownership is not None
            and ownership.state is OwnershipState.OPEN
            and ownership.request_id == request.id
            and request.state is RequestState.DELIVERED
        )
        try:  # fresh: a successor demoted a minute ago must not take over on a cached answer
            person: Requester | None = self.d.directory.requester(user_id, patient=True, fresh=True)
        except DirectoryUnavailable:
            person = None
        today = today_in(person.timezone if person else "UTC", self.d.clock())
        refusal = takeover_refusal(
            self.d.policy, person, request, is_open=is_open, installation=self.d.installation, today=today
        )
        ref = self.m.ref_of(request)
        if refusal is not None or ownership is None:
            reason = str(refusal or "not_open")
            self.m.record_refusal(user_id, "take over", f"account {request.mixpanel_account_id}", reason, ref)
            return say.TAKEOVER_REFUSED[reason].format(name=name, contact=self.d.policy.contact)
        former = ownership.former_owner
        won = self.m.audit.record(
            lambda: self.store.take_over(request, former_owner=former, new_owner=user_id, now=self.d.clock()),
            lambda taken: (
                say.section_message(f":handshake: <@{user_id}> took over `{escape(name)}` from <@{former}>.")
                if taken
                else None
            ),
        )
        if not won:
            return say.TAKEOVER_REFUSED["not_open"].format(name=name)
        self.m.run(f"home:{user_id}", lambda: self.m.publish_home(user_id))
        return say.TAKEN_OVER.format(name=name)
