"""Listing and deleting minted accounts, through the wire: `list`, `list all`, Delete clicks, refusals."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from slack_sdk.models.blocks import Block

from bot.db.schema import AuditEvent, RequestState
from bot.manage.accounts import Presence
from bot.manage.views import MAX_LISTED
from bot.mixpanel.client import longest_idempotent_call_seconds
from tests import clock
from tests.conftest import ALICE, GUEST, ORG_ID
from tests.fakes.mixpanel import hang, respond
from tests.lifecycle import (
    ADMIN,
    AUDIT,
    BOB,
    audit_events,
    click_delete,
    delete_buttons,
    managed,
    mint,
    run_list,
    text_of,
)

__all__ = ["managed"]  # a fixture


def test_list_shows_my_accounts_with_live_details_and_a_confirmed_delete(managed):
    mine = mint(managed)
    mint(managed, BOB, username="bobs")
    managed.mixpanel.add_account(ORG_ID, "made-in-the-ui")
    used_on = clock.days_from_now(-3)  # at 10:00 UTC: the same day in Alice's Berlin
    managed.mixpanel.use_account(
        mine.mixpanel_account_id, clock.iso_z(datetime.combine(used_on, time(10), UTC))
    )

    message = run_list(managed)

    text = text_of(message)
    assert mine.mixpanel_username in text
    assert "bobs" not in text and "made-in-the-ui" not in text
    assert "analyst" in text and "android App" in text and "Backend Events" in text
    assert f"expires {clock.form_expiry(30)} (in 30 days)" in text
    assert f"last used {used_on.isoformat()}" in text
    assert f"created by <@{ALICE}> on " in text
    buttons = delete_buttons(message)
    assert list(buttons) == [f"mine:{mine.mixpanel_account_id}"]
    button = buttons[f"mine:{mine.mixpanel_account_id}"]
    assert button["value"] == f"r:{mine.id}" and button["confirm"]["style"] == "danger"
    assert [Block.parse(b).to_dict() for b in message["blocks"]] == message["blocks"]
    assert all(token not in json.dumps(message) for token in managed.mixpanel.created_tokens())


def test_list_all_is_for_admins_and_marks_accounts_made_outside_the_bot(managed):
    mint(managed)
    expired_on = clock.days_from_now(-30)  # at midnight UTC: the admin's day (the admin is in UTC)
    outside = managed.mixpanel.add_account(
        ORG_ID, "made-in-the-ui", expires=clock.iso_z(expired_on), projects=[{"id": 3003, "role": "consumer"}]
    )

    refused = run_list(managed, ALICE, "list all")
    assert "Only the bot's admins may list every account" in refused["text"]
    assert "made-in-the-ui" not in json.dumps(refused)
    assert audit_events(managed, AuditEvent.MANAGE_REFUSED)[-1]["requester_id"] == ALICE

    message = run_list(managed, ADMIN, "list all")
    text = text_of(message)
    assert "etl-nightly" in text and outside["username"] in text
    assert "not made by the bot" in text and f"expired {expired_on.isoformat()}" in text
    assert "consumer · Web Analytics" in text  # from Mixpanel's per-project listing
    assert delete_buttons(message)[f"all:{outside['id']}"]["value"] == f"a:{outside['id']}"


def test_a_guest_may_list_nothing(managed):
    message = run_list(managed, GUEST)
    assert "Only full members" in message["text"] and "blocks" not in message
    assert managed.mixpanel.list_calls() == []


def test_a_long_list_is_summarized_within_block_kit_limits(managed):
    for n in range(MAX_LISTED + 5):
        managed.mixpanel.add_account(ORG_ID, f"ui-{n:02d}")
    message = run_list(managed, ADMIN, "list all")
    assert len(delete_buttons(message)) == MAX_LISTED
    assert "…and 5 more" in text_of(message)
    assert len(message["blocks"]) <= 50


def test_delete_asks_mixpanel_once_audits_who_and_why_and_refreshes_the_list(managed):
    request = mint(managed)
    listing = run_list(managed)
    block_id, button = next(iter(delete_buttons(listing).items()))
    url = managed.slack.new_response_url()

    result = click_delete(managed, ALICE, button, block_id, response_url=url)

    assert result.status == 200 and result.elapsed < 3
    refreshed = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert refreshed.args["replace_original"] is True
    assert f"`{request.mixpanel_username}` was deleted from Mixpanel" in text_of(refreshed.args)
    assert delete_buttons(refreshed.args) == {}
    managed.wait_idle()
    deletes = managed.mixpanel.delete_calls()
    assert [c.path for c in deletes] == [
        f"/api/app/organizations/{ORG_ID}/service-accounts/{request.mixpanel_account_id}"
    ]
    assert managed.store.get(request.id).state is RequestState.CLOSED
    row = audit_events(managed, AuditEvent.ACCOUNT_DELETED)[-1]
    assert (row["requester_id"], row["request_id"], row["detail"]) == (
        ALICE,
        request.id,
        "allowed as creator",
    )
    announced = managed.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and "deleted `" in json.dumps(c.args)
    )[-1]
    assert announced.args["channel"] == AUDIT
    assert f"<@{ALICE}> deleted `{request.mixpanel_username}`" in json.dumps(announced.args)
    assert "*Allowed as:* creator" in json.dumps(announced.args)


def test_a_double_click_or_a_replay_deletes_once(managed):
    request = mint(managed)
    button = {"value": f"r:{request.id}"}
    urls = [managed.slack.new_response_url() for _ in range(3)]
    threads = [
        threading.Thread(target=click_delete, args=(managed, ALICE, button, "mine:1", u)) for u in urls[:2]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] in urls[:2], count=2)
    click_delete(managed, ALICE, button, "mine:1", urls[2])  # a replay, later
    answer = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == urls[2])[-1]
    managed.wait_idle()

    assert len(managed.mixpanel.delete_calls()) == 1
    assert "already deleted" in text_of(answer.args) or "already being deleted" in text_of(answer.args)
    assert len(audit_events(managed, AuditEvent.ACCOUNT_DELETED)) == 1


def test_someone_elses_account_is_refused_and_audited_but_an_admin_may_delete_it(managed):
    request = mint(managed)
    button = {"value": f"r:{request.id}"}
    url = managed.slack.new_response_url()

    click_delete(managed, BOB, button, response_url=url)
    answer = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    managed.wait_idle()
    assert "You may manage only the service accounts you own" in text_of(answer.args)
    assert managed.mixpanel.delete_calls() == []
    refusal = audit_events(managed, AuditEvent.MANAGE_REFUSED)[-1]
    assert refusal["requester_id"] == BOB and refusal["request_id"] == request.id
    assert "not_yours" in refusal["detail"]

    url = managed.slack.new_response_url()
    click_delete(managed, ADMIN, button, response_url=url)
    managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)
    managed.wait_idle()
    assert len(managed.mixpanel.delete_calls()) == 1
    assert audit_events(managed, AuditEvent.ACCOUNT_DELETED)[-1]["detail"] == "allowed as admin"


@pytest.mark.parametrize("user", [GUEST, BOB])
def test_forged_ids_change_nothing_and_are_audited(managed, user):
    request = mint(managed)
    outside = managed.mixpanel.add_account(ORG_ID, "made-in-the-ui")
    forged = ["r:0123456789abcdef", f"a:{outside['id']}", f"a:{request.mixpanel_account_id}", "x:1", "r:../1"]
    urls = []
    for value in forged:
        urls.append(managed.slack.new_response_url())
        click_delete(managed, user, {"value": value}, response_url=urls[-1])
    answers = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] in urls, count=5)
    managed.wait_idle()

    assert managed.mixpanel.delete_calls() == []
    assert all(":no_entry:" in text_of(answer.args) for answer in answers)
    assert len(audit_events(managed, AuditEvent.MANAGE_REFUSED)) == len(forged)
    assert managed.store.get(request.id).state is RequestState.DELIVERED


def test_an_account_deleted_outside_the_bot_is_shown_gone_and_its_record_closed(managed):
    request = mint(managed)
    managed.mixpanel.delete_outside(request.mixpanel_account_id)

    message = run_list(managed)

    assert f"~`{request.mixpanel_username}`~ *gone*" in text_of(message)
    assert delete_buttons(message) == {}
    assert managed.store.get(request.id).state is RequestState.CLOSED
    assert audit_events(managed, AuditEvent.FOUND_GONE)[-1]["request_id"] == request.id
    # Listed again, it is no longer there, and it was closed once.
    assert request.mixpanel_username not in text_of(run_list(managed))
    assert len(audit_events(managed, AuditEvent.FOUND_GONE)) == 1


def test_deleting_an_account_already_gone_says_so_and_closes_the_record(managed):
    request = mint(managed)
    managed.mixpanel.delete_outside(request.mixpanel_account_id)
    url = managed.slack.new_response_url()

    click_delete(managed, ALICE, {"value": f"r:{request.id}"}, response_url=url)

    answer = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert "was already gone from Mixpanel" in text_of(answer.args)
    managed.wait_idle()
    assert managed.store.get(request.id).state is RequestState.CLOSED
    assert audit_events(managed, AuditEvent.FOUND_GONE)[-1]["requester_id"] == ALICE


def test_a_mixpanel_failure_on_delete_is_one_sentence_and_a_later_click_may_retry(managed):
    request = mint(managed)
    managed.mixpanel.script("delete", respond(403, {"status": "error", "error": "nope"}))
    url = managed.slack.new_response_url()
    click_delete(managed, ALICE, {"value": f"r:{request.id}"}, response_url=url)
    answer = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    managed.wait_idle()
    assert "Mixpanel did not let the bot delete" in text_of(answer.args)
    assert managed.store.get(request.id).state is RequestState.DELIVERED
    assert request.mixpanel_account_id in managed.mixpanel.accounts

    url = managed.slack.new_response_url()
    click_delete(managed, ALICE, {"value": f"r:{request.id}"}, response_url=url)
    managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)
    managed.wait_idle()
    assert request.mixpanel_account_id not in managed.mixpanel.accounts
    assert managed.store.get(request.id).state is RequestState.CLOSED


def test_help_names_the_new_subcommands(managed):
    result = managed.sender.slash_command(ALICE, text="help", response_url=managed.slack.new_response_url())
    assert "list all" in result.json()["text"] and "App Home" in result.json()["text"]


def test_a_mixpanel_failure_while_listing_is_one_plain_sentence(managed):
    managed.mixpanel.script("list", respond(403, {"status": "error", "error": "no"}))
    message = run_list(managed)
    assert message["text"].startswith(":x: Mixpanel did not let the bot read the service accounts")
    assert "blocks" not in message


def test_an_account_delivered_while_the_list_is_read_is_not_closed_as_gone(managed):
    records = managed.runtime.manage.records
    original = records.by_account_ids
    made = []

    def creation_lands_between_the_two_reads(ids):  # after Mixpanel's list, before the database read
        if not made:
            made.append(mint(managed, user=BOB, username="fresh-one"))
        return original(ids)

    records.by_account_ids = creation_lands_between_the_two_reads
    try:
        entries = managed.runtime.manage.entries(None)  # what the reminder job and `list all` do
    finally:
        records.by_account_ids = original

    fresh = managed.store.get(made[0].id)
    assert fresh.mixpanel_account_id in managed.mixpanel.accounts
    assert fresh.state is RequestState.DELIVERED
    assert audit_events(managed, AuditEvent.FOUND_GONE) == []
    shown = next(e for e in entries if e.account_id == fresh.mixpanel_account_id)
    assert shown.presence is Presence.LIVE
    # One really gone is still found gone, confirmed by Mixpanel's 404 for it.
    managed.mixpanel.delete_outside(fresh.mixpanel_account_id)
    managed.runtime.manage.entries(None)
    assert managed.store.get(fresh.id).state is RequestState.CLOSED


def test_a_click_while_the_first_deletion_may_still_be_running_sends_no_second_delete(managed):
    request = mint(managed)
    settings = managed.runtime.settings
    slowest = longest_idempotent_call_seconds(
        connect_timeout=settings.mixpanel_connect_timeout,
        read_timeout=settings.mixpanel_read_timeout,
        max_rate_limit_wait=settings.mixpanel_max_rate_limit_wait,
    )
    assert slowest > 120  # these settings allow a DELETE slower than the old fixed 2-minute lease
    moment = [datetime.now(UTC)]
    managed.runtime.manage.d.clock = lambda: moment[0]  # the one clock of this test, moved by hand
    managed.mixpanel.script("delete", hang(4.0))  # Mixpanel is slow to answer the first DELETE (within 5 s)
    button = {"value": f"r:{request.id}"}
    first, second = managed.slack.new_response_url(), managed.slack.new_response_url()

    click_delete(managed, ALICE, button, "mine:1", first)
    managed.mixpanel.wait_for("delete")  # the first DELETE is with Mixpanel, unanswered
    moment[0] += timedelta(seconds=slowest - 1)  # still inside the slowest the first one may take
    click_delete(managed, ALICE, button, "mine:1", second)

    answer = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == second)[-1]
    assert "already being deleted" in text_of(answer.args)
    managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == first)
    managed.wait_idle()
    assert len(managed.mixpanel.delete_calls()) == 1
    assert len(audit_events(managed, AuditEvent.ACCOUNT_DELETED)) == 1
    assert managed.store.get(request.id).state is RequestState.CLOSED
