"""The organization's account list is read once for many readers, and afresh after the bot's own changes."""

from __future__ import annotations

import threading

import pytest
from pydantic import SecretStr

from bot.cache import TTLCache
from bot.mixpanel.client import MixpanelClient
from bot.mixpanel.listing import AccountListing
from bot.mixpanel.models import NewServiceAccount, ProjectGrant
from bot.models import Role
from tests.conftest import ALICE, MP_SECRET, MP_USERNAME, ORG_ID
from tests.lifecycle import ADMIN, BOB, POLICY, click_delete, delete_buttons, mint, run_list, text_of
from tests.slack_requests import build_event_app_home_opened

# Long enough that within a test only a forgotten list is ever read again.
CACHE_SECONDS = 60
READERS = 8


@pytest.fixture
def cached(bots, slack):
    slack.add_user(BOB, tz="UTC", name="bob")
    slack.add_user(ADMIN, tz="UTC", name="admin")
    return bots.start(policy=POLICY, mixpanel_list_cache_seconds=CACHE_SECONDS)


def all_at_once(work, count: int = READERS) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(10)
            work()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


def test_concurrent_app_home_opens_make_one_list_call(cached):
    mint(cached)
    lists = len(cached.mixpanel.list_calls())
    publishes = len(cached.slack.calls("views.publish"))
    cached.mixpanel.latency = {"list": 0.5}  # every opener arrives while the first list is in flight

    all_at_once(lambda: cached.sender.event_callback(build_event_app_home_opened(ALICE)))

    cached.slack.wait_for(lambda c: c.method == "views.publish" and c.response, count=publishes + READERS)
    assert len(cached.mixpanel.list_calls()) == lists + 1


def test_concurrent_list_commands_make_one_list_call_and_each_gets_its_answer(cached):
    mine = mint(cached)
    lists = len(cached.mixpanel.list_calls())
    cached.mixpanel.latency = {"list": 0.5}
    answers: list[dict] = []

    all_at_once(lambda: answers.append(run_list(cached)))

    assert len(answers) == READERS and all(mine.mixpanel_username in text_of(a) for a in answers)
    assert len(cached.mixpanel.list_calls()) == lists + 1


def test_after_a_delete_through_the_wire_the_next_list_reflects_it(cached):
    kept = mint(cached, username="kept-one")
    doomed = mint(cached, username="doomed-one")
    before = run_list(cached)
    assert doomed.mixpanel_username in text_of(before)
    lists = len(cached.mixpanel.list_calls())
    button = next(b for b in delete_buttons(before).values() if b["value"] == f"r:{doomed.id}")

    click_delete(cached, ALICE, button)
    cached.mixpanel.wait_for("delete")
    cached.wait_idle()

    after = run_list(cached)
    assert doomed.mixpanel_username not in text_of(after) and kept.mixpanel_username in text_of(after)
    assert len(cached.mixpanel.list_calls()) > lists  # listed afresh, not served from the cache


def test_every_change_the_client_makes_forgets_the_list_and_reads_do_not(mixpanel):
    client = MixpanelClient(mixpanel.base_url, MP_USERNAME, SecretStr(MP_SECRET), read_timeout=5)
    listing = AccountListing(client, ttl=CACHE_SECONDS)
    try:

        def lists_after(change) -> int:
            listing.accounts(ORG_ID)
            before = len(mixpanel.list_calls())
            change()
            listing.accounts(ORG_ID)
            return len(mixpanel.list_calls()) - before

        created = client.create_service_account(
            ORG_ID, NewServiceAccount(username="one", role=Role.CONSUMER, projects=(), expires=None)
        )
        assert lists_after(lambda: client.get_service_account(ORG_ID, created.id)) == 0
        assert lists_after(lambda: client.list_project_service_accounts(3001)) == 0
        grant = (ProjectGrant(id=3001, role=Role.CONSUMER),)
        assert lists_after(lambda: client.add_to_projects(ORG_ID, [created.id], grant)) == 1
        assert lists_after(lambda: client.remove_from_projects(ORG_ID, [created.id], [3001])) == 1
        assert lists_after(lambda: client.delete_if_present(ORG_ID, created.id)) == 1
        new = NewServiceAccount(username="two", role=Role.CONSUMER, projects=(), expires=None)
        assert lists_after(lambda: client.create_service_account(ORG_ID, new)) == 1
    finally:
        client.close()


def test_a_load_begun_before_clear_is_neither_stored_nor_joined():
    cache: TTLCache[str] = TTLCache(CACHE_SECONDS)
    inside = threading.Event()
    release = threading.Event()
    loads: list[str] = []

    def slow_old() -> str:
        loads.append("old")
        inside.set()
        release.wait(10)
        return "old"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(cache.get_or_load("k", slow_old)))
    first.start()
    assert inside.wait(10)
    cache.clear()  # the value changed while the old load was in flight
    assert cache.get_or_load("k", lambda: loads.append("new") or "new") == "new"  # not joined
    release.set()
    first.join(10)
    assert results == ["old"] and loads == ["old", "new"]
    assert cache.get("k") == "new"  # the old answer did not overwrite the new one
