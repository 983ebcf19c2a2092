"""Generated requests, signed and unsigned, at the real HTTP endpoint: never a 5xx, never a traceback."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.create import views
from tests.conftest import ALICE

CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded; charset=utf-8",
    "",
]
# Payload types and ids this app listens for, and some it does not.
TYPES = ["view_submission", "view_closed", "block_actions", "block_suggestion", "shortcut", "event_callback"]
IDS = [views.CREATE_CALLBACK_ID, views.ACTION_PROJECTS, views.LOADING_CALLBACK_ID, "unknown_callback"]

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from([*IDS, ALICE])
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
# Objects shaped like Slack's, with any field missing, of the wrong type or unexpected.
slack_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(TYPES) | st.text(max_size=10),
        "user": st.fixed_dictionaries({}, optional={"id": scalars}) | values,
        "team": st.fixed_dictionaries({}, optional={"id": scalars}) | values,
        "view": st.fixed_dictionaries(
            {},
            optional={
                "type": st.just("modal") | scalars,
                "callback_id": st.sampled_from(IDS) | scalars,
                "private_metadata": scalars,
                "state": st.fixed_dictionaries({"values": values}) | values,
                "id": scalars,
            },
        )
        | values,
        "actions": st.lists(st.fixed_dictionaries({"action_id": st.sampled_from(IDS) | scalars}), max_size=2)
        | values,
        "action_id": st.sampled_from(IDS) | scalars,
        "value": scalars,
        "callback_id": st.sampled_from(IDS) | scalars,
    },
)
command_fields = st.fixed_dictionaries(
    {"command": st.just("/mp-service-account") | st.text(max_size=10)},
    optional={
        "user_id": st.just(ALICE) | st.text(max_size=10),
        "text": st.text(max_size=30),
        "trigger_id": st.text(max_size=10),
        "channel_id": st.text(max_size=10),
        "response_url": st.just("https://hooks.slack.com/commands/T1/1/x") | st.text(max_size=20),
    },
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    values.map(lambda value: json.dumps(value).encode()),
    slack_like.map(lambda payload: json.dumps(payload).encode()),
    slack_like.map(lambda payload: urlencode({"payload": json.dumps(payload)}).encode()),
    values.map(lambda value: urlencode({"payload": json.dumps(value)}).encode()),
    command_fields.map(lambda fields: urlencode(fields).encode()),
    st.text(max_size=50).map(lambda text: ("payload=" + text).encode()),
)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES), signed=st.booleans())
def test_no_request_gets_a_5xx_or_a_traceback(bot, captured, body, content_type, signed):
    result = bot.sender.send_raw(body, content_type, sign=signed)

    assert result.status < 500, (result.status, body)
    if not signed:
        assert result.status == 401
    assert "Traceback" not in captured.text
    for record in captured.records:
        assert "\n" not in record.getMessage()
