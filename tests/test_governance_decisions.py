"""Governance's pure decisions: the policy block, idle, the deletion countdown, reviews, takeovers and the
posture counts. Tables and Hypothesis properties; the flows are tested through the wire elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.db.schema import RequestState, StoredRequest
from bot.govern.idle import CountdownStep, countdown_step, idle_period, is_idle, last_activity
from bot.govern.leavers import TakeoverRefusal, has_left, takeover_refusal
from bot.govern.posture import POSTURE_LABELS, AccountFacts, posture, posture_lines, trend
from bot.govern.reviews import Overdue, next_review_period, overdue_step
from bot.models import Requester, Role, Standing, Workspace
from bot.policy.file import GovernancePolicy, PersonSelector, Policy, PolicyError, load_policy

NOW = datetime.now(UTC)
DAY = timedelta(days=1)
HERE = Workspace(team_id="T1", enterprise_id=None)


def test_the_governance_block_is_off_by_default():
    governance = Policy().governance
    assert governance.idle_days is None and governance.idle_action == "notify"
    assert governance.idle_delete_after_days is None
    assert governance.successor is None and governance.orphan_days == 14
    assert governance.unmanaged == "report"
    assert governance.review_every_days is None and governance.review_action == "report"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("governance:\n  idle_dayz: 3\n", "unknown key"),
        ("governance:\n  idle_action: delete\n", "governance.idle_action"),
        ("governance:\n  idle_action: {delete_after_days: 1}\n", "greater than or equal to 2"),
        ("governance:\n  idle_action: {delete_after_days: 5, extra: 1}\n", "unknown key"),
        ("governance:\n  successor: marketing\n", "governance.successor"),
        ("governance:\n  unmanaged: delete\n", "governance.unmanaged"),
        ("governance:\n  review_every_days: 1\n", "greater than or equal to 7"),
        ("governance:\n  review_action: disable\n", "governance.review_action"),
    ],
)
def test_the_governance_block_is_strict(tmp_path, text, problem):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=problem):
        load_policy(path)


def test_a_full_governance_block_loads_and_its_successor_group_is_looked_up(tmp_path):
    path = tmp_path / "policy.yml"
    path.write_text(
        "governance:\n  idle_days: 30\n  idle_action: {delete_after_days: 7}\n  successor: S0DATA\n"
        "  orphan_days: 3\n  unmanaged: notify\n  review_every_days: 90\n  review_grace_days: 10\n"
        "  review_action: delete\n"
    )
    policy = load_policy(path)
    assert policy.governance.idle_delete_after_days == 7
    assert "S0DATA" in policy.usergroups_in_use()


@pytest.mark.parametrize(
    ("last_used", "created", "kept", "idle_days", "idle"),
    [
        (None, None, None, 30, False),  # nothing known: never idle
        (NOW - 31 * DAY, None, None, None, False),  # off
        (NOW - 31 * DAY, NOW - 400 * DAY, None, 30, True),
        (NOW - 30 * DAY, NOW - 400 * DAY, None, 30, False),  # exactly idle_days: not yet
        (None, NOW - 31 * DAY, None, 30, True),  # never used and old
        (None, NOW - 2 * DAY, None, 30, False),  # never used but new
        (NOW - 90 * DAY, NOW - 400 * DAY, NOW - 10 * DAY, 30, False),  # kept: counts as used
        (NOW - 90 * DAY, NOW - 400 * DAY, NOW - 31 * DAY, 30, True),  # the keep has run out
        (NOW - DAY, NOW - 400 * DAY, NOW - 300 * DAY, 30, False),  # an old keep never hides a use
    ],
)
def test_which_accounts_are_idle(last_used, created, kept, idle_days, idle):
    assert is_idle(last_used, created, kept, now=NOW, idle_days=idle_days) is idle


def test_a_use_or_a_keep_starts_a_new_idle_period():
    used = NOW - 40 * DAY
    first = idle_period(used, NOW - 400 * DAY, None)
    assert idle_period(used, NOW - 400 * DAY, None) == first
    assert idle_period(used, NOW - 400 * DAY, NOW - DAY) != first
    assert idle_period(NOW - 2 * DAY, NOW - 400 * DAY, None) != first


moments = st.one_of(st.none(), st.integers(0, 4000).map(lambda days: NOW - timedelta(days=days)))


@given(moments, moments, moments, st.integers(1, 3650))
def test_idle_means_no_sign_of_life_for_idle_days(last_used, created, kept, idle_days):
    idle = is_idle(last_used, created, kept, now=NOW, idle_days=idle_days)
    activity = last_activity(last_used, created, kept)
    assert idle == (activity is not None and NOW - activity > timedelta(days=idle_days))
    if last_used is not None:
        assert activity is not None and activity >= last_used  # a use always counts


@pytest.mark.parametrize(
    ("since_start", "warned_ago", "step"),
    [
        (timedelta(days=3), None, CountdownStep.WAIT),
        (timedelta(days=6), None, CountdownStep.WARN),  # a day before the 7-day deadline
        (timedelta(days=6), timedelta(0), CountdownStep.WAIT),
        (timedelta(days=7), timedelta(days=1), CountdownStep.DELETE),
        (timedelta(days=20), None, CountdownStep.WARN),  # late: warn first, never delete unwarned
        (timedelta(days=20), timedelta(hours=23), CountdownStep.WAIT),  # a full day after the warning
        (timedelta(days=20), timedelta(days=1), CountdownStep.DELETE),
    ],
)
def test_the_deletion_countdown_warns_a_day_before(since_start, warned_ago, step):
    started = NOW - since_start
    warned = None if warned_ago is None else NOW - warned_ago
    assert countdown_step(started, warned, now=NOW, after=timedelta(days=7)) is step


@given(st.integers(0, 100 * 24), st.one_of(st.none(), st.integers(0, 100 * 24)), st.integers(2, 60))
def test_nothing_is_deleted_without_a_warning_a_day_earlier(hours_since_start, warned_hours_ago, days):
    started = NOW - timedelta(hours=hours_since_start)
    warned = None if warned_hours_ago is None else NOW - timedelta(hours=warned_hours_ago)
    step = countdown_step(started, warned, now=NOW, after=timedelta(days=days))
    if step is CountdownStep.DELETE:
        assert warned is not None and NOW - warned >= timedelta(days=1)
        assert NOW - started >= timedelta(days=days)


def test_review_periods_are_shared_and_overdue_answers_follow_the_action():
    assert next_review_period(None, NOW, 90) == 0  # an owner's first round is due at once
    assert next_review_period((0, NOW - timedelta(days=89)), NOW, 90) is None
    assert next_review_period((0, NOW - timedelta(days=90)), NOW, 90) == 1
    started = NOW - timedelta(days=15)
    assert overdue_step(started, None, now=NOW, grace_days=14, action="report") is Overdue.REPORT
    assert overdue_step(NOW, None, now=NOW, grace_days=14, action="report") is Overdue.NOT_YET
    assert overdue_step(started, None, now=NOW, grace_days=14, action="delete") is Overdue.WARN
    assert overdue_step(started, NOW - DAY, now=NOW, grace_days=14, action="delete") is Overdue.DELETE


@pytest.mark.parametrize(
    ("user", "left"),
    [
        ({"id": "U1", "deleted": True}, True),
        ({"id": "U1", "is_restricted": True}, True),
        ({"id": "U1", "is_ultra_restricted": True}, True),
        ({"id": "U1"}, False),
        ({"id": "U1", "deleted": False, "is_restricted": False}, False),
    ],
)
def test_who_has_left(user, left):
    assert has_left(user) is left


def request_of(role: Role = Role.ANALYST, projects=(3001,), expires: datetime | None = None) -> StoredRequest:
    return StoredRequest(
        id="r1",
        requester_id="UGONE",
        team_id="T1",
        channel_id=None,
        username="etl",
        role=role,
        project_ids=tuple(projects),
        expires_at=expires if expires is not None else NOW + 30 * DAY,
        state=RequestState.DELIVERED,
        mixpanel_account_id=7001,
        mixpanel_username="etl.x.mp-service-account",
        created_at=NOW - 100 * DAY,
    )


def person(user_id: str = "UCAROL", groups=(), standing=Standing.MEMBER) -> Requester:
    return Requester(user_id, standing, frozenset(groups), team_id="T1")


SUCCESSORS = Policy(admins=PersonSelector(users=["UADMIN"]), governance=GovernancePolicy(successor="S0DATA"))


@pytest.mark.parametrize(
    ("policy", "who", "stored", "is_open", "refusal"),
    [
        (SUCCESSORS, person(groups=["S0DATA"]), request_of(), True, None),
        (SUCCESSORS, person(groups=["S0DATA"]), request_of(), False, TakeoverRefusal.NOT_OPEN),
        (SUCCESSORS, person(), request_of(), True, TakeoverRefusal.NOT_A_CANDIDATE),
        (SUCCESSORS, person("UADMIN"), request_of(), True, None),  # admins are always offered it
        (Policy(), person(groups=["S0DATA"]), request_of(), True, TakeoverRefusal.NOT_A_CANDIDATE),
        (SUCCESSORS, person(groups=["S0DATA"], standing=Standing.GUEST), request_of(), True, "candidate"),
        (SUCCESSORS, None, request_of(), True, TakeoverRefusal.NOT_A_CANDIDATE),
        # Above the person's ceiling (analyst by default): they could not request it today.
        (SUCCESSORS, person(groups=["S0DATA"]), request_of(Role.ADMIN), True, TakeoverRefusal.POLICY),
        (SUCCESSORS, person(groups=["S0DATA"]), request_of(expires=NOW + 900 * DAY), True, "policy"),
    ],
)
def test_who_may_take_over(policy, who, stored, is_open, refusal):
    if refusal == "candidate":
        refusal = TakeoverRefusal.NOT_A_CANDIDATE
    if refusal == "policy":
        refusal = TakeoverRefusal.POLICY
    today = NOW.date()
    assert takeover_refusal(policy, who, stored, is_open=is_open, installation=HERE, today=today) == refusal


def test_the_posture_counts_each_fact():
    facts = [
        AccountFacts(expires_at=NOW + 3 * DAY, owner_active=True),
        AccountFacts(expires_at=None, owner_active=True, idle=True),
        AccountFacts(expires_at=NOW + 20 * DAY, unmanaged=True),
        AccountFacts(expires_at=NOW + 14 * DAY, without_owner=True, idle=True),
        AccountFacts(expires_at=None, unmanaged=True),
    ]
    counts = posture(facts, now=NOW)
    assert counts == {
        "live": 5,
        "owned_by_active_member": 2,
        "in_destination": 0,
        "rotated_on_schedule": 0,
        "idle": 2,
        "unmanaged": 2,
        "without_owner": 1,
        "expiring_within_14_days": 2,
        "never_expiring": 2,
    }
    assert set(counts) == set(POSTURE_LABELS)
    earlier = {**counts, "idle": 5}
    assert trend(counts, earlier)["idle"] == -3 and trend(counts, None)["idle"] is None
    assert "2 idle (-3)" in posture_lines(counts, earlier)


@given(st.lists(st.builds(AccountFacts, expires_at=moments, owner_active=st.booleans(), idle=st.booleans())))
def test_no_count_exceeds_the_live_accounts(facts):
    counts = posture(facts, now=NOW)
    assert all(0 <= value <= counts["live"] for value in counts.values())
    assert counts["never_expiring"] + counts["expiring_within_14_days"] <= counts["live"]


@given(st.integers(0, 400 * 24), st.one_of(st.none(), st.integers(0, 400 * 24)), st.integers(1, 60))
def test_an_unanswered_review_is_never_acted_on_within_its_grace(hours_since_start, warned_hours_ago, grace):
    started = NOW - timedelta(hours=hours_since_start)
    warned = None if warned_hours_ago is None else NOW - timedelta(hours=warned_hours_ago)
    for action in ("report", "delete"):
        step = overdue_step(started, warned, now=NOW, grace_days=grace, action=action)
        if step in (Overdue.REPORT, Overdue.DELETE):
            assert NOW - started >= timedelta(days=grace)
        if action == "report":
            assert step in (Overdue.REPORT, Overdue.NOT_YET)


@given(st.integers(0, 10**9), st.integers(0, 1000), st.integers(7, 3650), st.integers(0, 10**8))
def test_a_round_follows_the_last_one_only_after_a_whole_period(seconds, period, every_days, later):
    started = datetime.fromtimestamp(seconds, UTC)
    following = next_review_period((period, started), started + timedelta(seconds=later), every_days)
    assert (following is None) == (later < every_days * 86400)
    assert following in (None, period + 1)


@pytest.mark.parametrize(
    ("destination", "secret", "warned"),
    [("etl-vault", "etl-nightly", True), (None, None, False)],
)
def test_a_deletion_warning_and_notice_say_when_a_machine_reads_the_token_from_a_store(
    destination, secret, warned
):
    from dataclasses import replace

    from bot.govern.messages import deleted_notice, deletion_warning
    from bot.manage.accounts import AccountEntry, Presence

    request = replace(request_of(), destination=destination, secret_name=secret)
    entry = AccountEntry(7001, "etl.abc.mp-service-account", Presence.LIVE, request, None, None, NOW)
    for message in (deletion_warning(entry, why="idle", when=NOW + DAY), deleted_notice(entry, why="idle")):
        said = message["text"]
        assert ("etl-vault, secret etl-nightly" in said and "stops working" in said) is warned
        assert ("secret store" in said) is warned
