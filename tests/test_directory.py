"""Slack directory lookups: one call per user group for a cold burst, and a stale member list while Slack
fails (bounded), through the wire; then the cache's building blocks on their own."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.cache import SingleFlight, TTLCache
from bot.create import views
from bot.policy.file import PersonSelector, Policy
from bot.slack.directory import MEMBERS_STALE_SECONDS, SlackDirectory

GROUPS = ["SDATA", "SOPS", "SFIN"]
PEOPLE = [f"UPERSON{n:02d}" for n in range(30)]
BOB = "UBOB"


def test_a_cold_burst_of_thirty_people_makes_one_call_per_group(bots, slack):
    for person in PEOPLE:
        slack.add_user(person, tz="UTC")
    for n, group in enumerate(GROUPS):
        slack.set_usergroup(group, PEOPLE[n::3])
    # Slow enough that the commands overlap; the assertion holds however they interleave.
    slack.delay("usergroups.users.list", 0.3)
    bot = bots.start(policy=Policy(requesters=PersonSelector(usergroups=GROUPS)))

    with ThreadPoolExecutor(max_workers=len(PEOPLE)) as pool:
        results = list(
            pool.map(
                lambda person: bot.sender.slash_command(person, response_url=slack.new_response_url()), PEOPLE
            )
        )

    assert all(result.status == 200 for result in results)
    opened = slack.wait_for("views.open", count=len(PEOPLE), timeout=30)
    assert {call.args["view"]["callback_id"] for call in opened} == {views.CREATE_CALLBACK_ID}
    lookups = Counter(call.args["usergroup"] for call in slack.calls("usergroups.users.list"))
    assert lookups == Counter(GROUPS)
    assert len(slack.calls("users.info")) == len(PEOPLE)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_group_lookup_serves_the_last_members_for_a_bounded_time(bots, slack):
    slack.add_user(BOB, tz="UTC")
    slack.set_usergroup("SDATA", [BOB])
    bot = bots.start(policy=Policy(requesters=PersonSelector(usergroups=["SDATA"]), contact="#data"))
    clock = FakeClock()
    ttl = 60
    bot.runtime.flow.d.directory = SlackDirectory(
        bot.runtime.web_client, ttl=ttl, usergroups={"SDATA"}, clock=clock
    )
    bot.open_form(BOB)
    assert len(slack.calls("usergroups.users.list")) == 1

    slack.fail("usergroups.users.list", error="ratelimited")
    clock.now += ttl + 1
    _, view, _ = bot.open_form(BOB)  # Slack refused the refresh; the list from a minute ago still counts
    assert view["callback_id"] == views.CREATE_CALLBACK_ID
    failed = slack.calls("usergroups.users.list")
    assert len(failed) == 2 and failed[-1].response["error"] == "ratelimited"

    clock.now += MEMBERS_STALE_SECONDS  # now past the stale bound too: fail closed
    slack.reset()
    slack.fail("usergroups.users.list", error="ratelimited")
    response_url = slack.new_response_url()
    bot.sender.slash_command(BOB, response_url=response_url)
    [reply] = slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == response_url)
    assert "could not verify" in reply.args["text"]
    assert [c.args["view"]["callback_id"] for c in slack.calls("views.open")] == [views.LOADING_CALLBACK_ID]
    assert all(c.args["view"]["callback_id"] != views.CREATE_CALLBACK_ID for c in slack.calls("views.update"))


# --- the building blocks ------------------------------------------------------------------------------


def wait_until(condition, timeout: float = 10) -> None:
    done = threading.Event()
    for _ in range(int(timeout * 100)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached in time")


def test_single_flight_shares_one_call_and_its_error_then_forgets_it():
    flights: SingleFlight[int] = SingleFlight()
    release = threading.Event()
    calls = []
    outcomes: list[object] = []

    def slow_failure() -> int:
        calls.append(1)
        release.wait(10)
        raise LookupError("slack said no")

    def call() -> None:
        try:
            outcomes.append(flights.do("S1", slow_failure))
        except LookupError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=call) for _ in range(6)]
    threads[0].start()
    wait_until(lambda: calls)  # the leader is inside the load
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: flights.followers("S1") == 5)
    release.set()
    for thread in threads:
        thread.join(10)

    assert len(calls) == 1
    assert len(outcomes) == 6 and all(isinstance(o, LookupError) for o in outcomes)
    assert flights.followers("S1") == 0
    assert flights.do("S1", lambda: 7) == 7  # a finished flight, failed or not, is not remembered


@pytest.mark.parametrize(("age", "outcome"), [(59, "cached"), (61, "stale"), (360, "stale"), (361, "error")])
def test_a_failed_refresh_serves_the_old_value_only_within_the_stale_bound(age, outcome):
    clock = FakeClock()
    cache: TTLCache[str] = TTLCache(60, clock=clock, stale_for=300, stale_on=(LookupError,))
    cache.put("S1", "members")
    clock.now += age
    refreshes = []

    def refresh() -> str:
        refreshes.append(age)
        raise LookupError("down")

    if outcome == "error":
        with pytest.raises(LookupError):
            cache.get_or_load("S1", refresh)
    else:
        assert cache.get_or_load("S1", refresh) == "members"
    assert refreshes == ([] if outcome == "cached" else [age])


def test_other_errors_and_caches_without_a_stale_bound_fail_as_before():
    clock = FakeClock()
    strict: TTLCache[str] = TTLCache(60, clock=clock)
    lenient: TTLCache[str] = TTLCache(60, clock=clock, stale_for=300, stale_on=(LookupError,))
    for cache in (strict, lenient):
        cache.put("S1", "old")
    clock.now += 61

    def broken() -> str:
        raise ValueError("a bug, not an outage")

    def down() -> str:
        raise LookupError("down")

    with pytest.raises(ValueError):
        lenient.get_or_load("S1", broken)
    with pytest.raises(LookupError):
        strict.get_or_load("S1", down)
    assert strict.get_or_load("S1", lambda: "new") == "new"
