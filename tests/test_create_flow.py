"""The core flow through the wire: signed Slack requests in, calls to fake Slack and Mixpanel out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.models.views import View

from bot.create import views
from bot.create.messages import HELP_TEXT
from tests import clock
from tests.conftest import ALICE, GENERAL, MP_SECRET, MP_USERNAME, ORG_ID, dump_database, form_values


def block(view: dict, block_id: str) -> dict:
    matches = [b for b in view["blocks"] if b.get("block_id") == block_id]
    assert matches, f"no block {block_id!r} in {[b.get('block_id') for b in view['blocks']]}"
    return matches[0]


def test_modal_offers_only_what_the_default_policy_allows(bot):
    result, view, _ = bot.open_form()

    assert result.status == 200
    assert result.elapsed < 3
    assert View(**view).to_dict()["blocks"] == view["blocks"]  # Slack's own model accepts it unchanged
    assert len(view["title"]["text"]) <= 24
    roles = [o["value"] for o in block(view, views.BLOCK_ROLE)["element"]["options"]]
    assert roles == ["consumer", "analyst"]
    projects = block(view, views.BLOCK_PROJECTS)["element"]
    assert projects["type"] == "multi_static_select"
    names = [o["text"]["text"] for o in projects["options"]]
    org_projects = [p for p in bot.mixpanel.projects.values() if p["organization_id"] == ORG_ID]
    expected = sorted(org_projects, key=lambda p: p["name"].casefold())
    assert [o["value"] for o in projects["options"]] == [str(p["id"]) for p in expected]
    assert all(str(p["id"]) in name for p, name in zip(expected, names, strict=True))
    assert views.BLOCK_NEVER not in [b.get("block_id") for b in view["blocks"]]
    metadata = json.loads(view["private_metadata"])
    assert metadata["u"] == ALICE and metadata["c"] == GENERAL and metadata["r"].startswith("http")


def test_help_answers_with_usage_and_opens_nothing(bot):
    result = bot.sender.slash_command(ALICE, text="help", response_url=bot.slack.new_response_url())

    assert result.status == 200
    assert result.json()["text"] == HELP_TEXT
    assert result.json()["response_type"] == "ephemeral"
    assert bot.slack.calls("views.open") == []


def test_happy_path_creates_one_account_and_hands_the_token_to_the_requester_alone(bot, debug_logs):
    _, view, response_url = bot.open_form()
    expiry = clock.days_from_now(30, clock.ALICE_TZ)

    ack = bot.submit(view, form_values(projects=[3002, 3001], expires_on=expiry.isoformat()))

    assert ack.status == 200 and ack.elapsed < 3
    assert ack.json()["response_action"] == "update"
    assert "Creating" in json.dumps(ack.json()["view"])
    delivered = bot.slack.wait_for("response_url")[0]
    bot.wait_idle()

    creates = bot.mixpanel.create_calls()
    assert len(creates) == 1
    assert creates[0].path == f"/api/app/organizations/{ORG_ID}/service-accounts"
    end_of_day = datetime.combine(expiry, time(23, 59, 59), tzinfo=ZoneInfo(clock.ALICE_TZ)).astimezone(UTC)
    assert creates[0].json == {
        "username": "etl-nightly",
        "role": "analyst",
        "expires": clock.iso_z(end_of_day),
        "projects": [{"id": 3001, "role": "analyst"}, {"id": 3002, "role": "analyst"}],
    }
    assert bot.mixpanel.schema_violations == []

    [account] = bot.mixpanel.accounts.values()
    token = bot.mixpanel.tokens[account["id"]]
    assert delivered.args["_url"] == response_url
    assert delivered.args["response_type"] == "ephemeral"
    message = json.dumps(delivered.args)
    assert token in message and account["username"] in message
    assert "analyst" in message and "only this once" in message
    assert f"curl --user '{account['username']}:{token}' 'https://mixpanel.com/api/app/me'" in message
    assert "Backend Events (3002)" in message and end_of_day.strftime("%Y-%m-%d") in message
    assert token not in delivered.args["text"]  # notification previews do not show it

    # The token is in that one message and nowhere else.
    others = [c for c in bot.slack.calls() if c is not delivered]
    assert all(token not in json.dumps(c.args) for c in others)
    assert token not in dump_database(bot.store)
    assert all(token not in record.getMessage() for record in debug_logs.records)
    assert MP_SECRET not in debug_logs.text and "xoxb-test-token" not in debug_logs.text
    assert debug_logs.records, "DEBUG logging produced nothing: the leak check would be vacuous"

    # The modal ends by pointing at the message, without the secret.
    final = bot.slack.calls("views.update")[-1]
    assert account["username"] in json.dumps(final.args) and token not in json.dumps(final.args)


def test_mixpanel_sees_the_bots_basic_auth(bot):
    _, view, _ = bot.open_form()
    bot.submit(view, form_values(expires_on=clock.form_expiry(3)))
    bot.wait_idle()
    [create] = bot.mixpanel.create_calls()
    assert create.status == 201
    assert bot.mixpanel.accounts  # the fake checked Basic auth against MP_USERNAME/MP_SECRET
    assert MP_USERNAME not in json.dumps(bot.slack.all_recorded_text())


@pytest.mark.parametrize(
    ("values", "block_id"),
    [
        (form_values(username="   "), views.BLOCK_USERNAME),
        (form_values(username="a" * 65), views.BLOCK_USERNAME),
        (form_values(username="bad name"), views.BLOCK_USERNAME),
        (form_values(username="line\nbreak"), views.BLOCK_USERNAME),
        (form_values(username="tab\there"), views.BLOCK_USERNAME),
        (form_values(username="-leading-dash"), views.BLOCK_USERNAME),
        (form_values(username="naïve"), views.BLOCK_USERNAME),
        # Could pass for another request's account (`etl` made `etl.1a2b3c.mp-service-account`) in clean-up.
        (form_values(username="etl.1a2b3c.mp-service-account"), views.BLOCK_USERNAME),
        (form_values(username="etl.MP-Service-Account"), views.BLOCK_USERNAME),
        (form_values(projects=[]), views.BLOCK_PROJECTS),
        (form_values(expires_on=None), views.BLOCK_EXPIRY),
    ],
)
def test_invalid_input_is_answered_inline_and_never_reaches_mixpanel(bot, values, block_id):
    _, view, _ = bot.open_form()
    if block_id != views.BLOCK_EXPIRY:
        values.setdefault(views.BLOCK_EXPIRY, clock.form_expiry(5))

    ack = bot.submit(view, values)

    assert ack.status == 200
    body = ack.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {block_id}
    assert bot.mixpanel.create_calls() == []
    assert bot.runtime.jobs.in_flight() == 0


@pytest.mark.parametrize(
    ("days", "message_part"),
    [(0, "future"), (-3, "future"), (366, "365 days")],
)
def test_expiry_outside_the_allowed_window_is_refused_inline(bot, days, message_part):
    _, view, _ = bot.open_form()
    ack = bot.submit(view, form_values(expires_on=clock.form_expiry(days)))
    assert ack.json()["response_action"] == "errors"
    assert message_part in ack.json()["errors"][views.BLOCK_EXPIRY]
    assert bot.mixpanel.create_calls() == []


def test_cold_cache_opens_a_loading_view_first_then_fills_it(bots):
    bot = bots.start(warm_cache=False)
    bot.mixpanel.latency = {"me": 1.0}

    result, view, _ = bot.open_form()

    assert result.elapsed < 1.0  # the command did not wait for Mixpanel
    opened = bot.slack.calls("views.open")[0]
    assert opened.args["view"]["callback_id"] == views.LOADING_CALLBACK_ID
    assert opened.at < bot.mixpanel.me_calls()[0].at + 1.0
    assert view["callback_id"] == views.CREATE_CALLBACK_ID
    assert views.BLOCK_PROJECTS in [b.get("block_id") for b in view["blocks"]]


def test_modal_still_opens_when_mixpanel_is_down_and_says_so(bots):
    bot = bots.start(warm_cache=False, mixpanel_api_url="http://127.0.0.1:9/api/app")

    result, view, _ = bot.open_form()

    assert result.status == 200
    text = json.dumps(view)
    assert "could not load" in text
    assert views.BLOCK_PROJECTS not in [b.get("block_id") for b in view["blocks"]]
    assert "submit" not in view


def test_more_than_100_projects_use_an_external_select_with_search(slack, tmp_path):
    from tests.conftest import BotFactory
    from tests.fakes.mixpanel import FakeMixpanel

    projects = [{"id": 5000 + i, "name": f"Project {i:03d}", "organization_id": ORG_ID} for i in range(130)]
    with FakeMixpanel(
        username=MP_USERNAME, secret=MP_SECRET, organizations={ORG_ID: "Acme"}, projects=projects
    ) as mixpanel:
        factory = BotFactory(slack=slack, mixpanel=mixpanel, tmp_path=tmp_path)
        bot = factory.start()
        try:
            _, view, _ = bot.open_form()
            element = block(view, views.BLOCK_PROJECTS)["element"]
            assert element["type"] == "multi_external_select"
            found = bot.sender.block_suggestion(
                view,
                user_id=ALICE,
                block_id=views.BLOCK_PROJECTS,
                action_id=views.ACTION_PROJECTS,
                value="project 12",
            )
            values = [o["value"] for o in found.json()["options"]]
            assert values == [str(p["id"]) for p in projects if "project 12" in p["name"].lower()]
            everything = bot.sender.block_suggestion(
                view, user_id=ALICE, block_id=views.BLOCK_PROJECTS, action_id=views.ACTION_PROJECTS, value=""
            )
            assert len(everything.json()["options"]) == 100
        finally:
            bot.stop()


def test_mixpanel_text_cannot_inject_slack_markup():
    from bot.create.messages import audit_message, mixpanel_failure_text
    from bot.mixpanel.client import ErrorKind, MixpanelError
    from bot.models import Project

    sentence = mixpanel_failure_text(
        MixpanelError(ErrorKind.BAD_REQUEST, reason="bad <!channel> & <@U1>"), contact="#help"
    )
    assert "<!channel>" not in sentence and "&lt;!channel&gt; &amp; &lt;@U1&gt;" in sentence
    message = audit_message(
        event="created",
        requester_id="U1",
        username="x",
        project_ids=(1,),
        projects={1: Project(1, "<!here> team", 7)},
    )
    assert "<!here>" not in message["blocks"][0]["text"]["text"]
