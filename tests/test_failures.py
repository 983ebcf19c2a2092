"""Every way Mixpanel and Slack can fail, through the wire: the requester gets one plain sentence,
nothing is created twice and nothing is left behind."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.db.schema import RequestState
from tests import clock
from tests.conftest import ALICE, GENERAL, dump_database, form_values
from tests.fakes.mixpanel import create_then, drop, error_200, hang, rate_limited, respond, respond_html


def run_flow(bot, **values):
    _, view, response_url = bot.open_form()
    ack = bot.submit(view, form_values(expires_on=clock.form_expiry(10), **values))
    assert ack.status == 200 and ack.elapsed < 3
    bot.wait_idle()
    return response_url


def said_to_requester(bot) -> list[str]:
    """Everything the requester was told privately (response_url and ephemeral messages)."""
    texts = [c.args.get("text", "") for c in bot.slack.calls("response_url")]
    texts += [
        c.args.get("text", "") for c in bot.slack.calls("chat.postEphemeral") if c.args.get("user") == ALICE
    ]
    return texts


def only_request_state(bot) -> RequestState:
    from sqlalchemy import text

    with bot.store.engine.connect() as connection:
        states = [row[0] for row in connection.execute(text("SELECT state FROM account_requests"))]
    assert len(states) == 1
    return RequestState(states[0])


def assert_plain_sentence(text: str) -> None:
    assert "Traceback" not in text and "Exception" not in text and "{" not in text
    assert text.count("\n") == 0


def assert_still_serving(bot) -> None:
    """After the failure, the same process completes a normal creation."""
    bot.mixpanel.clear_faults()
    before = len(bot.slack.calls("response_url"))
    run_flow(bot, username="after-failure")
    tokens = bot.mixpanel.created_tokens()
    last = bot.slack.calls("response_url")[before:]
    assert any(tokens[-1] in json.dumps(c.args) for c in last)


FINAL_FAILURES = [
    pytest.param(
        [respond(400, {"status": "error", "error": "Username already taken"})],
        "Username already taken",
        id="400-with-reason",
    ),
    pytest.param([respond(401, {"status": "error", "error": "bad credentials"})], "credentials", id="401"),
    pytest.param(
        [respond(403, {"status": "error", "error": "User does not have permissions"})],
        "not an organization admin",
        id="403",
    ),
    pytest.param([respond(404, {"status": "error", "error": "not found"})], "organization", id="404"),
    pytest.param([error_200("Project 3001 is archived")], "Project 3001 is archived", id="200-status-error"),
    pytest.param(
        [error_200({"code": 17, "message": "quota exceeded"})], "quota exceeded", id="200-error-object"
    ),
    pytest.param([rate_limited("0")] * 8, "limiting requests", id="429-persistent"),
]


@pytest.mark.parametrize(("faults", "phrase"), FINAL_FAILURES)
def test_final_mixpanel_failures_are_one_sentence_and_create_nothing(bot, faults, phrase):
    bot.mixpanel.script("create", *faults)

    run_flow(bot)

    said = said_to_requester(bot)
    assert len(said) == 1 and phrase in said[0]
    assert_plain_sentence(said[0])
    assert bot.mixpanel.accounts == {}
    assert bot.mixpanel.list_calls() == []  # nothing ambiguous: no reconciliation needed
    assert only_request_state(bot) is RequestState.FAILED
    final_view = json.dumps(bot.slack.calls("views.update")[-1].args)
    assert phrase in final_view
    assert_still_serving(bot)


def test_429_is_retried_after_retry_after_and_then_succeeds(bot):
    bot.mixpanel.script("create", rate_limited("1"))

    run_flow(bot)

    creates = bot.mixpanel.create_calls()
    assert [c.status for c in creates] == [429, 201]
    assert creates[1].at - creates[0].at >= 1.0  # Retry-After honoured
    assert only_request_state(bot) is RequestState.DELIVERED


def test_429_with_an_http_date_is_honoured(bot):
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    bot.mixpanel.script("create", rate_limited(when))
    run_flow(bot)
    creates = bot.mixpanel.create_calls()
    assert [c.status for c in creates] == [429, 201]
    assert creates[1].at - creates[0].at >= 0.5


AMBIGUOUS_FAILURES = [
    pytest.param([respond(500, {"status": "error", "error": "internal"})], "internal error", id="500"),
    pytest.param(
        [respond_html(502, "<html><body>Bad gateway</body></html>")], "internal error", id="502-html"
    ),
    pytest.param([respond_html(200, "<html>not json</html>")], "could not read", id="200-not-json"),
    pytest.param([drop()], "could not reach", id="dropped-connection"),
]


@pytest.mark.parametrize(("faults", "phrase"), AMBIGUOUS_FAILURES)
def test_ambiguous_failures_are_reconciled_not_retried(bot, faults, phrase):
    bot.mixpanel.script("create", *faults)

    run_flow(bot)

    assert len(bot.mixpanel.create_calls()) == 1  # never retried blindly
    assert bot.mixpanel.list_calls(), "the bot must ask Mixpanel what really happened"
    said = said_to_requester(bot)
    assert len(said) == 1 and phrase in said[0] and "safe to try again" in said[0]
    assert_plain_sentence(said[0])
    assert bot.mixpanel.accounts == {}
    # Mixpanel may still finish the create: the sweeper looks again before calling it failed.
    assert only_request_state(bot) is RequestState.UNCERTAIN
    assert_still_serving(bot)


@pytest.mark.parametrize("after", [500, "drop"])
def test_a_create_that_succeeded_behind_an_error_is_found_and_deleted(bot, after):
    bot.mixpanel.script("create", create_then(after))

    run_flow(bot)

    assert len(bot.mixpanel.create_calls()) == 1
    assert bot.mixpanel.accounts == {}, "the orphan must be deleted"
    assert len(bot.mixpanel.deleted_accounts) == 1
    [orphan_id] = bot.mixpanel.deleted_accounts
    assert [c.path.rsplit("/", 1)[-1] for c in bot.mixpanel.delete_calls()] == [str(orphan_id)]
    assert only_request_state(bot) is RequestState.DELETED
    token = bot.mixpanel.created_tokens()[0]
    assert token not in bot.slack.all_recorded_text()
    assert token not in dump_database(bot.store)
    said = said_to_requester(bot)
    assert len(said) == 1 and "safe to try again" in said[0]


def test_a_hang_past_the_read_timeout_is_reconciled_even_when_mixpanel_finishes_late(bots):
    bot = bots.start(mixpanel_read_timeout=0.5, mixpanel_reconcile_delays=[0.0, 1.5])
    bot.mixpanel.script("create", hang(1.0))

    run_flow(bot)

    assert len(bot.mixpanel.create_calls()) == 1
    said = said_to_requester(bot)
    assert len(said) == 1 and "did not answer in time" in said[0]
    assert bot.mixpanel.accounts == {}, "the account Mixpanel made after we gave up must be deleted"
    assert len(bot.mixpanel.list_calls()) >= 2


def test_mixpanel_unreachable(bot):
    # Projects were loaded while Mixpanel was up; then it went away (nothing listens on port 9).
    bot.runtime.mixpanel.base_url = "http://127.0.0.1:9/api/app"

    run_flow(bot)

    said = said_to_requester(bot)
    assert len(said) == 1 and "could not reach Mixpanel" in said[0]
    assert only_request_state(bot) is RequestState.FAILED


# --- Slack delivery --------------------------------------------------------------------------------


def delivered_token_calls(bot) -> list:
    """Calls that carried the token and that Slack accepted; every attempt must be private to Alice."""
    token = bot.mixpanel.created_tokens()[-1]
    carrying = [c for c in bot.slack.calls() if token in json.dumps(c.args)]
    for call in carrying:
        private = call.method == "response_url" or (
            call.method == "chat.postEphemeral" and call.args["user"] == ALICE
        )
        assert private, call

    def accepted(call) -> bool:
        if call.method == "response_url":
            return call.status == 200
        return isinstance(call.response, dict) and call.response.get("ok") is True

    return [c for c in carrying if accepted(c)]


def test_delivery_falls_back_to_an_ephemeral_message_in_the_channel(bot):
    bot.slack.fail_response_urls(status=404)

    run_flow(bot)

    [call] = delivered_token_calls(bot)
    assert call.method == "chat.postEphemeral"
    assert call.args["channel"] == GENERAL and call.args["user"] == ALICE
    assert only_request_state(bot) is RequestState.DELIVERED


def test_delivery_falls_back_to_the_dm_with_the_app(bot):
    bot.slack.fail_response_urls(status=404)
    bot.slack.fail(
        "chat.postEphemeral", error="user_not_in_channel", when=lambda a: a.get("channel") == GENERAL
    )

    run_flow(bot)

    [call] = delivered_token_calls(bot)
    assert call.method == "chat.postEphemeral" and call.args["channel"].startswith("D")
    assert call.args["user"] == ALICE
    assert bot.slack.calls("conversations.open")[0].args["users"] == ALICE
    assert bot.slack.calls("chat.postMessage") == []  # never a persistent DM
    assert only_request_state(bot) is RequestState.DELIVERED


def test_when_every_path_fails_the_account_is_deleted(bot):
    bot.slack.fail_response_urls(status=404)
    bot.slack.fail("chat.postEphemeral", error="user_not_in_channel")

    run_flow(bot)

    assert bot.mixpanel.accounts == {}
    assert len(bot.mixpanel.deleted_accounts) == 1
    assert only_request_state(bot) is RequestState.DELETED
    assert delivered_token_calls(bot) == []  # attempts were private to Alice; none got through
    final_view = json.dumps(bot.slack.calls("views.update")[-1].args)
    assert "deleted the account" in final_view


def test_a_failed_delete_is_retried_and_then_recorded_loudly(bot, caplog):
    bot.slack.fail_response_urls(status=404)
    bot.slack.fail("chat.postEphemeral", error="user_not_in_channel")
    bot.mixpanel.script("delete", *[respond(500, {"status": "error", "error": "x"})] * 10)

    run_flow(bot)

    assert len(bot.mixpanel.delete_calls()) >= 2
    assert only_request_state(bot) is RequestState.DELETE_FAILED
    [account_id] = bot.mixpanel.accounts
    loud = [r for r in caplog.records if r.levelname == "ERROR" and str(account_id) in r.getMessage()]
    assert loud, "an undeletable orphan must be logged at ERROR with its id"
    token = bot.mixpanel.created_tokens()[0]
    assert all(token not in r.getMessage() for r in caplog.records)


def test_the_date_today_is_used_in_the_requesters_zone():
    from bot.models import end_of_day_utc

    moment = end_of_day_utc(date(2027, 7, 1), "America/Los_Angeles")
    assert moment.isoformat() == "2027-07-02T06:59:59+00:00"


def test_when_mixpanel_cannot_even_be_asked_the_request_stays_open_for_the_sweeper(bot):
    bot.mixpanel.script("create", create_then(500))
    bot.mixpanel.script("list", *[respond(503, {"status": "error", "error": "down"})] * 40)

    run_flow(bot)

    said = said_to_requester(bot)
    assert len(said) == 1 and "did not confirm" in said[0] and "safely try again" in said[0]
    assert only_request_state(bot) is RequestState.UNCERTAIN
    assert len(bot.mixpanel.accounts) == 1  # still there: nobody could look

    bot.mixpanel.clear_faults()
    assert bot.runtime.flow.sweep_stale(timedelta(0)) == 1
    assert bot.mixpanel.accounts == {}
    assert only_request_state(bot) is RequestState.DELETED


def test_shutdown_does_not_wait_for_a_pending_reconciliation(bots):
    bot = bots.start(mixpanel_reconcile_delays=[0.0, 300.0])
    bot.mixpanel.script("create", respond(500, {"status": "error", "error": "internal"}))
    _, view, _ = bot.open_form()
    bot.submit(view, form_values(expires_on=clock.form_expiry(10)))
    bot.slack.wait_for(lambda c: c.method == "response_url" and "safe to try again" in c.args.get("text", ""))

    finished = bot.runtime.close(grace=10)

    assert finished, "the 300 s wait before the next look must end when shutdown begins"
    assert only_request_state(bot) is RequestState.UNCERTAIN  # left for the sweeper of the next run
