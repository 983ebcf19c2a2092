"""Approval records beside the requests, and every approval transition as a compare-and-set.

A request that needs approval is an ordinary `account_requests` row whose state is one of the approval
states; `approval_requests` holds what only approval needs, `approval_decisions` one row per approver
(unique per request), `approval_messages` where the bot posted about it (so it can update them in place).

Each decision is one transaction that starts with `UPDATE account_requests … WHERE state = expected`:
the row lock it takes serializes concurrent clicks on one request, across threads and instances, and the
loser matches no row. Nothing here decides who may click: that is `bot.approve.states`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.approve.tables import (
    APPROVALS,
    APPROVED,
    DECISIONS,
    DENIED,
    FOR_APPROVERS,
    FOR_REQUESTER,
    LAPSED,
    MESSAGES,
    ApprovalRecord,
)
from bot.db.schema import REQUESTS, AuditEvent, RequestState, StoredRequest
from bot.db.store import AlreadyClaimed, Claimed, OverQuota, Store, audit_row
from bot.models import AccountSpec


class ApprovalStore:
    def __init__(self, store: Store):
        self._store = store

    # --- opening -----------------------------------------------------------------------------------

    def open(
        self,
        *,
        submission_key: str,
        requester_id: str,
        team_id: str | None,
        channel_id: str | None,
        spec: AccountSpec,
        reason: str,
        approvals_needed: int,
        decide_by: datetime,
        within_quota: Callable[[int], bool],
        now: datetime,
        break_glass: bool = False,
        window: timedelta = timedelta(hours=24),
        replaces_request_id: str | None = None,
    ) -> Claimed | AlreadyClaimed | OverQuota:
        """Store a request once, counted against the quota now. Break glass stores it already claimed."""

        def with_row(connection: Connection, row: Mapping[str, Any]) -> None:
            connection.execute(
                insert(APPROVALS).values(
                    request_id=row["id"],
                    approvals_needed=approvals_needed,
                    reason=reason,
                    break_glass=break_glass,
                    decide_by=decide_by,
                )
            )

        return self._store.claim(
            submission_key=submission_key,
            requester_id=requester_id,
            team_id=team_id,
            channel_id=channel_id,
            spec=spec,
            within_quota=within_quota,
            window=window,
            now=now,
            state=RequestState.SUBMITTED if break_glass else RequestState.PENDING_APPROVAL,
            event=AuditEvent.BREAK_GLASS if break_glass else AuditEvent.APPROVAL_REQUESTED,
            actor_id=requester_id,
            detail=reason,
            with_row=with_row,
            replaces_request_id=replaces_request_id,
        )

    # --- reading -----------------------------------------------------------------------------------

    def get(self, request_id: str) -> ApprovalRecord | None:
        with self._store._read() as connection:
            return self._record(connection, request_id)

    @staticmethod
    def _record(connection: Connection, request_id: str) -> ApprovalRecord | None:
        row = (
            connection.execute(
                select(REQUESTS, APPROVALS)
                .join(APPROVALS, APPROVALS.c.request_id == REQUESTS.c.id)
                .where(REQUESTS.c.id == request_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        decisions = list(
            connection.execute(
                select(DECISIONS).where(DECISIONS.c.request_id == request_id).order_by(DECISIONS.c.id)
            ).mappings()
        )
        denial = next((d for d in decisions if d["decision"] == DENIED), None)
        return ApprovalRecord(
            request=StoredRequest.of(row),
            approvals_needed=row["approvals_needed"],
            reason=row["reason"],
            break_glass=bool(row["break_glass"]),
            decide_by=row["decide_by"],
            claim_by=row["claim_by"],
            reminded_at=row["reminded_at"],
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            approved_by=tuple(d["approver_id"] for d in decisions if d["decision"] == APPROVED),
            denial_reason=denial["reason"] if denial else None,
        )

    # --- transitions (each one compare-and-set) ------------------------------------------------------

    @staticmethod
    def _take(
        connection: Connection,
        request_id: str,
        expected: RequestState,
        now: datetime,
        to: RequestState | None = None,
    ) -> Mapping[str, Any] | None:
        """The compare-and-set: move the request from `expected` (to `to`, or only touch it), or None if
        it is no longer in `expected`. Holding its row lock serializes every other decision on it."""
        values: dict[str, Any] = {"updated_at": now}
        if to is not None:
            values["state"] = str(to)
        return (
            connection.execute(
                update(REQUESTS)
                .where(REQUESTS.c.id == request_id, REQUESTS.c.state == str(expected))
                .values(values)
                .returning(*REQUESTS.c)
            )
            .mappings()
            .first()
        )

    @classmethod
    def _recount(
        cls, connection: Connection, request_id: str, lapsed: frozenset[str], needed: int
    ) -> ApprovalRecord | None:
        """Apply today's policy to the stored request (its row lock held): the yeses of `lapsed` people (no
        longer approvers) stop counting, and it needs at least `needed` approvals from now on."""
        if lapsed:
            connection.execute(
                update(DECISIONS)
                .where(
                    DECISIONS.c.request_id == request_id,
                    DECISIONS.c.decision == APPROVED,
                    DECISIONS.c.approver_id.in_(sorted(lapsed)),
                )
                .values(decision=LAPSED)
            )
        connection.execute(
            update(APPROVALS)
            .where(APPROVALS.c.request_id == request_id, APPROVALS.c.approvals_needed < needed)
            .values(approvals_needed=needed)
        )
        return cls._record(connection, request_id)

    def approve(
        self,
        request_id: str,
        approver_id: str,
        *,
        now: datetime,
        claim_ttl: timedelta,
        lapsed: frozenset[str] = frozenset(),
        needed: int = 1,
    ) -> ApprovalRecord | None:
        """Record one approver's yes; the last one needed approves the request. `lapsed` and `needed`: what
        today's policy says (see `_recount`). None: the click lost (decided, cancelled or expired
        meanwhile, past its deadline, or this approver already said yes)."""
        try:
            with self._store._write() as connection:
                row = self._take(connection, request_id, RequestState.PENDING_APPROVAL, now)
                if row is None:
                    return None
                record = self._recount(connection, request_id, lapsed - {approver_id}, needed)
                if record is None or record.decide_by <= now or approver_id in record.approved_by:
                    return None
                renewed = connection.execute(  # a yes that had lapsed counts again, from this click on
                    update(DECISIONS)
                    .where(
                        DECISIONS.c.request_id == request_id,
                        DECISIONS.c.approver_id == approver_id,
                        DECISIONS.c.decision == LAPSED,
                    )
                    .values(decision=APPROVED, at=now)
                )
                if renewed.rowcount == 0:
                    connection.execute(
                        insert(DECISIONS).values(
                            request_id=request_id, approver_id=approver_id, decision=APPROVED, at=now
                        )
                    )
                count = len(record.approved_by) + 1
                if count >= record.approvals_needed:
                    row = self._take(
                        connection, request_id, RequestState.PENDING_APPROVAL, now, to=RequestState.APPROVED
                    )
                    connection.execute(
                        update(APPROVALS)
                        .where(APPROVALS.c.request_id == request_id)
                        .values(claim_by=now + claim_ttl, decided_by=approver_id, decided_at=now)
                    )
                audit_row(
                    connection,
                    AuditEvent.APPROVED,
                    row,
                    at=now,
                    actor_id=approver_id,
                    detail=f"{count} of {record.approvals_needed} approvals",
                )
                return self._record(connection, request_id)
        except IntegrityError:
            return None  # the same approver's other click won

    def deny(self, request_id: str, approver_id: str, reason: str, *, now: datetime) -> ApprovalRecord | None:
        with self._store._write() as connection:
            record = self._record(connection, request_id)
            if record is None or record.decide_by <= now:
                return None
            row = self._take(
                connection, request_id, RequestState.PENDING_APPROVAL, now, to=RequestState.DENIED
            )
            if row is None:
                return None
            connection.execute(
                insert(DECISIONS).values(
                    request_id=request_id, approver_id=approver_id, decision=DENIED, reason=reason, at=now
                )
            )
            connection.execute(
                update(APPROVALS)
                .where(APPROVALS.c.request_id == request_id)
                .values(decided_by=approver_id, decided_at=now)
            )
            audit_row(connection, AuditEvent.DENIED, row, at=now, actor_id=approver_id, detail=reason)
            return self._record(connection, request_id)

    def reopen(
        self, request_id: str, *, lapsed: frozenset[str], needed: int, now: datetime, decide_by: datetime
    ) -> ApprovalRecord | None:
        """Approved → pending, when today's policy finds its approvals too few: the claim window closes and
        a new decision window opens (with a new reminder). None: it moved meanwhile, or still suffices."""
        with self._store._write() as connection:
            if self._take(connection, request_id, RequestState.APPROVED, now) is None:
                return None
            record = self._recount(connection, request_id, lapsed, needed)
            if record is None or len(record.approved_by) >= record.approvals_needed:
                return None
            row = self._take(
                connection, request_id, RequestState.APPROVED, now, to=RequestState.PENDING_APPROVAL
            )
            connection.execute(
                update(APPROVALS)
                .where(APPROVALS.c.request_id == request_id)
                .values(
                    claim_by=None, decided_by=None, decided_at=None, reminded_at=None, decide_by=decide_by
                )
            )
            detail = (
                f"{len(record.approved_by)} of {record.approvals_needed} approvals count under today's policy"
            )
            audit_row(connection, AuditEvent.APPROVAL_REOPENED, row, at=now, detail=detail)
            return self._record(connection, request_id)

    def withdraw(self, request_id: str, actor_id: str, *, now: datetime) -> ApprovalRecord | None:
        """Approved (and not claimed) → withdrawn, by an approver or an admin."""
        return self._end(
            request_id,
            RequestState.WITHDRAWN,
            AuditEvent.APPROVAL_WITHDRAWN,
            actor_id,
            now=now,
            from_states=(RequestState.APPROVED,),
        )

    def cancel(self, request_id: str, requester_id: str, *, now: datetime) -> ApprovalRecord | None:
        return self._end(request_id, RequestState.CANCELLED, AuditEvent.CANCELLED, requester_id, now=now)

    def expire(self, request_id: str, *, now: datetime) -> ApprovalRecord | None:
        """Expire a request whose deadline has passed (pending or approved but unclaimed)."""
        return self._end(
            request_id, RequestState.EXPIRED, AuditEvent.EXPIRED, None, now=now, overdue_only=True
        )

    def unreachable(self, request_id: str, *, now: datetime) -> ApprovalRecord | None:
        """No approver could be told of a pending request: end it at once, as expired, rather than let it
        wait silently for a decision nobody was asked for."""
        return self._end(request_id, RequestState.EXPIRED, AuditEvent.EXPIRED, None, now=now)

    def _end(
        self,
        request_id: str,
        to: RequestState,
        event: AuditEvent,
        actor_id: str | None,
        *,
        now: datetime,
        overdue_only: bool = False,
        from_states: tuple[RequestState, ...] = (RequestState.PENDING_APPROVAL, RequestState.APPROVED),
    ) -> ApprovalRecord | None:
        with self._store._write() as connection:
            for expected in from_states:
                before = self._record(connection, request_id)
                if before is None or before.request.state is not expected:
                    continue
                deadline = before.deadline()
                if overdue_only and (deadline is None or deadline > now):
                    return None
                row = self._take(connection, request_id, expected, now, to=to)
                if row is None:
                    return None
                connection.execute(
                    update(APPROVALS)
                    .where(APPROVALS.c.request_id == request_id)
                    .values(decided_by=actor_id, decided_at=now)
                )
                audit_row(connection, event, row, at=now, actor_id=actor_id, detail=f"was {expected}")
                return self._record(connection, request_id)
            return None

    def claim(
        self,
        request_id: str,
        requester_id: str,
        *,
        now: datetime,
        lapsed: frozenset[str] = frozenset(),
        needed: int = 1,
    ) -> ApprovalRecord | None:
        """Approved → submitted, once, before `claim_by`, while the approvals that count today (`lapsed`,
        `needed`: see `_recount`) still suffice: creation then runs as for any request."""
        with self._store._write() as connection:
            # Decisions change only while pending, so what is read here holds if the compare-and-set wins.
            before = self._record(connection, request_id)
            if before is None or before.claim_by is None or before.claim_by <= now:
                return None
            if len(set(before.approved_by) - lapsed) < max(before.approvals_needed, needed):
                return None
            row = self._take(connection, request_id, RequestState.APPROVED, now, to=RequestState.SUBMITTED)
            if row is None:
                return None
            audit_row(connection, AuditEvent.CLAIMED, row, at=now, actor_id=requester_id)
            return self._record(connection, request_id)

    def overdue(self, now: datetime, limit: int = 100) -> list[str]:
        """Requests past their deadline: undecided past `decide_by`; approved, unclaimed past `claim_by`."""
        with self._store._read() as connection:
            query = (
                select(REQUESTS.c.id)
                .join(APPROVALS, APPROVALS.c.request_id == REQUESTS.c.id)
                .where(
                    or_(
                        and_(
                            REQUESTS.c.state == str(RequestState.PENDING_APPROVAL),
                            APPROVALS.c.decide_by <= now,
                        ),
                        and_(REQUESTS.c.state == str(RequestState.APPROVED), APPROVALS.c.claim_by <= now),
                    )
                )
                .order_by(REQUESTS.c.created_at)
                .limit(limit)
            )
            return list(connection.execute(query).scalars())

    def reminders_due(self, now: datetime, after: timedelta, limit: int = 100) -> list[str]:
        """Pending requests older than `after` whose approvers were not reminded yet."""
        with self._store._read() as connection:
            query = (
                select(REQUESTS.c.id)
                .join(APPROVALS, APPROVALS.c.request_id == REQUESTS.c.id)
                .where(
                    REQUESTS.c.state == str(RequestState.PENDING_APPROVAL),
                    APPROVALS.c.reminded_at.is_(None),
                    REQUESTS.c.created_at <= now - after,
                )
                .order_by(REQUESTS.c.created_at)
                .limit(limit)
            )
            return list(connection.execute(query).scalars())

    def take_reminder(self, request_id: str, *, now: datetime) -> bool:
        """True for exactly one caller, across instances, while the request is still pending."""
        with self._store._write() as connection:
            if self._take(connection, request_id, RequestState.PENDING_APPROVAL, now) is None:
                return False
            taken = connection.execute(
                update(APPROVALS)
                .where(APPROVALS.c.request_id == request_id, APPROVALS.c.reminded_at.is_(None))
                .values(reminded_at=now)
            )
            return taken.rowcount == 1

    # --- where the bot wrote about a request ---------------------------------------------------------

    def add_message(self, request_id: str, audience: str, channel: str, ts: str) -> None:
        with self._store._write() as connection:
            connection.execute(
                insert(MESSAGES).values(request_id=request_id, audience=audience, channel=channel, ts=ts)
            )

    def messages(self, request_id: str, audience: str) -> list[tuple[str, str]]:
        with self._store._read() as connection:
            rows = connection.execute(
                select(MESSAGES.c.channel, MESSAGES.c.ts)
                .where(MESSAGES.c.request_id == request_id, MESSAGES.c.audience == audience)
                .order_by(MESSAGES.c.id)
            )
            return [(channel, ts) for channel, ts in rows]


__all__ = ["FOR_APPROVERS", "FOR_REQUESTER", "ApprovalRecord", "ApprovalStore"]
