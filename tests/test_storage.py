"""The store against real databases: SQLite, and PostgreSQL where a server can be started."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import inspect, text

from bot.create.orphans import OrphanOutcome, OrphanRecords
from bot.db.schema import AuditEvent, RequestState
from bot.db.store import AlreadyClaimed, Claimed, OverQuota, StateMoved, Store
from bot.models import AccountSpec, Role
from tests import clock


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


NEW_YORK = "America/New_York"


def spec(expires_on: date | None = None) -> AccountSpec:
    """The account asked for: by default expiring 60 days after today in New York (the store stamps its
    rows with the wall clock unless given `now`)."""
    return AccountSpec(
        username="etl",
        role=Role.ANALYST,
        project_ids=(3001, 3002),
        expires_on=expires_on or clock.days_from_now(60, NEW_YORK),
        timezone=NEW_YORK,
    )


def claim(
    store: Store,
    key: str,
    user: str = "U1",
    quota: int = 10,
    now: datetime | None = None,
    expires_on: date | None = None,
):
    return store.claim(
        submission_key=key,
        requester_id=user,
        team_id="T1",
        channel_id="C1",
        spec=spec(expires_on),
        within_quota=lambda recent: recent < quota,
        now=now,
    )


def test_migrations_create_the_schema_and_are_idempotent(database_url):
    first = Store.connect(database_url)
    second = Store.connect(database_url)  # a second instance starting against the same database
    tables = set(inspect(second.engine).get_table_names())
    assert {"account_requests", "audit_events", "orphan_accounts", "alembic_version"} <= tables
    columns = {
        c["name"]
        for t in ("account_requests", "audit_events", "orphan_accounts")
        for c in inspect(first.engine).get_columns(t)
    }
    assert not any("token" in column or "secret" in column for column in columns)
    first.close()
    second.close()


def test_the_cleanup_migration_carries_requests_stored_before_it(database_url):
    from alembic import command
    from alembic.config import Config

    from bot.db.engine import MIGRATIONS_DIR, build_engine

    engine = build_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    stored = datetime(2026, 11, 1, tzinfo=UTC)
    row = {"team_id": None, "channel_id": None, "role": "analyst", "project_ids": "[1]", "expires_at": None}
    with engine.begin() as connection:
        for request_id, state, account_id in (
            ("old-undeleted", "delete_failed", 9),
            ("old-open", "uncertain", None),
        ):
            connection.execute(
                text(
                    "INSERT INTO account_requests (id, submission_key, requester_id, team_id, "
                    "channel_id, username, role, project_ids, expires_at, state, mixpanel_account_id, "
                    "mixpanel_username, error, created_at, updated_at) VALUES (:id, :id, 'U1', :team_id, "
                    ":channel_id, 'etl', :role, :project_ids, :expires_at, :state, :account, NULL, NULL, "
                    ":at, :at)"
                ),
                {**row, "id": request_id, "state": state, "account": account_id, "at": stored},
            )
    engine.dispose()

    store = Store.connect(database_url)
    assert [(o.account_id, o.outcome) for o in OrphanRecords(store).orphans("old-undeleted")] == [
        (9, OrphanOutcome.DELETE_FAILED)
    ]
    assert store.get("old-open").last_create_attempt_at == stored  # its window stays known
    store.close()


def test_a_claim_round_trips_with_time_zones_intact(store):
    # One injected clock: the claim is stamped `now` (nothing here reads the wall clock), and the expiry is
    # a winter date two months after it, so the offset is New York's standard time.
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    result = claim(store, "V1", now=now, expires_on=date(2027, 1, 31))
    assert isinstance(result, Claimed)
    stored = store.get(result.request.id)
    assert stored.state is RequestState.SUBMITTED
    assert stored.expires_at == datetime(2027, 2, 1, 4, 59, 59, tzinfo=UTC)  # end of Jan 31 in New York
    assert stored.project_ids == (3001, 3002) and stored.role is Role.ANALYST
    assert stored.created_at == now and stored.created_at.tzinfo is not None


def test_the_same_submission_key_is_claimed_once(store):
    first = claim(store, "V1")
    again = claim(store, "V1")
    assert isinstance(first, Claimed) and isinstance(again, AlreadyClaimed)
    assert again.request.id == first.request.id


def claim_all_at_once(database_url: str, count: int, attempt) -> list:
    """Run `attempt(store, index)` from `count` threads released together, over two instances."""
    stores = [Store.connect(database_url) for _ in range(2)]
    results = []
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        results.append(attempt(stores[index % 2], index))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for s in stores:
        s.close()
    return results


def test_concurrent_claims_of_one_key_yield_one_winner(database_url):
    results = claim_all_at_once(database_url, 8, lambda store, _: claim(store, "VSAME"))
    assert sum(isinstance(r, Claimed) for r in results) == 1
    assert sum(isinstance(r, AlreadyClaimed) for r in results) == 7


def test_the_quota_is_atomic_under_concurrent_claims(database_url):
    results = claim_all_at_once(database_url, 10, lambda store, index: claim(store, f"V{index}", quota=4))
    assert sum(isinstance(r, Claimed) for r in results) == 4
    assert sum(isinstance(r, OverQuota) for r in results) == 6


def test_the_quota_window_is_rolling_and_failed_attempts_do_not_count(store):
    old = datetime.now(UTC) - timedelta(hours=25)
    assert isinstance(claim(store, "VOLD", quota=1, now=old), Claimed)
    fresh = claim(store, "VNEW", quota=1)
    assert isinstance(fresh, Claimed)
    assert isinstance(claim(store, "VNEXT", quota=1), OverQuota)
    store.transition(
        fresh.request.id,
        RequestState.FAILED,
        expected=(RequestState.SUBMITTED,),
        event=AuditEvent.MIXPANEL_ERROR,
        detail="400",
    )
    assert isinstance(claim(store, "VNEXT", quota=1), Claimed)


def test_transitions_write_audit_rows_with_the_request_details(store):
    request = claim(store, "V1").request
    store.transition(
        request.id,
        RequestState.CREATED,
        expected=(RequestState.SUBMITTED,),
        event=AuditEvent.CREATED,
        mixpanel_account_id=42,
        mixpanel_username="etl.abc123.mp-service-account",
    )
    store.transition(
        request.id,
        RequestState.DELIVERED,
        expected=(RequestState.CREATED,),
        event=AuditEvent.TOKEN_DELIVERED,
        detail="via dm",
    )
    store.record_refusal("U2", "not_listed")
    trail = store.audit_trail()
    assert [r["event"] for r in trail] == ["submitted", "created", "token_delivered", "refused"]
    created = trail[1]
    assert created["mixpanel_account_id"] == 42 and created["mixpanel_username"].startswith("etl.")
    assert created["project_ids"] == [3001, 3002] and created["role"] == "analyst"
    assert trail[3]["requester_id"] == "U2" and trail[3]["detail"] == "not_listed"
    assert store.audit_trail(since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_stale_requests_are_leased_once(database_url):
    first, second = Store.connect(database_url), Store.connect(database_url)
    request = claim(first, "V1").request
    first.transition(request.id, RequestState.UNCERTAIN, expected=(RequestState.SUBMITTED,))
    later = datetime.now(UTC) + timedelta(minutes=11)
    assert (
        first.lease_stale((RequestState.UNCERTAIN,), idle_for=timedelta(minutes=10), now=later)[0].id
        == request.id
    )
    # The lease bumped updated_at: another instance sweeping right after finds nothing.
    assert second.lease_stale((RequestState.UNCERTAIN,), idle_for=timedelta(minutes=10), now=later) == []
    assert first.lease_stale((RequestState.UNCERTAIN,), idle_for=timedelta(minutes=10)) == []
    first.close()
    second.close()


def test_a_transition_from_a_state_the_request_is_not_in_raises_and_changes_nothing(store):
    request = claim(store, "V1").request
    with pytest.raises(StateMoved) as moved:
        store.transition(request.id, RequestState.DELIVERED, expected=(RequestState.CREATED,))
    assert moved.value.actual is RequestState.SUBMITTED
    assert store.get(request.id).state is RequestState.SUBMITTED
    assert [r["event"] for r in store.audit_trail()] == ["submitted"]


def race(**contenders) -> dict[str, object]:
    """Run each contender from its own thread, released together; each result or StateMoved, by name."""
    barrier = threading.Barrier(len(contenders))
    outcomes: dict[str, object] = {}

    def run(name, attempt) -> None:
        barrier.wait()
        try:
            outcomes[name] = attempt()
        except StateMoved as moved:
            outcomes[name] = moved

    threads = [threading.Thread(target=run, args=item) for item in contenders.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_the_sweeper_and_a_live_job_racing_for_one_request_never_both_win(database_url):
    """A live delivery (created -> delivered) against a sweeper revoking (created -> orphaned), from two
    instances released together, many times: exactly one wins each time, and the other is told."""
    live, sweeper = Store.connect(database_url), Store.connect(database_url)
    records = OrphanRecords(live)
    for round_ in range(12):
        account_id = round_ + 1
        request = claim(live, f"V{round_}", quota=100).request
        live.record_create_attempt(request.id)
        live.transition(
            request.id,
            RequestState.CREATED,
            expected=(RequestState.SUBMITTED,),
            mixpanel_account_id=account_id,
        )
        outcomes = race(
            live=partial(
                live.transition, request.id, RequestState.DELIVERED, expected=(RequestState.CREATED,)
            ),
            sweeper=partial(
                OrphanRecords(sweeper).record_orphans,
                request.id,
                [(account_id, None)],
                expected=(RequestState.CREATED,),
            ),
        )
        [loser] = [name for name, outcome in outcomes.items() if isinstance(outcome, StateMoved)]
        final = live.get(request.id).state
        if loser == "live":
            assert final is RequestState.ORPHANED and outcomes["live"].actual is RequestState.ORPHANED
            assert [o.account_id for o in records.orphans(request.id)] == [account_id]
        else:
            assert final is RequestState.DELIVERED and records.orphans(request.id) == []
    live.close()
    sweeper.close()


def test_each_orphan_keeps_its_own_outcome_and_one_failure_keeps_the_request_delete_failed(store):
    orphans = OrphanRecords(store)
    request = claim(store, "V1").request
    store.record_create_attempt(request.id)
    store.transition(request.id, RequestState.UNCERTAIN, expected=(RequestState.SUBMITTED,))
    orphans.record_orphans(request.id, [(1, "etl.a"), (2, "etl.b")], expected=(RequestState.UNCERTAIN,))
    assert store.get(request.id).state is RequestState.ORPHANED

    assert (
        orphans.record_deletion(request.id, 1, deleted=False, detail="403").state
        is RequestState.DELETE_FAILED
    )
    assert (
        orphans.record_deletion(request.id, 2, deleted=True, detail="ok").state is RequestState.DELETE_FAILED
    )
    assert orphans.record_deletion(request.id, 2, deleted=True, detail="again") is None  # deleted once only
    outcomes = {o.account_id: o.outcome for o in orphans.orphans(request.id)}
    assert outcomes == {1: OrphanOutcome.DELETE_FAILED, 2: OrphanOutcome.DELETED}

    assert (
        orphans.record_deletion(request.id, 1, deleted=True, detail="retried").state is RequestState.DELETED
    )
    trail = [(r["event"], r["mixpanel_account_id"], r["mixpanel_username"]) for r in store.audit_trail()]
    assert trail[-3:] == [("delete_failed", 1, "etl.a"), ("deleted", 2, "etl.b"), ("deleted", 1, "etl.a")]
    assert orphans.known_account_ids([1, 2, 3], besides="another") == {1, 2}
    assert orphans.known_account_ids([1, 2, 3], besides=request.id) == set()


def test_an_account_recorded_for_one_request_is_not_recorded_for_another(store):
    orphans = OrphanRecords(store)
    first, second = claim(store, "V1").request, claim(store, "V2").request
    for request in (first, second):
        store.transition(request.id, RequestState.UNCERTAIN, expected=(RequestState.SUBMITTED,))
    orphans.record_orphans(first.id, [(5, None)], expected=(RequestState.UNCERTAIN,))
    orphans.record_orphans(second.id, [(5, None), (6, None)], expected=(RequestState.UNCERTAIN,))
    assert [o.account_id for o in orphans.orphans(first.id)] == [5]
    assert [o.account_id for o in orphans.orphans(second.id)] == [6]


def test_creates_in_flight_are_other_submitted_requests_that_made_their_call(store):
    orphans = OrphanRecords(store)
    called, waiting, mine = (claim(store, f"V{i}").request for i in range(3))
    store.record_create_attempt(called.id)
    store.record_create_attempt(mine.id)
    assert [r.id for r in orphans.creates_in_flight("etl", besides=mine.id)] == [called.id]
    assert orphans.creates_in_flight("another-name", besides=mine.id) == []
    assert waiting.last_create_attempt_at is None


@pytest.mark.postgres
def test_the_whole_flow_on_postgres(bots, fresh_postgres_url):
    from tests.conftest import dump_database, form_values

    bot = bots.start(database_url=fresh_postgres_url)
    _, view, _ = bot.open_form()
    bot.submit(view, form_values(expires_on=clock.form_expiry(9)))
    bot.wait_idle()
    [token] = bot.mixpanel.created_tokens()
    assert [r["event"] for r in bot.store.audit_trail()] == ["submitted", "created", "token_delivered"]
    assert token not in dump_database(bot.store)
    assert bot.store.engine.dialect.name == "postgresql"


def test_refusals_racing_from_many_threads_are_all_stored_and_announced_once(store):
    start = threading.Barrier(8)
    notices = []
    now = datetime.now(UTC)

    def refuse() -> None:
        start.wait(10)
        notices.append(
            store.record_refusal("U1", "not_listed", announce_every=timedelta(minutes=10), now=now)
        )

    threads = [threading.Thread(target=refuse) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert sorted(notice.announce for notice in notices) == [False] * 7 + [True]
    assert len([r for r in store.audit_trail() if r["event"] == "refused"]) == 8
    later = store.record_refusal(
        "U1", "not_listed", announce_every=timedelta(minutes=10), now=now + timedelta(minutes=11)
    )
    assert later.announce and later.suppressed == 7
    quiet = store.record_refusal("U2", "not_listed")  # no audit channel: stored, never announced
    assert not quiet.announce
