"""Issue 9, part 2, through the wire: right after start-up, a burst of people shares one /me fetch (the
start-up warm-up) and every one of them ends with a usable form."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from bot.create import views
from bot.mixpanel.client import ErrorKind, MixpanelError
from tests.conftest import GENERAL
from tests.fakes.mixpanel import respond

PEOPLE = 30
LOADS = 8


def usable_form_of(slack, opened) -> dict:
    """The creation modal this person ends with: opened directly, or the loading view once completed."""
    view = opened.response["view"]
    if view["callback_id"] == views.CREATE_CALLBACK_ID:
        return view
    [updated] = slack.wait_for(
        lambda call: (
            call.method == "views.update"
            and call.args.get("view_id") == view["id"]
            and call.status is not None
        )
    )
    return updated.response["view"]


def test_a_burst_right_after_start_up_shares_one_me_call_and_everyone_gets_a_form(bots, slack, mixpanel):
    people = [f"UCOLD{i:03d}" for i in range(PEOPLE)]
    for person in people:
        slack.add_user(person, tz="UTC")
    mixpanel.latency = {"me": 1.0}
    bot = bots.start(warm_cache=False, background_tasks=True)  # a cold start, as after a deploy

    with ThreadPoolExecutor(max_workers=PEOPLE) as pool:
        commands = list(
            pool.map(
                lambda person: bot.sender.slash_command(
                    person, channel_id=GENERAL, response_url=slack.new_response_url(label=person)
                ),
                people,
            )
        )

    assert [command.status for command in commands] == [200] * PEOPLE
    opened = slack.wait_for(
        lambda call: call.method == "views.open" and call.status is not None, count=PEOPLE
    )
    assert [call.status for call in opened] == [200] * PEOPLE
    forms = {
        json.loads(call.response["view"]["private_metadata"])["u"]: usable_form_of(slack, call)
        for call in opened
    }
    assert sorted(forms) == people
    for form in forms.values():
        assert form["callback_id"] == views.CREATE_CALLBACK_ID
        assert views.BLOCK_PROJECTS in [block.get("block_id") for block in form["blocks"]]
    assert len(mixpanel.me_calls()) == 1
    assert slack.response_url_posts() == []  # nobody was told anything but the form


def test_concurrent_loads_join_the_fetch_in_flight_and_share_its_error(bots, mixpanel):
    bot = bots.start(warm_cache=False)
    catalog = bot.runtime.catalog
    mixpanel.latency = {"me": 2.0}
    mixpanel.script("me", respond(403, {"status": "error", "error": "forbidden"}))  # then normal answers
    ready = threading.Barrier(LOADS)
    outcomes: list[object] = []

    def load() -> None:
        ready.wait()
        try:
            outcomes.append(catalog.load())
        except MixpanelError as error:
            outcomes.append(error.kind)

    threads = [threading.Thread(target=load) for _ in range(LOADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert outcomes == [ErrorKind.FORBIDDEN] * LOADS
    assert len(mixpanel.me_calls()) == 1
    assert catalog.cached() is None  # an error is not remembered: the next load asks again
    assert catalog.get().projects
    assert len(mixpanel.me_calls()) == 2


def test_a_finished_fetch_is_reused_by_get_and_never_joined_by_a_later_load(bots, mixpanel):
    bot = bots.start(warm_cache=False)
    catalog = bot.runtime.catalog

    first = catalog.load()

    assert catalog.get() is first
    assert len(mixpanel.me_calls()) == 1
    assert catalog.load() is not first
    assert len(mixpanel.me_calls()) == 2
