"""Approval records and their compare-and-set transitions, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.approve.states import ApprovalState
from bot.approve.store import ApprovalStore
from bot.db.schema import RequestState
from bot.db.store import Claimed, OverQuota, Store
from bot.models import AccountSpec, Role

# One injected clock: every call below is given `now` (ApprovalStore requires it) and nothing here reads
# the wall clock, so a fixed date is safe on any day.
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CLAIM_TTL = timedelta(hours=72)
SPEC = AccountSpec(username="etl", role=Role.ADMIN, project_ids=(3001,), expires_on=date(2027, 1, 31))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def store(database_url) -> Iterator[Store]:
    store = Store.connect(database_url)
    yield store
    store.close()


def open_request(approvals: ApprovalStore, key: str = "V1", *, needed: int = 1, quota: int = 10, **extra):
    return approvals.open(
        submission_key=key,
        requester_id="UREQ",
        team_id="T1",
        channel_id="C1",
        spec=SPEC,
        reason="nightly export needs admin",
        approvals_needed=needed,
        decide_by=NOW + timedelta(hours=24),
        within_quota=lambda recent: recent < quota,
        now=NOW,
        **extra,
    )


def test_a_request_is_stored_pending_and_counted_when_made(store):
    approvals = ApprovalStore(store)
    opened = open_request(approvals)
    assert isinstance(opened, Claimed)
    record = approvals.get(opened.request.id)
    assert record.state is ApprovalState.PENDING and record.reason == "nightly export needs admin"
    assert store.recent_count("UREQ", now=NOW) == 1
    assert isinstance(open_request(approvals, "V2", quota=1), OverQuota)
    trail = store.audit_trail()
    assert [(r["event"], r["actor_id"]) for r in trail] == [("approval_requested", "UREQ")]


def test_one_approval_approves_and_sets_the_claim_deadline(store):
    approvals = ApprovalStore(store)
    request_id = open_request(approvals).request.id
    record = approvals.approve(request_id, "UA1", now=NOW, claim_ttl=CLAIM_TTL)
    assert record.state is ApprovalState.APPROVED
    assert record.approved_by == ("UA1",) and record.decided_by == "UA1"
    assert record.claim_by == NOW + CLAIM_TTL
    assert approvals.approve(request_id, "UA2", now=NOW, claim_ttl=CLAIM_TTL) is None  # already decided
    assert approvals.deny(request_id, "UA2", "no", now=NOW) is None


def test_two_needed_stays_pending_after_one_and_one_approver_counts_once(store):
    approvals = ApprovalStore(store)
    request_id = open_request(approvals, needed=2).request.id
    assert approvals.approve(request_id, "UA1", now=NOW, claim_ttl=CLAIM_TTL).state is ApprovalState.PENDING
    assert approvals.approve(request_id, "UA1", now=NOW, claim_ttl=CLAIM_TTL) is None
    assert approvals.get(request_id).state is ApprovalState.PENDING
    record = approvals.approve(request_id, "UA2", now=NOW, claim_ttl=CLAIM_TTL)
    assert record.state is ApprovalState.APPROVED and record.approved_by == ("UA1", "UA2")
    actors = [(r["event"], r["actor_id"]) for r in store.audit_trail()]
    assert actors[1:] == [("approved", "UA1"), ("approved", "UA2")]


def test_deny_records_the_reason_and_ends_the_request(store):
    approvals = ApprovalStore(store)
    request_id = open_request(approvals).request.id
    record = approvals.deny(request_id, "UA1", "use the analyst role", now=NOW)
    assert record.state is ApprovalState.DENIED and record.denial_reason == "use the analyst role"
    assert approvals.approve(request_id, "UA2", now=NOW, claim_ttl=CLAIM_TTL) is None
    assert approvals.cancel(request_id, "UREQ", now=NOW) is None


def test_claim_happens_once_and_only_before_its_deadline(store):
    approvals = ApprovalStore(store)
    request_id = open_request(approvals).request.id
    assert approvals.claim(request_id, "UREQ", now=NOW) is None  # not approved yet
    approvals.approve(request_id, "UA1", now=NOW, claim_ttl=CLAIM_TTL)
    assert approvals.claim(request_id, "UREQ", now=NOW + CLAIM_TTL) is None  # too late
    claimed = approvals.claim(request_id, "UREQ", now=NOW + timedelta(hours=1))
    assert claimed.state is ApprovalState.CLAIMED and claimed.request.state is RequestState.SUBMITTED
    assert approvals.claim(request_id, "UREQ", now=NOW + timedelta(hours=1)) is None


def test_expiry_takes_only_overdue_requests(store):
    approvals = ApprovalStore(store)
    request_id = open_request(approvals).request.id
    assert approvals.expire(request_id, now=NOW + timedelta(hours=23)) is None
    assert approvals.approve(request_id, "UA1", now=NOW + timedelta(hours=24), claim_ttl=CLAIM_TTL) is None
    assert approvals.expire(request_id, now=NOW + timedelta(hours=24)).state is ApprovalState.EXPIRED


def test_break_glass_is_stored_claimed_and_marked(store):
    approvals = ApprovalStore(store)
    opened = open_request(approvals, break_glass=True)
    record = approvals.get(opened.request.id)
    assert record.break_glass and record.request.state is RequestState.SUBMITTED
    assert [r["event"] for r in store.audit_trail()] == ["break_glass"]


@pytest.mark.parametrize("needed", [1, 2])
def test_concurrent_approvals_on_two_instances_make_one_decision(database_url, needed):
    """Two processes' stores, many clicks at once: each approver counts once, one transition wins."""
    first, second = Store.connect(database_url), Store.connect(database_url)
    try:
        request_id = open_request(ApprovalStore(first), needed=needed).request.id
        clickers = [("UA1", first), ("UA1", second), ("UA2", first), ("UA2", second), ("UA3", second)]
        barrier = threading.Barrier(len(clickers))
        results: list = [None] * len(clickers)

        def click(index: int, approver: str, store: Store) -> None:
            barrier.wait()
            results[index] = ApprovalStore(store).approve(request_id, approver, now=NOW, claim_ttl=CLAIM_TTL)

        threads = [
            threading.Thread(target=click, args=(i, who, where)) for i, (who, where) in enumerate(clickers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        winners = [r for r in results if r is not None]
        assert len(winners) == needed
        final = ApprovalStore(first).get(request_id)
        assert final.state is ApprovalState.APPROVED
        assert len(final.approved_by) == needed == len(set(final.approved_by))
        assert sum(r["event"] == "approved" for r in first.audit_trail()) == needed
    finally:
        first.close()
        second.close()


def test_expiry_and_reminders_run_once_across_instances(database_url):
    first, second = Store.connect(database_url), Store.connect(database_url)
    try:
        request_id = open_request(ApprovalStore(first)).request.id
        later = NOW + timedelta(hours=30)
        reminders = [ApprovalStore(s).take_reminder(request_id, now=NOW) for s in (first, second, first)]
        assert reminders == [True, False, False]
        expiries = [ApprovalStore(s).expire(request_id, now=later) for s in (second, first)]
        assert [e is not None for e in expiries] == [True, False]
        assert ApprovalStore(first).take_reminder(request_id, now=later) is False
        assert ApprovalStore(first).overdue(later) == []
    finally:
        first.close()
        second.close()
