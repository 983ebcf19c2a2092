"""Cleanup after an ambiguous create deletes only what this bot made for this request, through the wire."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from bot.create.orphans import OrphanRecords
from bot.db.schema import RequestState
from tests import clock
from tests.conftest import ALICE, ORG_ID, form_values
from tests.fakes.mixpanel import create_then, hang, respond
from tests.test_failures import only_request_state, run_flow, said_to_requester

BOB = "UBOB"
NAME = "etl-nightly"


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def told(bot, user: str = ALICE) -> list[str]:
    texts = [c.args.get("text", "") for c in bot.slack.calls("response_url")]
    texts += [
        c.args.get("text", "") for c in bot.slack.calls("chat.postEphemeral") if c.args.get("user") == user
    ]
    return texts


def events(bot) -> list[tuple[str, int | None]]:
    return [(entry["event"], entry["mixpanel_account_id"]) for entry in bot.store.audit_trail()]


def submit(bot, user: str, username: str = NAME) -> str:
    """Type the command and submit the form; returns the command's response_url."""
    _, view, response_url = bot.open_form(user)
    values = form_values(username=username, expires_on=clock.form_expiry(10))
    assert bot.submit(view, values, user_id=user).status == 200
    return response_url


# --- what is never deleted ---------------------------------------------------------------------------


def seed_hand_made(mixpanel, now):
    return mixpanel.add_account(ORG_ID, NAME)


def seed_bot_made_an_hour_ago(mixpanel, now):
    made = clock.iso_z(now - timedelta(hours=1))
    return mixpanel.add_account(ORG_ID, NAME, creator=mixpanel.user_id, created=made)


def seed_without_a_creation_time(mixpanel, now):
    return mixpanel.add_account(ORG_ID, NAME, creator=mixpanel.user_id, created=None)


def seed_another_name(mixpanel, now):
    return mixpanel.add_account(ORG_ID, f"{NAME}-2", creator=mixpanel.user_id)


@pytest.mark.parametrize(
    "seed",
    [seed_hand_made, seed_bot_made_an_hour_ago, seed_without_a_creation_time, seed_another_name],
    ids=["made-by-hand-just-now", "bot-made-before-the-window", "no-created-time", "another-name"],
)
def test_accounts_this_request_did_not_make_survive_an_ambiguous_create(bot, seed):
    bystander = seed(bot.mixpanel, clock.now())
    bot.mixpanel.script("create", create_then(500))  # the request's own account exists despite the error

    run_flow(bot, username=NAME)

    assert set(bot.mixpanel.accounts) == {bystander["id"]}, "only the request's own orphan may go"
    [orphan] = bot.mixpanel.deleted_accounts
    assert orphan != bystander["id"]
    assert only_request_state(bot) is RequestState.DELETED
    assert ("deleted", orphan) in events(bot)


# --- two people, one name ----------------------------------------------------------------------------


@pytest.fixture
def bob(slack):
    slack.add_user(BOB, tz="Europe/Berlin", name="bob")
    return BOB


def test_an_account_being_delivered_is_not_anothers_orphan(bot, bob):
    # Bob's token is on its way (Slack is slow to take it) when Alice's create fails ambiguously.
    bot.slack.fail_response_urls(status=404)
    bot.slack.delay("chat.postEphemeral", 2.0)
    submit(bot, bob)
    bot.slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.args.get("user") == BOB)
    bot.mixpanel.script("create", respond(500, {"status": "error", "error": "internal"}))

    submit(bot, ALICE)
    bot.wait_idle()

    [bobs] = bot.mixpanel.accounts
    assert bot.mixpanel.delete_calls() == []
    token = bot.mixpanel.tokens[bobs]
    assert any(token in json.dumps(c.args) for c in bot.slack.calls("chat.postEphemeral"))
    assert OrphanRecords(bot.store).known_account_ids([bobs], besides="") == {bobs}
    assert ("token_delivered", bobs) in events(bot)
    assert bot.mixpanel.list_calls(), "Alice's request must have looked"


