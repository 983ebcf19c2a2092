"""Governance storage against real databases: notices once per period, takeovers and adoptions once, one
answer per review line; each a compare-and-set that two instances cannot both win."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.db.schema import AuditEvent, RequestState, StoredRequest
from bot.db.store import Store
from bot.govern.inventory_store import InventoryStore
from bot.govern.review_store import ReviewStore
from bot.govern.reviews import Answer
from bot.govern.store import GovernanceStore, NoticeKind, OwnershipState
from bot.manage.store import LifecycleStore
from bot.models import AccountSpec, Role

NOW = datetime.now(UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def stores(database_url):
    opened = [Store.connect(database_url) for _ in range(2)]
    yield opened
    for store in opened:
        store.close()


def delivered(store: Store, key: str, user: str = "UGONE", account_id: int = 7001) -> StoredRequest:
    spec = AccountSpec("etl", Role.ANALYST, (3001,), (NOW + timedelta(days=30)).date())
    claimed = store.claim(
        submission_key=key,
        requester_id=user,
        team_id="T1",
        channel_id="C1",
        spec=spec,
        within_quota=lambda _: True,
    )
    return store.transition(
        claimed.request.id,
        RequestState.DELIVERED,
        expected=(RequestState.SUBMITTED,),
        mixpanel_account_id=account_id,
        mixpanel_username=f"etl.{account_id}.mp-service-account",
    )


def race(count: int, work) -> list:
    results: list = []
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        results.append(work(index))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_notice_is_claimed_once_per_period_across_instances(stores):
    governance = [GovernanceStore(store) for store in stores]
    won = race(
        6, lambda i: governance[i % 2].claim_notice(NoticeKind.IDLE, 7001, "p1", recipient="U1", now=NOW)
    )
    assert won.count(True) == 1
    assert governance[0].claim_notice(NoticeKind.IDLE, 7001, "p2", recipient="U1", now=NOW)
    assert governance[0].claim_notice(NoticeKind.IDLE_WARNING, 7001, "p1", recipient="U1", now=NOW)
    governance[1].release_notice(NoticeKind.IDLE, 7001, "p1")
    assert governance[0].claim_notice(NoticeKind.IDLE, 7001, "p1", recipient="U1", now=NOW)
    assert set(governance[0].notices(NoticeKind.IDLE, [7001])) == {(7001, "p1"), (7001, "p2")}


def test_a_takeover_happens_once_and_moves_the_current_owner(stores):
    request = delivered(stores[0], "k1")
    governance = [GovernanceStore(store) for store in stores]
    assert governance[0].open_ownership(request, detail="owner deactivated", now=NOW)
    assert not governance[1].open_ownership(request, detail="owner deactivated", now=NOW)  # open already

    won = race(
        4,
        lambda i: governance[i % 2].take_over(request, former_owner="UGONE", new_owner=f"UNEW{i}", now=NOW),
    )
    assert won.count(True) == 1
    owner = stores[0].get(request.id).owner
    assert owner.startswith("UNEW") and stores[0].get(request.id).requester_id == "UGONE"
    assert governance[0].ownership(7001).state is OwnershipState.TAKEN
    assert [
        r.id for r in LifecycleStore(stores[0], deletion_lease=timedelta(minutes=5)).delivered(owner)
    ] == [request.id]
    assert LifecycleStore(stores[0], deletion_lease=timedelta(minutes=5)).delivered("UGONE") == []
    events = [row["event"] for row in stores[0].audit_trail()]
    assert events.count(AuditEvent.OWNERSHIP_OPENED) == 1 and events.count(AuditEvent.OWNER_CHANGED) == 1

    # The successor leaves in turn: the ownership opens again, for them.
    moved = stores[0].get(request.id)
    assert governance[0].open_ownership(moved, detail="successor deactivated", now=NOW)
    assert governance[0].ownership(7001).former_owner == owner


def test_a_takeover_of_a_record_that_moved_meanwhile_changes_nothing(stores):
    request = delivered(stores[0], "k1")
    governance = GovernanceStore(stores[0])
    governance.open_ownership(request, detail="gone", now=NOW)
    assert not governance.take_over(request, former_owner="USOMEONE", new_owner="UNEW", now=NOW)
    assert governance.ownership(7001).state is OwnershipState.OPEN
    assert stores[0].get(request.id).owner == "UGONE"


def test_an_account_is_adopted_once(stores):
    inventories = [InventoryStore(store) for store in stores]

    def adopt(index: int):
        return inventories[index % 2].adopt(
            account_id=9001,
            username="by-hand.x.mp-service-account",
            role=Role.CONSUMER,
            project_ids=(3001,),
            expires_at=None,
            created_at=NOW - timedelta(days=300),
            mixpanel_creator=42,
            admin_id="UADMIN",
            owner_id=f"UOWNER{index}",
            now=NOW,
        )

    adopted = [r for r in race(4, adopt) if r is not None]
    assert len(adopted) == 1 and adopted[0].owner.startswith("UOWNER") and adopted[0].requester_id == "UADMIN"
    assert inventories[0].adopted() == {9001}
    # Adopting counts against nobody's daily limit: the record carries Mixpanel's creation time.
    assert adopted[0].created_at < NOW - timedelta(days=299)


def test_first_seen_is_recorded_once(stores):
    inventory = InventoryStore(stores[0])
    assert inventory.first_seen([(9001, "a", 42), (9002, "b", None)], now=NOW) == [9001, 9002]
    assert inventory.first_seen([(9001, "a", 42), (9003, "c", 1)], now=NOW) == [9003]


def test_a_review_round_per_owner_and_period_and_one_answer_per_line(stores):
    first = delivered(stores[0], "k1", user="UALICE", account_id=7001)
    second = delivered(stores[0], "k2", user="UALICE", account_id=7002)
    reviews = [ReviewStore(store) for store in stores]
    rounds = race(4, lambda i: reviews[i % 2].start_round("UALICE", 5, [first, second], now=NOW))
    round_id = next(r for r in rounds if r is not None)
    assert rounds.count(None) == 3
    item = reviews[0].item(round_id, 7001)
    answered = race(
        4, lambda i: reviews[i % 2].answer(item, first, Answer.STILL_NEEDED, actor_id="UALICE", now=NOW)
    )
    assert answered.count(True) == 1
    assert [(i.account_id, i.answer) for i in reviews[0].items(round_id)] == [
        (7001, Answer.STILL_NEEDED),
        (7002, None),
    ]
    assert [i.account_id for i in reviews[0].unanswered()] == [7002]
    assert reviews[0].start_round("UALICE", 6, [first], now=NOW) is not None  # the next period


def test_posture_snapshots_keep_the_latest_per_period(stores):
    governance = GovernanceStore(stores[0])
    governance.save_posture("2026-W01", {"live": 3}, now=NOW)
    governance.save_posture("2026-W02", {"live": 4}, now=NOW)
    governance.save_posture("2026-W02", {"live": 5}, now=NOW)
    assert governance.postures() == [("2026-W02", {"live": 5}), ("2026-W01", {"live": 3})]


def test_a_keep_is_audited_with_its_reason_and_counts_as_a_use(stores):
    request = delivered(stores[0], "k1", user="UALICE")
    governance = GovernanceStore(stores[0])
    governance.record_keep(request, actor_id="UALICE", reason="quarterly export", basis="creator", now=NOW)
    kept = governance.latest_keeps([7001])[7001]
    assert abs((kept - NOW).total_seconds()) < 1
    row = next(r for r in stores[0].audit_trail() if r["event"] == AuditEvent.KEPT)
    assert "quarterly export" in row["detail"] and row["requester_id"] == "UALICE"


def test_migration_0008_keeps_every_earlier_account_owned_by_its_requester(database_url):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from bot.db.engine import MIGRATIONS_DIR, build_engine

    engine = build_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO account_requests (id, submission_key, requester_id, username, role, "
                "project_ids, state, mixpanel_account_id, created_at, updated_at) VALUES ('old', 'old', "
                "'UOLD', 'etl', 'analyst', '[3001]', 'delivered', 7001, :at, :at)"
            ),
            {"at": NOW},
        )
    engine.dispose()

    store = Store.connect(database_url)
    try:
        assert store.get("old").owner == "UOLD" and store.get("old").owner_id is None
        assert [
            r.id for r in LifecycleStore(store, deletion_lease=timedelta(minutes=5)).delivered("UOLD")
        ] == ["old"]
    finally:
        store.close()
