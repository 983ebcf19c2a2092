"""Sending governance's notices once per period, across runs and instances, and never losing one.

Each notice is claimed in the database (bot/govern/store.py) before it is sent, and the claim is released
when the send fails, so that the next run sends it again rather than counting it as sent. Audit-channel
notices are sent here, inline, for that reason: a background announcement that fails cannot release its
claim.

The warning before a deletion the bot does on its own goes to the owner and to the audit channel, each
claimed on its own (the audit channel's copy under the period plus AUDIT_COPY): a retry after one of the
two failed sends only the missing one, and the countdown starts only once both have it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.govern.owners import Owners
from bot.govern.store import GovernanceStore, NoticeKind
from bot.manage.accounts import AccountEntry
from bot.manage.flow import ManageFlow

AUDIT_COPY = "|audit"  # period suffix of a warning's audit-channel copy (periods are at most 40 characters)


class Notices:
    def __init__(self, manage: ManageFlow, store: GovernanceStore, owners: Owners):
        self.d = manage.d
        self.store = store
        self.owners = owners

    def to_owner(
        self, kind: NoticeKind, entry: AccountEntry, period: str, message: dict, now: datetime
    ) -> bool:
        """A DM to the account's owner, once per kind, account and period. True when this call sent it."""
        owner = entry.owner_id or ""
        if not owner or not self.store.claim_notice(kind, entry.account_id, period, recipient=owner, now=now):
            return False
        if not self.owners.post(owner, message, dm=True):
            self.store.release_notice(kind, entry.account_id, period)
            return False
        return True

    def to_audit_channel(
        self,
        kind: NoticeKind,
        claims: list[tuple[int, str]],
        message: dict | Callable[[list[tuple[int, str]]], dict],
        now: datetime,
    ) -> list[tuple[int, str]]:
        """One audit-channel message for the (account, period) notices it carries: those this call could
        claim are sent (`message` may be made from them), and released again if the message cannot be
        posted. Returns the ones it sent."""
        channel = self.d.policy.audit_channel
        if not channel:
            return []
        won = [
            (account_id, period)
            for account_id, period in claims
            if self.store.claim_notice(kind, account_id, period, recipient=channel, now=now)
        ]
        if not won:
            return []
        if not self.d.delivery.announce(channel, message(won) if callable(message) else message):
            for account_id, period in won:
                self.store.release_notice(kind, account_id, period)
            return []
        return won

    def warn(self, kind: NoticeKind, entry: AccountEntry, period: str, message: dict, now: datetime) -> bool:
        """The warning before a deletion by the bot, to the owner and to the audit channel (each once). True
        when both have it now, whether sent by this call or before."""
        sent = self.store.notices(kind, [entry.account_id])
        owner_told = (entry.account_id, period) in sent or self.to_owner(kind, entry, period, message, now)
        audit = (entry.account_id, period + AUDIT_COPY)
        audit_told = (
            not self.d.policy.audit_channel
            or audit in sent
            or bool(self.to_audit_channel(kind, [audit], message, now))
        )
        return owner_told and audit_told

    def warned_at(
        self, sent: dict[tuple[int, str], datetime], account_id: int, period: str
    ) -> datetime | None:
        """When the warning reached everyone it must (`sent` from store.notices of the warning's kind); None
        while the owner or the audit channel (if there is one) still lacks it: no countdown runs then."""
        moments = [sent.get((account_id, period))]
        if self.d.policy.audit_channel:
            moments.append(sent.get((account_id, period + AUDIT_COPY)))
        if any(moment is None for moment in moments):
            return None
        return max(moment for moment in moments if moment is not None)
