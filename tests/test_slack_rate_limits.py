"""Issue 9, part 3, through the wire: Slack answering HTTP 429 with Retry-After slows the bot down; it never
refuses a person, fails a delivery path or deletes an account for it (within the call's budget)."""

from __future__ import annotations

import json

import pytest
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryState

from bot.create import messages, views
from bot.policy.access import RefusalReason
from bot.policy.file import PersonSelector, Policy
from bot.slack.retry import TRIGGER_WINDOW_RETRY_BUDGET, BudgetedRateLimitRetryHandler, retry_budget
from tests import clock
from tests.conftest import ALICE, GENERAL, GUEST, form_values


def statuses(calls) -> list[int | None]:
    return [call.status for call in calls]


def the_token_reached_alice_privately(bot) -> str:
    """How the one token got to Alice: 'response_url' or 'chat.postEphemeral'."""
    [token] = bot.mixpanel.created_tokens()
    accepted = [
        call
        for call in bot.slack.calls()
        if token in json.dumps(call.args)
        and (
            call.status == 200
            if call.method == "response_url"
            else isinstance(call.response, dict) and call.response.get("ok") is True
        )
    ]
    assert len(accepted) == 1, accepted
    [call] = accepted
    assert call.method == "response_url" or (
        call.method == "chat.postEphemeral" and call.args["user"] == ALICE
    )
    return call.method


def create_and_deliver(bot) -> None:
    _, view, _ = bot.open_form()
    ack = bot.submit(view, form_values(expires_on=clock.form_expiry(10)))
    assert ack.status == 200
    bot.wait_idle(60)


def assert_delivered_and_nothing_deleted(bot) -> None:
    assert bot.mixpanel.delete_calls() == []
    assert len(bot.mixpanel.accounts) == 1
    events = [row["event"] for row in bot.store.audit_trail()]
    assert "token_delivered" in events and "delivery_failed" not in events


def test_a_rate_limited_users_info_still_gets_the_person_the_form(bot):
    bot.slack.set_http_status("users.info", 429, times=1, retry_after="1")

    result, view, _ = bot.open_form()

    assert result.status == 200
    assert statuses(bot.slack.calls("users.info")) == [429, 200]
    assert view["callback_id"] == views.CREATE_CALLBACK_ID
    assert [row for row in bot.store.audit_trail() if row["event"] == "refused"] == []
    assert bot.slack.response_url_posts() == []  # no refusal, no other sentence


def test_a_two_second_retry_after_on_users_info_still_gives_the_form(bot):
    # 2 s plus slack_sdk's jitter overruns the trigger's 3 s: the modal opens first, the lookup waits after.
    bot.slack.set_http_status("users.info", 429, times=1, retry_after="2")

    _, view, _ = bot.open_form()

    assert view["callback_id"] == views.CREATE_CALLBACK_ID
    assert statuses(bot.slack.calls("users.info")) == [429, 200]
    assert [c.args["view"]["callback_id"] for c in bot.slack.calls("views.open")] == [
        views.LOADING_CALLBACK_ID
    ]
    assert [row for row in bot.store.audit_trail() if row["event"] == "refused"] == []
    assert bot.slack.response_url_posts() == []


def test_a_users_info_rate_limited_past_every_budget_still_fails_closed(bot):
    bot.slack.set_http_status("users.info", 429, times=2, retry_after="60")
    response_url = bot.slack.new_response_url()

    result = bot.sender.slash_command(ALICE, channel_id=GENERAL, response_url=response_url)

    assert result.status == 200
    [told] = bot.slack.wait_for(lambda call: call.method == "response_url" and call.status == 200)
    assert "could not verify your Slack membership" in told.args["text"]
    assert statuses(bot.slack.calls("users.info")) == [429, 429]
    [shown] = bot.slack.wait_for("views.update")
    assert shown.args["view"]["callback_id"] != views.CREATE_CALLBACK_ID
    assert "could not verify your Slack membership" in json.dumps(shown.args["view"])
    assert [row["detail"] for row in bot.store.audit_trail() if row["event"] == "refused"] == ["unverified"]


def test_a_rate_limited_views_open_still_opens_the_form(bot):
    bot.slack.set_http_status("views.open", 429, times=1, retry_after="1")

    result = bot.sender.slash_command(ALICE, channel_id=GENERAL, response_url=bot.slack.new_response_url())

    assert result.status == 200
    opened = bot.slack.wait_for(lambda call: call.method == "views.open" and call.status == 200)
    assert statuses(bot.slack.calls("views.open")) == [429, 200]
    assert opened[0].response["view"]["callback_id"] == views.CREATE_CALLBACK_ID
    assert bot.slack.response_url_posts() == []


def test_a_long_retry_after_on_views_open_is_not_waited_for_and_the_person_is_told(bot):
    bot.slack.set_http_status("views.open", 429, times=1, retry_after="30")
    response_url = bot.slack.new_response_url()

    result = bot.sender.slash_command(ALICE, channel_id=GENERAL, response_url=response_url)

    assert result.status == 200  # the ack came first
    [told] = bot.slack.wait_for(lambda call: call.method == "response_url" and call.status == 200)
    assert told.args["_url"] == response_url
    assert told.args["text"] == messages.FORM_NOT_OPENED
    assert told.args["response_type"] == "ephemeral"
    assert statuses(bot.slack.calls("views.open")) == [429]  # a 30 s wait would outlive the trigger id


