"""The rotation's pure parts: the state machine (Hypothesis walks), the schedule, the successor's spec, the
old account's fate, and the policy's `rotation:` block."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.db.schema import RequestState, StoredRequest
from bot.models import Role
from bot.policy.file import DeleteOld, Policy, PolicyError, RotationSettings, load_policy
from bot.rotate.schedule import (
    CAP_WARNING,
    Fate,
    due_at,
    is_due,
    old_account_plan,
    on_schedule,
    rotation_settings,
    successor_spec,
)
from bot.rotate.states import (
    FINISHED,
    TRANSITIONS,
    IllegalTransition,
    RotationState,
    check_move,
    sources_of,
)

NOW = datetime.now(UTC)
states = st.sampled_from(list(RotationState))


def walks(start: RotationState = RotationState.DUE, max_size: int = 30):
    """Random walks through the allowed moves, from `start`."""

    @st.composite
    def walk(draw):
        path = [start]
        for _ in range(draw(st.integers(0, max_size))):
            targets = sorted(TRANSITIONS[path[-1]])
            if not targets:
                break
            path.append(draw(st.sampled_from(targets)))
        return path

    return walk()


@given(walks())
def test_the_old_account_is_deleted_only_after_the_current_successor_was_verified(path):
    for index, state in enumerate(path):
        if state is RotationState.OLD_DELETED:
            since_last_successor = path[: index + 1]
            last_created = max(
                i for i, s in enumerate(since_last_successor) if s is RotationState.SUCCESSOR_CREATED
            )
            assert RotationState.VERIFIED in since_last_successor[last_created:]
            assert path[index - 1] is RotationState.OVERLAPPING


@given(walks())
def test_a_lost_or_failed_successor_leaves_the_rotation_where_a_new_one_is_made(path):
    """After FAILED or a lost token (back to DUE), the next state with a live successor is a fresh create."""
    for earlier, later in itertools.pairwise(path):
        if later is RotationState.SUCCESSOR_CREATED:
            assert earlier in (RotationState.DUE, RotationState.WAITING_FOR_APPROVAL)


@given(states)
def test_every_state_can_reach_an_end(state):
    seen, frontier = {state}, [state]
    while frontier:
        for target in TRANSITIONS[frontier.pop()]:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen & FINISHED


@given(states, states)
def test_check_move_agrees_with_the_table(source, target):
    if target in TRANSITIONS[source]:
        check_move(source, target)
        assert source in sources_of(target)
    else:
        with pytest.raises(IllegalTransition):
            check_move(source, target)


def test_finished_states_have_no_way_out():
    assert {RotationState.OLD_DELETED, RotationState.OLD_KEPT} == FINISHED


def request(
    *,
    created_days_ago: float = 80,
    expires_in_days: float | None = 10,
    destination: str | None = "etl-vault",
    state: RequestState = RequestState.DELIVERED,
) -> StoredRequest:
    return StoredRequest(
        id="r1",
        requester_id="UALICE",
        team_id="T1",
        channel_id=None,
        username="etl-nightly",
        role=Role.ANALYST,
        project_ids=(3001,),
        expires_at=None if expires_in_days is None else NOW + timedelta(days=expires_in_days),
        state=state,
        mixpanel_account_id=7,
        mixpanel_username="etl-nightly.abc.mp-service-account",
        created_at=NOW - timedelta(days=created_days_ago),
        destination=destination,
        secret_name="etl-nightly" if destination else None,
    )


VAULT_POLICY = {
    "destinations": [
        {"name": "etl-vault", "kind": "vault_kv2", "url": "http://127.0.0.1:1", "mount": "secret"}
    ]
}


def policy_with(**rotation) -> Policy:
    return Policy.model_validate({**VAULT_POLICY, "rotation": rotation})


@pytest.mark.parametrize(
    ("expires_in", "days_before", "due"),
    [(20, 14, False), (14.5, 14, False), (13.9, 14, True), (1, 14, True)],
)
def test_an_account_is_due_days_before_expiry_before_it_expires(expires_in, days_before, due):
    policy = policy_with(days_before_expiry=days_before)
    assert is_due(policy, request(expires_in_days=expires_in), NOW) is due


def test_accounts_without_a_destination_or_not_delivered_are_never_due():
    policy = policy_with()
    assert not is_due(policy, request(destination=None, expires_in_days=1), NOW)
    assert not is_due(policy, request(state=RequestState.CLOSED, expires_in_days=1), NOW)
    assert not is_due(policy_with(enabled=False), request(expires_in_days=1), NOW)


@pytest.mark.parametrize(
    ("policy", "account", "stopped", "counted"),
    [
        (policy_with(), request(), False, True),
        (policy_with(), request(), True, False),  # its rotation failed
        (policy_with(enabled=False), request(), False, False),
        (policy_with(), request(destination=None), False, False),
        (policy_with(), request(expires_in_days=None), False, False),  # never expires, no every_days
        (policy_with(every_days=30), request(expires_in_days=None), False, True),
    ],
)
def test_the_posture_counts_as_on_schedule_what_the_bot_rotates_and_has_not_stopped(
    policy, account, stopped, counted
):
    assert on_schedule(policy, account, stopped=stopped) is counted


def test_a_non_expiring_account_is_rotated_every_days_if_the_policy_says_so():
    old = request(expires_in_days=None, created_days_ago=31)
    assert not is_due(policy_with(), old, NOW)
    assert is_due(policy_with(every_days=30), old, NOW)
    assert not is_due(policy_with(every_days=40), old, NOW)


def test_a_destination_overrides_the_global_rules_key_by_key():
    policy = policy_with(
        days_before_expiry=20, overlap_hours=6, destinations={"etl-vault": {"overlap_hours": 48}}
    )
    settings = rotation_settings(policy, request())
    assert settings is not None
    assert (settings.days_before_expiry, settings.overlap_hours) == (20, 48)
    assert due_at(request(), settings) == request().expires_at - timedelta(days=20)


def test_the_successor_lives_as_long_as_the_old_one_did_capped_by_todays_maximum():
    old = request(created_days_ago=80, expires_in_days=10)  # a 90-day account
    spec = successor_spec(Policy.model_validate(VAULT_POLICY), old, NOW)
    assert spec.expires_on == (NOW + timedelta(days=90)).date()
    assert (spec.username, spec.role, spec.project_ids) == (old.username, old.role, old.project_ids)
    assert (spec.destination, spec.secret_name) == (old.destination, old.secret_name)
    capped = successor_spec(Policy.model_validate({**VAULT_POLICY, "expiry": {"max_days": 30}}), old, NOW)
    assert capped.expires_on == (NOW + timedelta(days=30)).date()
    assert successor_spec(Policy(), request(expires_in_days=None), NOW).expires_on is None


def plan(settings: RotationSettings, *, hours_since_verified: float, last_used_hours_ago=None, **kwargs):
    verified = NOW - timedelta(hours=hours_since_verified)
    last_used = None if last_used_hours_ago is None else NOW - timedelta(hours=last_used_hours_ago)
    return old_account_plan(
        settings,
        verified_at=verified,
        kept_until=kwargs.get("kept_until"),
        last_used=last_used,
        warned=kwargs.get("warned", False),
        now=NOW,
    )


def test_after_overlap_deletes_once_the_overlap_has_passed_and_not_before_a_kept_date():
    settings = RotationSettings(overlap_hours=24)
    assert plan(settings, hours_since_verified=23).fate is Fate.WAIT
    assert plan(settings, hours_since_verified=23).delete_at == NOW + timedelta(hours=1)
    assert plan(settings, hours_since_verified=25).fate is Fate.DELETE
    kept = plan(settings, hours_since_verified=25, kept_until=NOW + timedelta(hours=3))
    assert (kept.fate, kept.delete_at) == (Fate.WAIT, NOW + timedelta(hours=3))


def test_never_keeps_the_old_account():
    assert plan(RotationSettings(delete_old=DeleteOld.NEVER), hours_since_verified=1000).fate is Fate.KEEP


def test_when_unused_waits_for_last_used_to_stand_still_then_warns_then_the_cap_deletes():
    settings = RotationSettings(delete_old=DeleteOld.WHEN_UNUSED, overlap_hours=24, unused_cap_hours=72)
    assert plan(settings, hours_since_verified=25, last_used_hours_ago=1).fate is Fate.WAIT
    assert plan(settings, hours_since_verified=25, last_used_hours_ago=30).fate is Fate.DELETE
    assert plan(settings, hours_since_verified=25).fate is Fate.DELETE  # never used at all
    near_cap = 72 - CAP_WARNING.total_seconds() / 3600 + 1
    assert plan(settings, hours_since_verified=near_cap, last_used_hours_ago=1).fate is Fate.WARN
    assert plan(settings, hours_since_verified=near_cap, last_used_hours_ago=1, warned=True).fate is Fate.WAIT
    assert plan(settings, hours_since_verified=73, last_used_hours_ago=0).fate is Fate.DELETE


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("rotation:\n  overlap_hours: 0\n", "rotation.overlap_hours"),
        ("rotation:\n  delete_old: sometimes\n", "rotation.delete_old"),
        ("rotation:\n  every_day: 3\n", "rotation.every_day: unknown key"),
        ("rotation:\n  destinations:\n    nowhere: {overlap_hours: 2}\n", "names no destination: nowhere"),
    ],
)
def test_the_rotation_block_is_strict(tmp_path: Path, text, named):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert named in str(raised.value)


def test_rotation_defaults():
    rotation = Policy().rotation
    assert (rotation.days_before_expiry, rotation.every_days, rotation.overlap_hours) == (14, None, 24)
    assert rotation.delete_old is DeleteOld.AFTER_OVERLAP
