"""Lifecycle storage against real databases, and the pure join of live accounts with stored requests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.db.schema import AuditEvent, RequestState, StoredRequest
from bot.db.store import Store
from bot.manage.accounts import Presence, join_accounts
from bot.manage.store import AccountRef, DeletionState, LifecycleStore
from bot.mixpanel.models import ServiceAccountRead
from bot.models import AccountSpec, Role
from tests import clock

# For the pure join below only: it never reads a clock. The store tests write through Store.claim and
# Store.transition, which stamp their rows with the wall clock, so their times are taken from the real now.
CREATED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DELETION_LEASE = timedelta(minutes=10)  # a store's lease is given (bot/runtime.py derives it from settings)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("fresh_postgres_url")


def delivered(store: Store, key: str, user: str = "U1", account_id: int = 7001) -> StoredRequest:
    spec = AccountSpec("etl", Role.ANALYST, (3001,), clock.days_from_now(60))
    claimed = store.claim(
        submission_key=key,
        requester_id=user,
        team_id="T1",
        channel_id="C1",
        spec=spec,
        within_quota=lambda _: True,
        now=clock.now(),
    )
    return store.transition(
        claimed.request.id,
        RequestState.DELIVERED,
        expected=(RequestState.SUBMITTED,),
        mixpanel_account_id=account_id,
        mixpanel_username=f"etl.{account_id}.mp-service-account",
    )


def test_concurrent_claims_of_one_deletion_have_one_winner_across_instances(database_url):
    stores = [Store.connect(database_url) for _ in range(2)]
    request = delivered(stores[0], "k1")
    now = clock.now()
    ref = AccountRef(request.mixpanel_account_id, request.mixpanel_username, request)
    lifecycles = [LifecycleStore(store, deletion_lease=DELETION_LEASE) for store in stores]
    results = []
    barrier = threading.Barrier(8)

    def claim(lifecycle: LifecycleStore) -> None:
        barrier.wait()
        results.append(lifecycle.claim_deletion(ref, actor_id="U1", basis="creator", now=now))

    threads = [threading.Thread(target=claim, args=(lifecycles[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.won for r in results) == [False] * 7 + [True]
    assert all(r.state is DeletionState.DELETING for r in results)
    for store in stores:
        store.close()


def test_a_failed_or_abandoned_deletion_may_be_taken_over_once(database_url):
    store = Store.connect(database_url)
    lifecycle = LifecycleStore(store, deletion_lease=DELETION_LEASE)
    request = delivered(store, "k1")
    now = clock.now()  # after the delivery, which the store stamped with the wall clock
    ref = AccountRef(request.mixpanel_account_id, request.mixpanel_username, request)
    assert lifecycle.claim_deletion(ref, actor_id="U1", basis="creator", now=now).won
    assert not lifecycle.claim_deletion(
        ref, actor_id="U1", basis="creator", now=now + timedelta(seconds=5)
    ).won
    later = now + DELETION_LEASE + timedelta(seconds=1)
    assert lifecycle.claim_deletion(ref, actor_id="U1", basis="creator", now=later).won
    lifecycle.fail_deletion(ref, actor_id="U1", detail="creator; forbidden", now=later)
    assert lifecycle.claim_deletion(ref, actor_id="U2", basis="admin", now=later).won
    lifecycle.finish_deletion(ref, actor_id="U2", found_gone=False, detail="allowed as admin", now=later)
    final = lifecycle.claim_deletion(ref, actor_id="U2", basis="admin", now=later + DELETION_LEASE * 2)
    assert (final.won, final.state) == (False, DeletionState.DELETED)
    closed = store.get(request.id)
    assert (closed.state, closed.closed_by, closed.closed_at) == (RequestState.CLOSED, "U2", later)
    events = [row["event"] for row in store.audit_trail()]
    assert events[-2:] == [AuditEvent.ACCOUNT_DELETE_FAILED, AuditEvent.ACCOUNT_DELETED]
    store.close()


def test_a_gone_account_is_closed_once(database_url):
    store = Store.connect(database_url)
    lifecycle = LifecycleStore(store, deletion_lease=DELETION_LEASE)
    request = delivered(store, "k1")
    now = clock.now()
    assert lifecycle.close_gone(request, now=now) is True
    assert lifecycle.close_gone(request, now=now) is False
    assert [r["event"] for r in store.audit_trail()].count(AuditEvent.FOUND_GONE) == 1
    assert lifecycle.delivered("U1") == []
    store.close()


def _live(account_id: int, username: str, expires: str | None = None) -> ServiceAccountRead:
    return ServiceAccountRead(id=account_id, username=username, expires=expires)


def _request(request_id: str, user: str, account_id: int, state=RequestState.DELIVERED, replaces=None):
    return StoredRequest(
        id=request_id,
        requester_id=user,
        team_id=None,
        channel_id=None,
        username="etl",
        role=Role.ANALYST,
        project_ids=(3001,),
        expires_at=None,
        state=state,
        mixpanel_account_id=account_id,
        mixpanel_username=f"etl.{account_id}",
        created_at=CREATED,
        replaces_request_id=replaces,
    )


@pytest.mark.parametrize(
    ("requester", "expected"),
    [
        (
            "U1",
            [
                ("etl.1", Presence.LIVE),
                ("etl.4", Presence.LIVE),
                ("etl.5", Presence.SETTLING),
                ("etl.3", Presence.GONE),
            ],
        ),
        ("U2", [("etl.2", Presence.LIVE)]),
        (
            None,
            [
                ("etl.1", Presence.LIVE),
                ("ui", Presence.LIVE),
                ("etl.2", Presence.LIVE),
                ("etl.4", Presence.LIVE),
                ("etl.5", Presence.SETTLING),
                ("etl.3", Presence.GONE),
            ],
        ),
    ],
)
def test_join_by_table(requester, expected):
    live = [
        _live(1, "etl.1", "2026-12-01T00:00:00Z"),
        _live(2, "etl.2", None),
        _live(4, "etl.4", None),
        _live(9, "ui", "2026-12-05T00:00:00Z"),
        _live(5, "etl.5", None),
    ]
    records = {
        1: _request("r1", "U1", 1),
        2: _request("r2", "U2", 2),
        3: _request("r3", "U1", 3),  # delivered, but Mixpanel no longer has it
        4: _request("r4", "U1", 4, replaces="r1"),
        5: _request("r5", "U1", 5, state=RequestState.CREATED),  # still being settled
    }
    entries, gone = join_accounts(live, records, requester_id=requester)
    assert [(e.username, e.presence) for e in entries] == expected
    assert [r.id for r in gone] == (["r3"] if requester in ("U1", None) else [])
    by_name = {e.username: e for e in entries}
    if "etl.1" in by_name:
        assert by_name["etl.1"].replaced_by == "etl.4"
    if "ui" in by_name:
        assert not by_name["ui"].made_by_bot and by_name["ui"].role is None