def test_a_rate_limited_response_url_still_tells_a_refused_person_why(bot):
    response_url = bot.slack.new_response_url()
    bot.slack.fail_response_urls(status=429, body="rate_limited", times=1, retry_after="1")

    result = bot.sender.slash_command(GUEST, channel_id=GENERAL, response_url=response_url)

    assert result.status == 200
    [told] = bot.slack.wait_for(lambda call: call.method == "response_url" and call.status == 200)
    assert statuses(bot.slack.response_url_posts(response_url)) == [429, 200]
    assert told.args["text"] == messages.refusal_text(
        RefusalReason.NOT_A_MEMBER,
        contact=bot.runtime.policy.contact,
        quota=bot.runtime.policy.rate_limit.per_user_per_day,
    )
    assert bot.slack.calls("chat.postEphemeral") == []


def test_a_rate_limited_ephemeral_message_still_delivers_the_token(bot):
    bot.slack.fail_response_urls(status=404)
    bot.slack.set_http_status("chat.postEphemeral", 429, times=1, retry_after="1")

    create_and_deliver(bot)

    assert the_token_reached_alice_privately(bot) == "chat.postEphemeral"
    in_channel = [c for c in bot.slack.calls("chat.postEphemeral") if c.args["channel"] == GENERAL]
    assert statuses(in_channel) == [429, 200]
    assert bot.slack.calls("conversations.open") == []  # the channel path did not count as failed
    assert_delivered_and_nothing_deleted(bot)


def test_a_rate_limited_response_url_still_delivers_the_token(bot):
    _, view, response_url = bot.open_form()
    bot.slack.fail_response_urls(status=429, body="rate_limited", times=1, retry_after="1")

    bot.submit(view, form_values(expires_on=clock.form_expiry(10)))
    bot.wait_idle(60)

    assert the_token_reached_alice_privately(bot) == "response_url"
    assert statuses(bot.slack.response_url_posts(response_url)) == [429, 200]
    assert bot.slack.calls("chat.postEphemeral") == []
    assert_delivered_and_nothing_deleted(bot)


# --- the budget, as a decision over Slack's answer -----------------------------------------------------


def rate_limited(retry_after: str | None) -> HttpResponse:
    headers = {"Retry-After": [retry_after]} if retry_after is not None else {}
    return HttpResponse(status_code=429, headers=headers)


REQUEST = HttpRequest(method="POST", url="https://slack.com/api/users.info", headers={})


@pytest.mark.parametrize(
    ("budget", "retry_after", "waited", "retries"),
    [
        (TRIGGER_WINDOW_RETRY_BUDGET, "1", 0.0, True),  # 1 s plus slack_sdk's jitter fits the window
        (TRIGGER_WINDOW_RETRY_BUDGET, "2", 0.0, False),
        (TRIGGER_WINDOW_RETRY_BUDGET, "1", 1.0, False),  # what this call already waited counts
        (TRIGGER_WINDOW_RETRY_BUDGET, "0", 0.0, True),
        (30.0, "1", 0.0, True),
        (30.0, "20", 0.0, True),
        (30.0, "20", 15.0, False),
        (30.0, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0, False),  # slack_sdk cannot sleep on a date
        (30.0, None, 0.0, True),
    ],
)
def test_a_429_is_retried_only_within_the_budget(budget, retry_after, waited, retries):
    state = RetryState(custom_values={"waited": waited})
    handler = BudgetedRateLimitRetryHandler(budget)

    assert handler.can_retry(state=state, request=REQUEST, response=rate_limited(retry_after)) is retries


def test_other_statuses_are_not_this_handlers_business():
    handler = BudgetedRateLimitRetryHandler(30.0)
    response = HttpResponse(status_code=500, headers={"Retry-After": ["1"]})

    assert handler.can_retry(state=RetryState(), request=REQUEST, response=response) is False


def test_a_shared_budget_bounds_every_call_inside_it():
    handler = BudgetedRateLimitRetryHandler(30.0)

    with retry_budget(1.5):
        inside = handler.can_retry(state=RetryState(), request=REQUEST, response=rate_limited("1"))
    after = handler.can_retry(state=RetryState(), request=REQUEST, response=rate_limited("1"))

    assert (inside, after) == (False, True)


def test_the_lookups_before_a_submissions_ack_share_one_trigger_window_budget(bots, slack):
    slack.set_usergroup("SDATA", [])
    slack.set_usergroup("SOPS", [ALICE])
    bot = bots.start(
        policy=Policy(requesters=PersonSelector(usergroups=["SDATA", "SOPS"])), slack_cache_seconds=0
    )
    _, view, _ = bot.open_form()
    slack.reset()
    slack.set_http_status("users.info", 429, times=1, retry_after="1")
    slack.set_http_status("usergroups.users.list", 429, times=2, retry_after="1")

    ack = bot.submit(view, form_values(expires_on=clock.form_expiry(10), username="etl-x"))

    assert ack.status == 200
    assert statuses(slack.calls("users.info")) == [429, 200]
    # The first wait (1 s plus up to 1 s of jitter) left too little of the 2.5 s for a second one.
    assert statuses(slack.calls("usergroups.users.list")) == [429]
    assert TRIGGER_WINDOW_RETRY_BUDGET < 2 * 2
