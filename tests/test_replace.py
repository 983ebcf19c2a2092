"""Replace…: a prefilled creation form, the usual delivery, linked records, and an offer to delete the old."""

from __future__ import annotations

import json

from bot.create import views
from bot.db.schema import AuditEvent, RequestState
from bot.manage.views import ACTION_DELETE
from bot.models import Role
from bot.policy.file import ApprovalPolicy, ApprovalTriggers, PersonSelector, Policy
from tests import clock
from tests.conftest import ALICE, GENERAL, form_values
from tests.lifecycle import AUDIT, BOB, audit_events, click_replace, managed, mint, run_list, text_of

__all__ = ["managed"]  # a fixture


def block(view: dict, block_id: str) -> dict:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def test_replace_makes_a_new_account_the_usual_way_links_it_and_offers_to_delete_the_old(managed):
    old = mint(managed)
    url = managed.slack.new_response_url()
    result = click_replace(managed, ALICE, f"r:{old.id}", url)

    assert result.status == 200 and result.elapsed < 3
    opened = managed.slack.opened_by(result.trigger_id)
    form = opened.response["view"]
    assert form["callback_id"] == views.CREATE_CALLBACK_ID
    assert block(form, views.BLOCK_USERNAME)["element"]["initial_value"] == "etl-nightly"
    assert block(form, views.BLOCK_ROLE)["element"]["initial_option"]["value"] == "analyst"
    initial = block(form, views.BLOCK_PROJECTS)["element"]["initial_options"]
    assert sorted(o["value"] for o in initial) == ["3001", "3002"]
    assert json.loads(form["private_metadata"])["p"] == old.id

    expiry = clock.form_expiry(60)
    managed.submit(form, form_values(projects=[3001, 3002], expires_on=expiry))
    managed.wait_idle()

    assert len(managed.mixpanel.create_calls()) == 2
    new = next(r for r in managed.runtime.manage.records.delivered(ALICE) if r.id != old.id)
    assert new.replaces_request_id == old.id
    token = managed.mixpanel.tokens[new.mixpanel_account_id]
    to_alice = [c for c in managed.slack.calls("response_url") if c.args["_url"] == url]
    assert token in json.dumps(to_alice[0].args)  # delivered privately, like any creation
    assert old.mixpanel_account_id in managed.mixpanel.accounts  # the old one keeps running
    assert managed.mixpanel.delete_calls() == []

    offer = managed.slack.wait_for(
        lambda c: c.method == "response_url" and "Delete the old account" in json.dumps(c.args)
    )[-1]
    assert token not in json.dumps(offer.args)
    listing = run_list(managed)
    assert f"replaced by `{new.mixpanel_username}`" in text_of(listing)
    assert "replaces an earlier account" in text_of(listing)

    actions = next(b for b in offer.args["blocks"] if b["type"] == "actions")
    button = actions["elements"][0]
    assert button["value"] == f"r:{old.id}"
    managed.sender.block_actions(
        user_id=ALICE,
        actions=[{"action_id": ACTION_DELETE, "block_id": actions["block_id"], "value": button["value"]}],
        channel_id=GENERAL,
        response_url=managed.slack.new_response_url(),
    )
    managed.wait_idle()
    managed.mixpanel.wait_for("delete")
    assert old.mixpanel_account_id not in managed.mixpanel.accounts
    assert new.mixpanel_account_id in managed.mixpanel.accounts
    assert managed.store.get(old.id).state is RequestState.CLOSED


def test_someone_elses_account_cannot_be_replaced(managed):
    old = mint(managed)
    url = managed.slack.new_response_url()
    before = len(managed.slack.calls("views.open"))
    click_replace(managed, BOB, f"r:{old.id}", url)
    answer = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert "only the service accounts you own" in text_of(answer.args)
    assert len(managed.slack.calls("views.open")) == before
    assert audit_events(managed, AuditEvent.MANAGE_REFUSED)[-1]["requester_id"] == BOB


def test_a_forged_link_in_the_form_is_refused_and_creates_nothing(managed):
    old = mint(managed)
    _, form, _ = managed.open_form(BOB)
    metadata = json.loads(form["private_metadata"])
    forged = {**form, "private_metadata": json.dumps({**metadata, "p": old.id})}

    ack = managed.submit(forged, form_values(expires_on=clock.form_expiry(5)), BOB)

    managed.wait_idle()
    assert "no longer valid" in json.dumps(ack.json())
    assert len(managed.mixpanel.create_calls()) == 1  # Alice's original only
    assert audit_events(managed, AuditEvent.MANAGE_REFUSED)[-1]["requester_id"] == BOB


def test_a_replacement_that_needs_approval_keeps_its_link_through_the_claim(bots, slack):
    from bot.approve import messages as approval_text
    from tests.test_approvals import APPROVER, CHANNEL, approve_and_get_claim, button_ids, button_value, claim

    slack.add_user(APPROVER, name="approver")
    policy = Policy(
        audit_channel=AUDIT,
        max_role=Role.ADMIN,
        approval=ApprovalPolicy(
            required_for=ApprovalTriggers(roles=[Role.ADMIN]),
            approvers=PersonSelector(users=[APPROVER]),
            channel=CHANNEL,
        ),
    )
    bot = bots.start(policy=policy, slack_cache_seconds=0)
    old = mint(bot)  # an analyst: no approval needed
    url = bot.slack.new_response_url()
    clicked = click_replace(bot, ALICE, f"r:{old.id}", url)
    form = bot.slack.opened_by(clicked.trigger_id).response["view"]
    values = form_values(role="admin", projects=[3001, 3002], expires_on=clock.form_expiry(30))
    values[views.BLOCK_REASON] = "The export now needs admin"

    ack = bot.submit(form, values)

    assert ack.json()["response_action"] == "update"
    posted = bot.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and approval_text.ACTION_APPROVE in button_ids(c.args)
    )
    request_id = button_value(posted[-1].args, approval_text.ACTION_APPROVE)
    assert bot.store.get(request_id).replaces_request_id == old.id
    approve_and_get_claim(bot, request_id)
    answered = claim(bot, ALICE, request_id)
    shown = bot.slack.wait_for(
        lambda c: (
            (c.method == "views.update" and "shown only this once" in json.dumps(c.args))
            or (c.method == "response_url" and c.args["_url"] == answered)
        )
    )
    bot.wait_idle()
    assert shown[-1].method == "views.update", shown[-1].args
    assert bot.store.get(request_id).state is RequestState.DELIVERED
    offer = bot.slack.wait_for(lambda c: "Delete the old account" in json.dumps(c.args))[-1]
    assert f"r:{old.id}" in json.dumps(offer.args)
    listing = text_of(run_list(bot))
    assert "replaces an earlier account" in listing and "replaced by" in listing
