"""Requests Slack did not sign are refused before any listener runs."""

from __future__ import annotations

import time

import pytest

from tests.conftest import ALICE


# Built while the test runs: a timestamp taken at collection would be judged against a later clock.
@pytest.mark.parametrize(
    "make_options",
    [
        pytest.param(lambda: {"sign": False}, id="unsigned"),
        pytest.param(lambda: {"secret": "not-the-signing-secret"}, id="wrong-secret"),
        pytest.param(lambda: {"timestamp": int(time.time()) - 10 * 60}, id="stale-timestamp"),
    ],
)
def test_forged_requests_get_401_and_run_no_handler(bot, make_options):
    options = make_options()
    response_url = bot.slack.new_response_url()

    command = bot.sender.slash_command(ALICE, response_url=response_url, **options)
    help_command = bot.sender.slash_command(ALICE, text="help", response_url=response_url, **options)

    assert command.status == 401 and help_command.status == 401
    assert "help" not in help_command.text.lower()
    for method in ("views.open", "users.info", "response_url", "chat.postEphemeral"):
        assert bot.slack.calls(method) == [], method
    assert bot.mixpanel.create_calls() == []


def test_a_forged_view_submission_creates_nothing(bot):
    from tests.conftest import form_values

    _, view, _ = bot.open_form()
    result = bot.sender.view_submission(view, user_id=ALICE, values=form_values(), secret="forged")
    assert result.status == 401
    assert bot.mixpanel.create_calls() == []