def test_an_account_whose_create_is_still_answering_is_not_anothers_orphan(bot, bob):
    # Mixpanel has made Bob's account but not answered him yet, when Alice's create fails ambiguously.
    bot.mixpanel.script(
        "create", create_then(201, delay=3.0), respond(500, {"status": "error", "error": "x"})
    )
    submit(bot, bob)
    wait_until(lambda: len(bot.mixpanel.accounts) == 1)
    [bobs] = bot.mixpanel.accounts

    alices_url = submit(bot, ALICE)
    bot.wait_idle()

    bobs_create = bot.mixpanel.create_calls()[0]
    assert bobs_create.status == 201
    looked_meanwhile = [c for c in bot.mixpanel.list_calls() if c.at < bobs_create.at + 3.0]
    assert looked_meanwhile, "Alice's request must have looked while Bob's create was unanswered"
    assert set(bot.mixpanel.accounts) == {bobs} and bot.mixpanel.delete_calls() == []
    assert ("token_delivered", bobs) in events(bot)
    [alices_words] = [c.args.get("text", "") for c in bot.slack.response_url_posts(alices_url)]
    assert "did not confirm" in alices_words


# --- late creates and the sweeper --------------------------------------------------------------------


def test_a_create_mixpanel_finishes_after_the_last_look_is_found_by_the_sweeper(bots):
    bot = bots.start(mixpanel_read_timeout=0.5, mixpanel_reconcile_delays=[0.0])
    bot.mixpanel.script("create", hang(1.5))  # answers (and creates) long after the bot gave up

    run_flow(bot, username=NAME)
    said = said_to_requester(bot)
    assert len(said) == 1 and "safe to try again" in said[0]
    bot.mixpanel.wait_for(lambda c: c.route == "create" and c.status == 201)
    [late] = bot.mixpanel.accounts
    assert only_request_state(bot) is RequestState.UNCERTAIN, "never `failed` while an account may exist"

    assert bot.runtime.flow.sweep_stale(timedelta(0)) == 1

    assert bot.mixpanel.accounts == {} and list(bot.mixpanel.deleted_accounts) == [late]
    assert only_request_state(bot) is RequestState.DELETED
    assert ("deleted", late) in events(bot)


def test_an_uncertain_request_fails_only_after_the_recheck_period(bot):
    bot.mixpanel.script("create", respond(502, {"status": "error", "error": "bad gateway"}))
    run_flow(bot, username=NAME)
    flow = bot.runtime.flow
    looks = len(bot.mixpanel.list_calls())

    assert flow.sweep_stale(timedelta(0)) == 0
    assert only_request_state(bot) is RequestState.UNCERTAIN
    assert len(bot.mixpanel.list_calls()) == looks + 1  # it looked again

    flow.d.clock = lambda: datetime.now(UTC) + timedelta(hours=6, minutes=1)
    assert flow.sweep_stale(timedelta(0)) == 1
    assert only_request_state(bot) is RequestState.FAILED


# --- several orphans ---------------------------------------------------------------------------------


def test_each_orphan_has_its_own_outcome_and_an_undeletable_one_is_retried(bot):
    # Another bot-made account of this name, in this window, that no request knows: also an orphan.
    unknown = bot.mixpanel.add_account(ORG_ID, NAME, creator=bot.mixpanel.user_id)
    bot.mixpanel.script("create", create_then(500))
    bot.mixpanel.script("delete", respond(403, {"status": "error", "error": "no"}))  # the first delete

    run_flow(bot, username=NAME)

    [made] = (set(bot.mixpanel.accounts) | set(bot.mixpanel.deleted_accounts)) - {unknown["id"]}
    assert list(bot.mixpanel.accounts) == [unknown["id"]] and list(bot.mixpanel.deleted_accounts) == [made]
    # The later success does not hide the earlier failure.
    assert only_request_state(bot) is RequestState.DELETE_FAILED
    trail = events(bot)
    assert ("delete_failed", unknown["id"]) in trail and ("deleted", made) in trail

    assert bot.runtime.flow.sweep_stale(timedelta(0)) == 1

    assert bot.mixpanel.accounts == {}
    deleted_paths = [c.path.rstrip("/").rsplit("/", 1)[-1] for c in bot.mixpanel.delete_calls()]
    assert sorted(deleted_paths) == sorted([str(unknown["id"]), str(made), str(unknown["id"])])
    assert only_request_state(bot) is RequestState.DELETED
    assert ("deleted", unknown["id"]) in events(bot)


# --- the sweeper and a live job ----------------------------------------------------------------------


