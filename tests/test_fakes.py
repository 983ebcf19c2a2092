"""The test doubles themselves behave like Slack and Mixpanel, so other tests can trust them."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError

from tests import clock
from tests.fakes import mixpanel as mp
from tests.fakes.slack_api import FakeSlack
from tests.fakes.socket_mode import FakeSocketModeServer
from tests.slack_requests import SlackSender, build_payload_slash_command, build_payload_view_submission

SIGNING_SECRET = "test-signing-secret"

MODAL: dict[str, Any] = {
    "type": "modal",
    "callback_id": "create_sa",
    "private_metadata": '{"channel_id": "C0GENERAL"}',
    "title": {"type": "plain_text", "text": "Service account"},
    "submit": {"type": "plain_text", "text": "Create"},
    "blocks": [
        {
            "type": "input",
            "block_id": "name",
            "label": {"type": "plain_text", "text": "Name"},
            "element": {"type": "plain_text_input", "action_id": "name_input"},
        },
        {
            "type": "input",
            "block_id": "role",
            "label": {"type": "plain_text", "text": "Role"},
            "element": {
                "type": "static_select",
                "action_id": "role_select",
                "options": [
                    {"text": {"type": "plain_text", "text": "Analyst"}, "value": "analyst"},
                    {"text": {"type": "plain_text", "text": "Admin"}, "value": "admin"},
                ],
            },
        },
        {
            "type": "input",
            "block_id": "projects",
            "label": {"type": "plain_text", "text": "Projects"},
            "element": {"type": "multi_external_select", "action_id": "projects_select"},
        },
        {
            "type": "input",
            "block_id": "expires",
            "optional": True,
            "label": {"type": "plain_text", "text": "Expires"},
            "element": {"type": "datepicker", "action_id": "expires_date"},
        },
    ],
}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(users=["U1"]) as fake:
        yield fake
    assert fake.internal_errors == []


@pytest.fixture
def mixpanel() -> Iterator[mp.FakeMixpanel]:
    with mp.FakeMixpanel() as fake:
        yield fake
    assert fake.internal_errors == []


def _mp(
    fake: mp.FakeMixpanel, method: str, path: str, *, timeout: float = 5, **kwargs: Any
) -> requests.Response:
    kwargs.setdefault("auth", (fake.username, fake.secret))
    return requests.request(method, fake.base_url + path, timeout=timeout, **kwargs)


# ---------------------------------------------------------------------- Mixpanel


def test_mixpanel_basic_auth_is_enforced(mixpanel: mp.FakeMixpanel) -> None:
    assert _mp(mixpanel, "GET", "/me", auth=(mixpanel.username, "wrong")).status_code == 401
    assert _mp(mixpanel, "GET", "/me", auth=None).json()["status"] == "error"
    me = _mp(mixpanel, "GET", "/me", params={"include_workspace_users": "false"}).json()["results"]
    assert me["organizations"] == {"1234": {"id": 1234, "name": "Acme", "role": "admin"}}
    assert {p["organization_id"] for p in me["projects"].values()} == {1234, 9999}
    assert mixpanel.me_calls()[-1].query == {"include_workspace_users": "false"}


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"username": "", "role": "admin"},
        {"username": "etl", "role": "superuser"},
        {"username": "etl", "expires": "2030-01-01T00:00:00+00:00"},
        {"username": "etl", "expires": "2030-01-01T00:00:00.000Z"},
        {"username": "etl", "expires": "2030-02-30T00:00:00Z"},
        {"username": "etl", "expires": None},
        {"username": "etl", "projects": [{"id": "3001", "role": "admin"}]},
        {"username": "etl", "projects": [{"id": 4001, "role": "admin"}]},
        {"username": "etl", "nickname": "x"},
    ],
)
def test_mixpanel_schema_violations_are_recorded(mixpanel: mp.FakeMixpanel, body: dict[str, Any]) -> None:
    response = _mp(mixpanel, "POST", "/organizations/1234/service-accounts", json=body)
    assert response.status_code == 400
    assert response.json()["status"] == "error"
    assert len(mixpanel.schema_violations) == 1
    assert mixpanel.accounts == {}


def test_mixpanel_create_list_delete(mixpanel: mp.FakeMixpanel) -> None:
    body = {
        "username": "etl",
        "role": "analyst",
        "expires": clock.iso_z(clock.now() + timedelta(days=30)),
        "projects": [{"id": 3001}],
    }
    created = _mp(mixpanel, "POST", "/organizations/1234/service-accounts/", json=body)
    assert created.status_code == 201, created.text
    results = created.json()["results"]
    assert re.fullmatch(r"etl\.[0-9a-f]{6}\.mp-service-account", results["username"])
    assert mixpanel.created_tokens() == [results["token"]] == list(mixpanel.tokens.values())
    listed = _mp(mixpanel, "GET", "/organizations/1234/service-accounts").json()["results"]
    assert [a["id"] for a in listed] == [results["id"]]
    assert results["token"] not in str(listed)
    assert _mp(mixpanel, "DELETE", f"/organizations/1234/service-accounts/{results['id']}").json() == {
        "status": "ok"
    }
    assert _mp(mixpanel, "DELETE", f"/organizations/1234/service-accounts/{results['id']}").status_code == 404
    assert _mp(mixpanel, "GET", "/organizations/5555/service-accounts").status_code == 404
    assert mixpanel.accounts == {}
    assert mixpanel.schema_violations == []
    text_body = _mp(mixpanel, "POST", "/organizations/1234/service-accounts", data='{"username": "x"}')
    assert text_body.status_code == 400  # no application/json Content-Type
    assert mixpanel.schema_violations


def test_mixpanel_scripted_faults_fire_once(mixpanel: mp.FakeMixpanel) -> None:
    path = "/organizations/1234/service-accounts"
    mixpanel.script(
        "create",
        mp.rate_limited("2"),
        mp.error_200({"code": 403, "message": "nope"}),
        mp.respond_html(502, "<html>Bad gateway</html>"),
        mp.create_then(500),
        mp.create_then("drop"),
        mp.drop(),
    )
    limited = _mp(mixpanel, "POST", path, json={"username": "a"})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    assert _mp(mixpanel, "POST", path, json={"username": "a"}).json()["error"] == {
        "code": 403,
        "message": "nope",
    }
    assert _mp(mixpanel, "POST", path, json={"username": "a"}).headers["Content-Type"].startswith("text/html")
    assert mixpanel.accounts == {}
    assert _mp(mixpanel, "POST", path, json={"username": "a"}).status_code == 500
    assert len(mixpanel.accounts) == 1  # created although the client saw a 500
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            _mp(mixpanel, "POST", path, json={"username": "b"})
    assert len(mixpanel.accounts) == 2  # create_then("drop") created, drop() did not
    assert _mp(mixpanel, "POST", path, json={"username": "c"}).status_code == 201  # queue empty: normal
    assert [c.status for c in mixpanel.create_calls()] == [429, 200, 502, 500, None, None, 201]


def test_mixpanel_hang_and_latency_do_not_serialise_or_block_stop(mixpanel: mp.FakeMixpanel) -> None:
    fake = mixpanel
    fake.script("me", mp.hang(30))
    with pytest.raises(requests.Timeout):
        _mp(fake, "GET", "/me", timeout=0.2)
    fake.latency = {"list": 0.3}
    started = time.perf_counter()
    threads = [
        threading.Thread(target=_mp, args=(fake, "GET", "/organizations/1234/service-accounts"))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started < 2.0  # 8 x 0.3 s would be 2.4 s if serialised
    assert len(fake.list_calls()) == 8
    started = time.perf_counter()
    fake.stop()  # the hung /me request is still sleeping
    assert time.perf_counter() - started < 2.0


# ---------------------------------------------------------------------- Slack Web API


def test_slack_web_api_round_trip(slack: FakeSlack) -> None:
    client = WebClient(token="xoxb-test-token", base_url=slack.base_url)
    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(token="xoxb-other", base_url=slack.base_url).auth_test()
    opened = client.views_open(trigger_id="1.2.3", view=MODAL)["view"]
    assert opened["id"].startswith("V") and opened["callback_id"] == "create_sa"
    assert slack.calls("views.open")[0].args["view"]["callback_id"] == "create_sa"
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=MODAL)["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    with pytest.raises(SlackApiError, match="hash_conflict"):
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=MODAL)
    with pytest.raises(SlackApiError, match="not_found"):
        client.views_update(view_id="V9999", view=MODAL)
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        client.views_open(
            trigger_id="1.2.3", view={**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
        )
    assert slack.view_errors
    assert client.users_info(user="U1")["user"]["tz"] == "America/New_York"
    with pytest.raises(SlackApiError, match="user_not_found"):
        client.users_info(user="U404")
    slack.set_usergroup("S1", ["U1", "U2"])
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    assert client.conversations_open(users="U1")["channel"]["id"] == "DU1"

    slack.fail("chat.postEphemeral", "user_not_in_channel", times=1, when=lambda a: a["channel"] == "C1")
    with pytest.raises(SlackApiError, match="user_not_in_channel"):
        client.chat_postEphemeral(channel="C1", user="U1", text="secret-in-ephemeral")
    assert client.chat_postEphemeral(channel="C1", user="U1", text="again")["message_ts"]
    slack.set_http_status("chat.postMessage", 429, times=1)
    with pytest.raises(SlackApiError) as limited:
        client.chat_postMessage(channel="U1", text="hi")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "1"
    assert client.chat_postMessage(channel="U1", text="hi")["channel"] == "DU1"
    assert "secret-in-ephemeral" in slack.all_recorded_text()
    with pytest.raises(AssertionError, match=r"views\.push"):
        slack.wait_for("views.push", timeout=0.1)


def test_slack_granted_scopes_are_reported_and_enforced_and_channels_answer(slack: FakeSlack) -> None:
    client = WebClient(token="xoxb-test-token", base_url=slack.base_url)
    granted = client.auth_test().headers["x-oauth-scopes"].split(",")
    assert set(granted) == slack.granted_scopes and "users:read" in granted
    slack.add_channel("C1", name="audit")
    slack.add_channel("G1", is_private=True, is_member=False)
    assert client.conversations_info(channel="C1")["channel"]["is_member"] is True
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.conversations_info(channel="G1")  # private, and the bot is not in it
    slack.granted_scopes -= {"users:read", "channels:read"}
    with pytest.raises(SlackApiError) as refused:
        client.users_info(user="U1")
    assert refused.value.response["error"] == "missing_scope"
    assert refused.value.response["needed"] == "users:read"
    assert "users:read" not in refused.value.response.headers["x-oauth-scopes"]
    with pytest.raises(SlackApiError, match="missing_scope"):
        client.conversations_info(channel="C1")


def test_slack_trigger_ids_work_once(slack: FakeSlack) -> None:
    client = WebClient(token="xoxb-test-token", base_url=slack.base_url)
    trigger = slack.issue_trigger_id()
    client.views_open(trigger_id=trigger, view=MODAL)
    with pytest.raises(SlackApiError, match="exchanged_trigger_id"):
        client.views_open(trigger_id=trigger, view=MODAL)


def test_slack_response_urls(slack: FakeSlack) -> None:
    url = slack.new_response_url(label="cmd")
    assert WebhookClient(url).send(text="hello", response_type="ephemeral").status_code == 200
    [post] = slack.wait_for("response_url")
    assert post.args == {"text": "hello", "response_type": "ephemeral", "_url": url, "_label": "cmd"}
    slack.fail_response_urls(status=404, body="expired_url", times=1)
    failed = WebhookClient(url).send(text="late")
    assert (failed.status_code, failed.body) == (404, "expired_url")
    assert WebhookClient(url).send(text="ok again").status_code == 200
    assert WebhookClient(slack.url + "response/unknown").send(text="x").status_code == 404


# ---------------------------------------------------------------------- real Bolt apps


def _bolt_app(slack: FakeSlack, seen: list[dict[str, Any]]) -> App:
    app = App(
        signing_secret=SIGNING_SECRET,
        client=WebClient(token="xoxb-test-token", base_url=slack.base_url),
    )

    @app.command("/mp-service-account")
    def command(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=MODAL)

    @app.view("create_sa")
    def submitted(ack: Any, view: dict[str, Any]) -> None:
        seen.append(view)
        ack(response_action="errors", errors={"name": "taken"})

    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


def test_slack_sender_against_bolt_over_http(slack: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    app = _bolt_app(slack, seen)
    server = make_server(
        "127.0.0.1",
        0,
        SlackRequestHandler(app),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        sender = SlackSender(f"http://127.0.0.1:{server.server_port}/slack/events", SIGNING_SECRET)
        response_url = slack.new_response_url()
        assert sender.slash_command("U1", response_url=response_url, sign=False).status == 401
        assert sender.slash_command("U1", response_url=response_url, secret="other").status == 401
        stale = int(time.time()) - 600
        assert sender.slash_command("U1", response_url=response_url, timestamp=stale).status == 401
        acked = sender.slash_command("U1", response_url=response_url, text="hello")
        assert acked.status == 200 and acked.elapsed < 3
        slack.wait_for("views.open")
        view = slack.latest_view("create_sa")
        result = sender.view_submission(
            view, user_id="U1", values={"name": "etl", "role": "admin", "projects": ["3001", "3002"]}
        )
        assert result.json() == {"response_action": "errors", "errors": {"name": "taken"}}
        values = seen[0]["state"]["values"]
        assert values["name"]["name_input"] == {"type": "plain_text_input", "value": "etl"}
        assert values["role"]["role_select"]["selected_option"]["text"]["text"] == "Admin"
        assert [o["value"] for o in values["projects"]["projects_select"]["selected_options"]] == [
            "3001",
            "3002",
        ]
        assert values["expires"]["expires_date"] == {"type": "datepicker", "selected_date": None}
        assert seen[0]["id"] == view["id"] and seen[0]["private_metadata"] == MODAL["private_metadata"]
    finally:
        server.shutdown()
        server.server_close()


def test_socket_mode_round_trip_with_real_bolt(slack: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    app = _bolt_app(slack, seen)
    with FakeSocketModeServer() as socket_mode:
        slack.socket_mode_url = socket_mode.url
        slack.app_token = "xapp-1-test"
        handler = SocketModeHandler(app, app_token="xapp-1-test")
        handler.connect()
        try:
            command = build_payload_slash_command("U1", response_url=slack.new_response_url())
            ack = socket_mode.send_envelope("slash_commands", command)
            assert "payload" not in ack or not ack["payload"]
            slack.wait_for("views.open")
            payload = build_payload_view_submission(slack.latest_view(), user_id="U1", values={"name": "x"})
            ack = socket_mode.send_envelope("interactive", payload)
            assert ack["payload"] == {"response_action": "errors", "errors": {"name": "taken"}}
            assert seen[0]["state"]["values"]["role"]["role_select"]["selected_option"] is None
        finally:
            handler.close()
    assert socket_mode.request_paths == ["/link?ticket=abc"]
    assert slack.calls("apps.connections.open")[0].headers["Authorization"] == "Bearer xapp-1-test"
