"""Periodic reviews, as effects: open each owner's round once per period (one DM, every account in it),
report or (with `review_action: delete`) warn and delete what is left unconfirmed after the grace days,
and judge each Still needed / Delete click again on the server."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.db.schema import RequestState
from bot.govern import messages as say
from bot.govern.idle import WARNING_AHEAD
from bot.govern.notices import Notices
from bot.govern.owners import Owners
from bot.govern.review_store import ReviewItem, ReviewStore
from bot.govern.reviews import Answer, Overdue, next_review_period, overdue_step
from bot.govern.store import GovernanceStore, NoticeKind
from bot.manage.accounts import AccountEntry
from bot.manage.flow import DeleteOutcome, ManageFlow
from bot.manage.permissions import AccountOwnership, ManageAction, may_manage


class ReviewRounds:
    def __init__(
        self, manage: ManageFlow, store: ReviewStore, notices: GovernanceStore, owners: Owners, send: Notices
    ):
        self.m = manage
        self.d = manage.d
        self.store = store
        self.notices = notices
        self.owners = owners
        self.send = send
        # Set by the job: how the bot deletes on its own (claimed once, audited, both told).
        self.delete: Callable[..., bool] = lambda *args, **kwargs: False

    def run(self, owned: list[AccountEntry], now: datetime, *, dry_run: bool) -> list[str]:
        """`owned`: live accounts whose owner is still here."""
        g = self.d.policy.governance
        if g.review_every_days is None:
            return []
        by_owner: dict[str, list[AccountEntry]] = defaultdict(list)
        for entry in owned:
            by_owner[entry.owner_id or ""].append(entry)
        actions = []
        for owner, every in sorted(by_owner.items()):
            period = next_review_period(self.store.latest_round(owner), now, g.review_every_days)
            if period is None:
                continue  # this owner's round of the current period was opened already
            if dry_run:
                actions.append(f"review round {period} for {owner}: {len(every)} account(s), unless sent")
                continue
            actions += self._start(owner, period, every, now)
        live = {e.account_id: e for e in owned}
        for item in self.store.unanswered():
            actions += self._overdue(item, live.get(item.account_id), now, dry_run=dry_run)
        return actions

    def _start(self, owner: str, period: int, every: list[AccountEntry], now: datetime) -> list[str]:
        """Open the owner's round with every account in it, and send it in DMs of at most REVIEW_MAX lines
        (the soonest to expire first, the list's order). A line whose DM could not be sent leaves the round
        (it is never reported or deleted unasked); a round none of whose DMs went out is opened again."""
        g = self.d.policy.governance
        requests = [e.request for e in every if e.request is not None]
        round_id = self.store.start_round(owner, period, requests, now=now)
        if round_id is None:
            return []  # this period's round was opened already
        parts = [every[i : i + say.REVIEW_MAX] for i in range(0, len(every), say.REVIEW_MAX)]
        unsent: list[AccountEntry] = []
        for number, part in enumerate(parts, start=1):
            message = say.review_message(
                round_id,
                part,
                projects=self.m.project_names(),
                grace_days=g.review_grace_days,
                deletes=g.review_action == "delete",
                total=len(every),
                part=(number, len(parts)),
            )
            if not self.owners.post(owner, message, dm=True):
                unsent += part
        if len(unsent) == len(every):
            self.store.forget_round(round_id)
            return []
        if unsent:
            self.store.drop_lines(round_id, [e.account_id for e in unsent])
        return [f"review round {period} sent to {owner}: {len(every) - len(unsent)} account(s)"]

    def _overdue(
        self, item: ReviewItem, entry: AccountEntry | None, now: datetime, *, dry_run: bool
    ) -> list[str]:
        g = self.d.policy.governance
        if entry is None:
            return []  # deleted meanwhile, or its owner left: the ownership flow has it
        if entry.owner_id != item.owner_id:
            return []  # taken over since: the round asked the former owner; the new one is asked next period
        sent = self.notices.notices(NoticeKind.REVIEW_WARNING, [item.account_id])
        warned = self.send.warned_at(sent, item.account_id, item.round_id)
        step = overdue_step(
            item.started_at, warned, now=now, grace_days=g.review_grace_days, action=g.review_action
        )
        if step is Overdue.NOT_YET:
            return []
        if step is Overdue.REPORT:
            claim = [(item.account_id, item.round_id)]
            message = say.review_overdue_notice(item.username, item.owner_id, item.started_at)
            if dry_run or self.send.to_audit_channel(NoticeKind.REVIEW_OVERDUE, claim, message, now):
                return [f"{item.username}: unconfirmed in review, reported"]
            return []
        why = f"left unconfirmed in the periodic review for {g.review_grace_days} days"
        if step is Overdue.WARN:
            due = max(item.started_at + timedelta(days=g.review_grace_days), now + WARNING_AHEAD)
            message = say.deletion_warning(entry, why=why, when=due)
            if dry_run or self.send.warn(NoticeKind.REVIEW_WARNING, entry, item.round_id, message, now):
                return [f"{item.username}: unconfirmed in review, warned of its deletion"]
            return []
        if dry_run or self.delete(entry, NoticeKind.REVIEW_DELETED, item.round_id, why=why, now=now):
            return [f"{item.username}: deleted ({why})"]
        return []

    # --- clicks ------------------------------------------------------------------------------------

    def answer(self, user_id: str, value: object, answer: Answer) -> str | DeleteOutcome:
        """Still needed / Delete on one line of a review DM: the line must exist, be unanswered, and the
        clicker must be allowed to manage the account now (its owner, or an admin)."""
        round_id, _, account = str(value or "").partition(":")
        item = (
            self.store.item(round_id[:32], int(account)) if account.isdigit() and len(account) <= 18 else None
        )
        request = self.m.records.get(item.request_id) if item else None
        person = self.d.directory.try_requester(user_id, patient=True)
        decision = may_manage(
            self.d.policy,
            person,
            ManageAction.DELETE,
            AccountOwnership(creator_id=request.owner if request else None),
            installation=self.d.installation,
        )
        if item is None or request is None or item.answer is not None or not decision.allowed:
            self.m.record_refusal(user_id, "review", f"`{str(value)[:64]}`", "stale or not theirs", None)
            return say.REVIEW_STALE
        if request.state is not RequestState.DELIVERED:  # deleted since: no answer to record
            self.m.record_refusal(user_id, "review", f"account {item.account_id}", "account gone", None)
            return say.REVIEW_GONE.format(name=item.username)
        if answer is Answer.DELETE:
            outcome = self.m.delete(user_id, f"r:{request.id}")
            if outcome.changed:
                self.store.answer(item, request, Answer.DELETE, actor_id=user_id, now=self.d.clock())
            return outcome
        if not self.store.answer(item, request, Answer.STILL_NEEDED, actor_id=user_id, now=self.d.clock()):
            return say.REVIEW_STALE
        return say.REVIEW_ANSWERED.format(name=item.username)