def test_the_sweeper_and_a_live_delivery_never_both_settle_a_request(bot):
    bot.slack.fail_response_urls(status=404)
    bot.slack.delay("chat.postEphemeral", 2.0)
    submit(bot, ALICE)
    bot.slack.wait_for(lambda c: c.method == "chat.postEphemeral")  # the token is on its way

    assert bot.runtime.flow.sweep_stale(timedelta(0)) == 1  # a sweeper that thinks the run died
    bot.wait_idle()

    assert bot.mixpanel.accounts == {}
    assert only_request_state(bot) is RequestState.DELETED
    trail = [name for name, _ in events(bot)]
    assert "token_delivered" not in trail and trail.count("deleted") == 1
    assert any("will not work" in words for words in told(bot)), "the person must hear the token is revoked"
    assert not any("nothing was created" in words for words in told(bot))


# --- the database fails after the token was delivered ------------------------------------------------


def fail_writes(store, statement_has: str, times: int, state: str = "delivered"):
    """Make the real SQLite engine fail the first `times` writes moving a request to `state`."""

    def fail(connection, cursor, statement, parameters, context, executemany):
        if statement_has in statement and f"'{state}'" in str(parameters) and fail.count < times:
            fail.count += 1
            raise OperationalError(statement, parameters, Exception("disk I/O error"))

    fail.count = 0
    event.listen(store.engine, "before_cursor_execute", fail)
    return fail


def test_a_brief_database_failure_after_delivery_is_retried(bot):
    bot.runtime.flow.d.write_retry_delays = (0.01, 0.01, 0.01)
    failing = fail_writes(bot.store, "UPDATE account_requests", times=2)

    run_flow(bot, username=NAME)

    assert failing.count == 2
    assert only_request_state(bot) is RequestState.DELIVERED
    [account] = bot.mixpanel.accounts
    assert said_to_requester(bot)[-1].startswith("Your Mixpanel service account")
    assert ("token_delivered", account) in events(bot)


def test_a_delivered_token_that_cannot_be_recorded_is_revoked_and_the_person_told(bot):
    bot.runtime.flow.d.write_retry_delays = (0.01, 0.01, 0.01)
    failing = fail_writes(bot.store, "UPDATE account_requests", times=100)

    run_flow(bot, username=NAME)

    said = said_to_requester(bot)
    assert said[0].startswith("Your Mixpanel service account")  # the token went out
    assert "no longer works" in said[-1] and not any("nothing was created" in s for s in said)
    assert bot.mixpanel.accounts == {}, "an unrecorded credential is revoked at once"
    assert only_request_state(bot) is RequestState.CREATED

    assert failing.count == 4  # the first try and three retries

    event.remove(bot.store.engine, "before_cursor_execute", failing)
    assert bot.runtime.flow.sweep_stale(timedelta(0)) == 1  # the database is back: the record is completed
    assert only_request_state(bot) is RequestState.DELETED


def test_an_account_that_cannot_be_recorded_before_delivery_is_deleted_and_never_delivered(bot):
    bot.runtime.flow.d.write_retry_delays = (0.01,)
    fail_writes(bot.store, "UPDATE account_requests", times=100, state="created")

    run_flow(bot, username=NAME)

    [token] = bot.mixpanel.created_tokens()
    assert token not in bot.slack.all_recorded_text(), "an unrecorded account's token must not go out"
    assert bot.mixpanel.accounts == {} and len(bot.mixpanel.deleted_accounts) == 1
    [said] = said_to_requester(bot)
    assert "nothing was created" in said


# --- shutdown ----------------------------------------------------------------------------------------


def test_creations_still_queued_at_shutdown_are_told_plainly(bots, bob):
    bot = bots.start(creation_workers=1)
    bot.mixpanel.script("create", hang(1.0))
    submit(bot, ALICE)
    bot.mixpanel.wait_for("create")
    bobs_url = submit(bot, bob)  # queued behind Alice's creation on the only worker
    wait_until(lambda: bot.runtime.jobs.in_flight() == 2)

    assert bot.runtime.close(grace=20)

    assert len(bot.mixpanel.create_calls()) == 1
    assert only_request_state(bot) is RequestState.DELIVERED  # Alice's; Bob's was never stored
    [told_bob] = [c.args.get("text", "") for c in bot.slack.response_url_posts(bobs_url)]
    assert "restarting" in told_bob and "nothing was created" in told_bob
