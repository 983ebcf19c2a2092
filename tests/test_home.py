"""The App Home through the wire: app_home_opened publishes the person's accounts; its buttons work."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.create.views import CREATE_CALLBACK_ID
from bot.manage.views import ACTION_DELETE, ACTION_HOME_CREATE
from tests import clock
from tests.conftest import ALICE, GUEST, ORG_ID, form_values
from tests.lifecycle import (
    ADMIN,
    BOB,
    POLICY,
    assert_within_block_kit,
    delete_buttons,
    managed,
    mint,
    run_list,
    text_of,
)
from tests.slack_requests import build_event_app_home_opened

__all__ = ["managed"]  # a fixture


def open_home(bot, user: str = ALICE, *, count: int = 1) -> dict:
    result = bot.sender.event_callback(build_event_app_home_opened(user))
    assert result.status == 200 and result.elapsed < 3
    published = bot.slack.wait_for(
        lambda c: c.method == "views.publish" and c.args["user_id"] == user and c.response, count=count
    )
    call = published[-1]
    assert call.response["ok"], call.response  # the fake validated it against Slack's View model
    return call.args["view"] if isinstance(call.args["view"], dict) else json.loads(call.args["view"])


def buttons(view: dict, action_id: str) -> list[dict]:
    found = []
    for block in view["blocks"]:
        for element in [block.get("accessory") or {}, *(block.get("elements") or [])]:
            if element.get("action_id") == action_id:
                found.append({**element, "block_id": block.get("block_id")})
    return found


def test_home_shows_my_accounts_a_create_button_and_never_a_token(managed):
    mine = mint(managed)
    mint(managed, BOB, username="bobs")

    view = open_home(managed)

    text = json.dumps(view)
    assert view["type"] == "home"
    assert mine.mixpanel_username in text and "bobs" not in text
    assert [b["value"] for b in buttons(view, ACTION_DELETE)] == [f"r:{mine.id}"]
    assert len(buttons(view, ACTION_HOME_CREATE)) == 1
    assert all(token not in text for token in managed.mixpanel.created_tokens())


def test_the_messages_tab_publishes_nothing(managed):
    managed.sender.event_callback(build_event_app_home_opened(ALICE, tab="messages"))
    open_home(managed, BOB)  # a later event is handled, so the first one was too
    assert [c.args["user_id"] for c in managed.slack.calls("views.publish")] == [BOB]


def test_create_from_home_opens_the_usual_form(managed):
    view = open_home(managed)
    create = buttons(view, ACTION_HOME_CREATE)[0]
    result = managed.sender.block_actions(
        user_id=ALICE,
        actions=[{"action_id": ACTION_HOME_CREATE, "block_id": create["block_id"], "value": create["value"]}],
        container={"type": "view", "view_id": "VHOME"},
    )
    assert result.status == 200 and result.elapsed < 3
    opened = managed.slack.wait_for(lambda c: c.method == "views.open" and c.response)[-1]
    assert opened.response["view"]["callback_id"] == CREATE_CALLBACK_ID


def test_delete_from_home_refreshes_the_home(managed):
    mine = mint(managed)
    view = open_home(managed)
    delete = buttons(view, ACTION_DELETE)[0]

    managed.sender.block_actions(
        user_id=ALICE,
        actions=[{"action_id": ACTION_DELETE, "block_id": delete["block_id"], "value": delete["value"]}],
        container={"type": "view", "view_id": "VHOME"},
    )

    refreshed = managed.slack.wait_for(lambda c: c.method == "views.publish" and c.response, count=2)[-1]
    text = json.dumps(refreshed.args["view"])
    assert f"`{mine.mixpanel_username}` was deleted from Mixpanel" in text
    assert buttons(refreshed.args["view"], ACTION_DELETE) == []
    managed.wait_idle()
    assert len(managed.mixpanel.delete_calls()) == 1


def test_a_guest_home_offers_nothing(managed):
    managed.mixpanel.add_account(ORG_ID, "made-in-the-ui")
    view = open_home(managed, GUEST)
    assert "Only full members" in json.dumps(view)
    assert buttons(view, ACTION_HOME_CREATE) == [] and buttons(view, ACTION_DELETE) == []
    assert managed.mixpanel.list_calls() == []


def test_policy_admins_see_only_their_own_accounts_at_home(managed):
    assert POLICY.admins.users
    mint(managed, BOB, username="bobs")
    view = open_home(managed, POLICY.admins.users[0])
    assert "bobs" not in json.dumps(view)


def test_an_account_created_from_home_is_delivered_privately_and_the_home_refreshed(managed):
    view = open_home(managed)
    create = buttons(view, ACTION_HOME_CREATE)[0]
    managed.sender.block_actions(
        user_id=ALICE,
        actions=[{"action_id": ACTION_HOME_CREATE, "block_id": create["block_id"], "value": create["value"]}],
        container={"type": "view", "view_id": "VHOME"},
    )
    form = managed.slack.wait_for(lambda c: c.method == "views.open" and c.response)[-1].response["view"]
    expiry = clock.form_expiry(20)

    managed.submit(form, form_values(username="from-home", expires_on=expiry))
    managed.wait_idle()

    [account] = [a for a in managed.mixpanel.accounts.values() if a["requested_username"] == "from-home"]
    token = managed.mixpanel.tokens[account["id"]]
    ephemeral = [c for c in managed.slack.calls("chat.postEphemeral") if token in json.dumps(c.args)]
    assert [c.args["user"] for c in ephemeral] == [ALICE]  # the DM fallback, ephemeral, to Alice alone
    refreshed = managed.slack.wait_for(
        lambda c: c.method == "views.publish" and account["username"] in json.dumps(c.args)
    )[-1]
    assert token not in json.dumps(refreshed.args)


def test_an_account_in_many_long_named_projects_stays_within_block_kit_everywhere(bots, mixpanel):
    ids = list(range(6000, 6070))
    for pid in ids:
        name = f"Marketing analytics EMEA subsidiary {pid} production"
        mixpanel.projects[pid] = {"id": pid, "name": name, "organization_id": ORG_ID}
    managed = bots.start(policy=POLICY)  # knows the projects from its start
    _, form, _ = managed.open_form(ALICE)
    expiry = clock.form_expiry(30)
    assert managed.submit(form, form_values(projects=ids, expires_on=expiry), ALICE).status == 200
    managed.wait_idle()
    delivered = managed.slack.wait_for(lambda c: c.method == "response_url" and "Token" in json.dumps(c.args))
    assert_within_block_kit(delivered[-1].args)  # the credentials message itself
    made = managed.runtime.manage.records.delivered(ALICE)[-1]

    view = open_home(managed)  # asserts Slack took it

    text = json.dumps(view)
    assert "subsidiary 6000 production" in text and "and 60 more" in text
    listed = run_list(managed)
    assert_within_block_kit(listed)
    assert "and 60 more" in text_of(listed)
    sent = managed.runtime.reminders.run_once(made.expires_at - timedelta(days=6))
    assert len(sent) == 1
    reminder = managed.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and "Replace" in json.dumps(c.args)
    )
    assert_within_block_kit(reminder[-1].args)


def test_the_delete_dialog_of_an_account_with_a_very_long_name_stays_within_300_characters(managed):
    long_name = "made-in-the-ui-" + "x" * 400
    outside = managed.mixpanel.add_account(ORG_ID, long_name, projects=[{"id": 3003, "role": "consumer"}])

    listed = run_list(managed, ADMIN, "list all")

    assert_within_block_kit(listed)
    dialog = delete_buttons(listed)[f"all:{outside['id']}"]["confirm"]["text"]["text"]
    assert dialog.startswith("`made-in-the-ui-xxx") and "cannot be undone" in dialog
