"""The pure decision `decide`: table tests, then properties that must hold for every input."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.models import AccountSpec, Requester, Role, Standing, Workspace
from bot.policy.access import FormField, RefusalReason, decide
from bot.policy.file import (
    ElevatedGrant,
    ExpiryPolicy,
    PersonSelector,
    Policy,
    PolicyError,
    ProjectPolicy,
    RateLimit,
    load_policy,
)

TODAY = date(2026, 11, 28)
HOME = Workspace(team_id="T1")


def member(user_id: str = "U1", *groups: str) -> Requester:
    return Requester(user_id=user_id, standing=Standing.MEMBER, usergroups=frozenset(groups), team_id="T1")


def spec(role: Role = Role.ANALYST, projects=(3001,), days: int | None = 30) -> AccountSpec:
    return AccountSpec(
        username="etl",
        role=role,
        project_ids=tuple(projects),
        expires_on=None if days is None else TODAY + timedelta(days=days),
    )


@pytest.mark.parametrize(
    ("standing", "reason"),
    [
        (Standing.GUEST, RefusalReason.NOT_A_MEMBER),
        (Standing.BOT, RefusalReason.NOT_A_MEMBER),
        (Standing.DEACTIVATED, RefusalReason.NOT_A_MEMBER),
        (Standing.MEMBER, None),
    ],
)
def test_only_full_members_pass_even_when_listed(standing, reason):
    policy = Policy(requesters=PersonSelector(users=["U1"]))
    requester = Requester(user_id="U1", standing=standing, team_id="T1")
    assert (
        decide(policy, requester, None, installation=HOME, today=TODAY, recent_creations=0).refusal == reason
    )


def test_unverifiable_people_are_refused():
    assert (
        decide(Policy(), None, spec(), installation=HOME, today=TODAY, recent_creations=0).refusal
        is RefusalReason.UNVERIFIED
    )


GRID = Workspace(team_id="T1", enterprise_id="E1")


@pytest.mark.parametrize(
    ("team", "enterprise", "stranger", "installation", "external_teams", "refusal"),
    [
        ("T1", None, False, HOME, [], None),
        ("T2", None, False, HOME, [], RefusalReason.EXTERNAL),
        ("T2", None, False, HOME, ["T2"], None),
        ("T2", None, False, HOME, ["T3", "E2"], RefusalReason.EXTERNAL),
        ("T1", None, True, HOME, [], RefusalReason.EXTERNAL),  # Slack Connect, whatever the team says
        ("T2", None, True, HOME, ["T2"], None),
        (None, None, False, HOME, [], RefusalReason.EXTERNAL),  # Slack did not say: not ours
        ("T2", "E1", False, GRID, [], None),  # another workspace of the same Grid organization
        ("T2", "E2", False, GRID, [], RefusalReason.EXTERNAL),
        ("T2", "E2", False, GRID, ["E2"], None),
        ("T2", None, False, Workspace(team_id=None, enterprise_id="E1"), [], RefusalReason.EXTERNAL),
    ],
)
def test_people_from_other_workspaces_pass_only_when_the_policy_names_their_team(
    team, enterprise, stranger, installation, external_teams, refusal
):
    requester = Requester(
        user_id="U1", standing=Standing.MEMBER, team_id=team, enterprise_id=enterprise, is_stranger=stranger
    )
    policy = Policy(external_teams=external_teams)
    for account in (None, spec()):
        decision = decide(
            policy, requester, account, installation=installation, today=TODAY, recent_creations=0
        )
        assert decision.refusal is refusal
        assert (decision.entitlement is None) is (refusal is not None)


def test_a_named_external_team_does_not_bypass_the_other_rules():
    guest = Requester(user_id="U1", standing=Standing.GUEST, team_id="T2")
    unlisted = Requester(user_id="U1", standing=Standing.MEMBER, team_id="T2")
    policy = Policy(external_teams=["T2"], requesters=PersonSelector(users=["U9"]))
    assert decide(policy, guest, None, installation=HOME, today=TODAY, recent_creations=0).refusal is (
        RefusalReason.NOT_A_MEMBER
    )
    assert decide(policy, unlisted, None, installation=HOME, today=TODAY, recent_creations=0).refusal is (
        RefusalReason.NOT_LISTED
    )


@pytest.mark.parametrize(
    ("requesters", "who", "allowed"),
    [
        (None, member("U9"), True),
        (PersonSelector(users=["U1"]), member("U1"), True),
        (PersonSelector(users=["U1"]), member("U2"), False),
        (PersonSelector(usergroups=["S1"]), member("U2", "S1"), True),
        (PersonSelector(usergroups=["S1"]), member("U2", "S2"), False),
        (PersonSelector(), member("U1"), False),
    ],
)
def test_requesters_list(requesters, who, allowed):
    decision = decide(
        Policy(requesters=requesters), who, None, installation=HOME, today=TODAY, recent_creations=0
    )
    assert (decision.refusal is None) is allowed
    if not allowed:
        assert decision.refusal is RefusalReason.NOT_LISTED


@pytest.mark.parametrize(
    ("groups", "role", "ok"),
    [
        ((), Role.ANALYST, True),
        ((), Role.ADMIN, False),
        (("SADMIN",), Role.ADMIN, True),
        (("SADMIN",), Role.OWNER, False),
        (("SOWNER",), Role.OWNER, True),
        (("SADMIN", "SOWNER"), Role.OWNER, True),
    ],
)
def test_role_ceiling_and_elevated_grants(groups, role, ok):
    policy = Policy(
        elevated=[
            ElevatedGrant(usergroups=["SADMIN"], max_role=Role.ADMIN),
            ElevatedGrant(usergroups=["SOWNER"], max_role=Role.OWNER),
        ]
    )
    decision = decide(
        policy, member("U1", *groups), spec(role=role), installation=HOME, today=TODAY, recent_creations=0
    )
    assert decision.allowed is ok
    if not ok:
        assert [v.field for v in decision.violations] == [FormField.ROLE]


def test_an_elevated_grant_never_lowers_the_ceiling():
    policy = Policy(max_role=Role.ADMIN, elevated=[ElevatedGrant(users=["U1"], max_role=Role.CONSUMER)])
    decision = decide(policy, member("U1"), None, installation=HOME, today=TODAY, recent_creations=0)
    assert decision.entitlement.max_role is Role.ADMIN


@pytest.mark.parametrize(
    ("allowed", "known", "chosen", "ok"),
    [
        (None, None, (1, 2), True),
        (None, [1, 2], (1, 2), True),
        (None, [1, 2], (3,), False),
        ([1], [1, 2], (1,), True),
        ([1], [1, 2], (1, 2), False),
        ([1], None, (2,), False),
        (None, [1], (), False),
    ],
)
def test_projects(allowed, known, chosen, ok):
    policy = Policy(projects=ProjectPolicy(allowed=allowed))
    decision = decide(
        policy,
        member(),
        spec(projects=chosen),
        installation=HOME,
        today=TODAY,
        recent_creations=0,
        known_project_ids=known,
    )
    assert decision.allowed is ok
    if not ok:
        assert {v.field for v in decision.violations} == {FormField.PROJECTS}


@pytest.mark.parametrize(
    ("max_days", "allow_never", "days", "ok"),
    [
        (365, False, 1, True),
        (365, False, 365, True),
        (365, False, 366, False),
        (365, False, 0, False),
        (365, False, -1, False),
        (365, False, None, False),
        (365, True, None, True),
        (7, True, 8, False),
        (7, True, 7, True),
    ],
)
def test_expiry(max_days, allow_never, days, ok):
    policy = Policy(expiry=ExpiryPolicy(max_days=max_days, allow_never=allow_never))
    decision = decide(policy, member(), spec(days=days), installation=HOME, today=TODAY, recent_creations=0)
    assert decision.allowed is ok
    if not ok:
        assert [v.field for v in decision.violations] == [FormField.EXPIRY]


@pytest.mark.parametrize(("recent", "ok"), [(0, True), (2, True), (3, False), (10, False)])
def test_rate_limit(recent, ok):
    policy = Policy(rate_limit=RateLimit(per_user_per_day=3))
    decision = decide(policy, member(), spec(), installation=HOME, today=TODAY, recent_creations=recent)
    assert decision.allowed is ok
    assert (decision.refusal is RefusalReason.RATE_LIMITED) is not ok


# --- properties ------------------------------------------------------------------------------------

roles = st.sampled_from(list(Role))
group_ids = st.sampled_from(["S1", "S2", "S3"])
user_ids = st.sampled_from(["U1", "U2", "U3"])

policies = st.builds(
    Policy,
    requesters=st.none()
    | st.builds(PersonSelector, users=st.lists(user_ids), usergroups=st.lists(group_ids)),
    max_role=roles,
    elevated=st.lists(
        st.builds(ElevatedGrant, users=st.lists(user_ids), usergroups=st.lists(group_ids), max_role=roles),
        max_size=3,
    ),
    expiry=st.builds(ExpiryPolicy, max_days=st.integers(1, 3650), allow_never=st.booleans()),
    projects=st.builds(ProjectPolicy, allowed=st.none() | st.lists(st.integers(1, 6), max_size=4)),
    rate_limit=st.builds(RateLimit, per_user_per_day=st.integers(1, 20)),
    external_teams=st.lists(st.sampled_from(["T1", "T2", "E1", "E2"]), max_size=2),
)
requesters = st.builds(
    Requester,
    user_id=user_ids,
    standing=st.sampled_from(list(Standing)),
    usergroups=st.frozensets(group_ids),
    team_id=st.sampled_from(["T1", "T1", "T2", None]),
    enterprise_id=st.sampled_from([None, None, "E1", "E2"]),
    is_stranger=st.sampled_from([False, False, False, True]),
)
installations = st.builds(
    Workspace, team_id=st.sampled_from(["T1", "T2", None]), enterprise_id=st.sampled_from([None, "E1"])
)
specs = st.builds(
    AccountSpec,
    username=st.just("etl"),
    role=roles,
    project_ids=st.lists(st.integers(1, 6), max_size=4, unique=True).map(tuple),
    expires_on=st.none() | st.integers(-10, 4000).map(lambda d: TODAY + timedelta(days=d)),
)


@given(policies, requesters, specs, st.integers(0, 30))
def test_a_guest_bot_or_deactivated_user_is_never_allowed(policy, requester, account, recent):
    decision = decide(policy, requester, account, installation=HOME, today=TODAY, recent_creations=recent)
    if requester.standing is not Standing.MEMBER:
        assert not decision.allowed and decision.entitlement is None


@given(policies, requesters, specs, installations, st.integers(0, 30))
def test_an_external_requester_not_allowed_by_policy_is_never_allowed(
    policy, requester, account, installation, recent
):
    same_team = requester.team_id is not None and requester.team_id == installation.team_id
    same_org = requester.enterprise_id is not None and requester.enterprise_id == installation.enterprise_id
    external = requester.is_stranger or not (same_team or same_org)
    named = {requester.team_id, requester.enterprise_id} & set(policy.external_teams)
    for asked in (None, account):
        decision = decide(
            policy, requester, asked, installation=installation, today=TODAY, recent_creations=recent
        )
        if external and not named:
            assert not decision.allowed and decision.entitlement is None
            assert decision.refusal is RefusalReason.EXTERNAL


@given(policies, requesters, specs, st.integers(0, 30))
def test_a_role_above_every_applicable_ceiling_is_never_allowed(policy, requester, account, recent):
    ceilings = [policy.max_role] + [g.max_role for g in policy.elevated if g.matches(requester)]
    decision = decide(policy, requester, account, installation=HOME, today=TODAY, recent_creations=recent)
    if all(account.role.rank > ceiling.rank for ceiling in ceilings):
        assert not decision.allowed


@given(policies, requesters, specs, st.integers(0, 30))
def test_allowed_means_every_limit_holds(policy, requester, account, recent):
    decision = decide(
        policy,
        requester,
        account,
        installation=HOME,
        today=TODAY,
        recent_creations=recent,
        known_project_ids=range(1, 5),
    )
    if decision.allowed:
        assert requester.standing is Standing.MEMBER
        assert requester.belongs_to(HOME) or policy.admits_external(requester)
        assert policy.requesters is None or policy.requesters.matches(requester)
        assert recent < policy.rate_limit.per_user_per_day
        assert account.project_ids and set(account.project_ids) <= set(range(1, 5))
        if policy.projects.allowed is not None:
            assert set(account.project_ids) <= set(policy.projects.allowed)
        if account.expires_on is None:
            assert policy.expiry.allow_never
        else:
            assert TODAY < account.expires_on <= TODAY + timedelta(days=policy.expiry.max_days)


@given(policies, requesters, specs, st.integers(0, 30))
def test_the_form_offers_exactly_what_submission_accepts(policy, requester, account, recent):
    """Command time and submission time agree: every offered role passes, every other role fails."""
    at_command = decide(policy, requester, None, installation=HOME, today=TODAY, recent_creations=recent)
    at_submit = decide(policy, requester, account, installation=HOME, today=TODAY, recent_creations=recent)
    assert at_command.refusal == at_submit.refusal
    if at_command.entitlement is not None and at_submit.refusal is None:
        role_refused = any(v.field is FormField.ROLE for v in at_submit.violations)
        assert role_refused is (account.role not in at_command.entitlement.roles)


# --- the policy file --------------------------------------------------------------------------------


def test_example_policy_file_loads():
    policy = load_policy(Path(__file__).parents[1] / "policy.example.yml")
    assert policy.contact


def test_missing_file_means_conservative_defaults():
    policy = load_policy(None)
    assert policy.max_role is Role.ANALYST
    assert policy.expiry.max_days == 365 and policy.expiry.allow_never is False
    assert policy.requesters is None and policy.audit_channel is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("max_rol: admin\n", "max_rol: unknown key"),
        ("expiry:\n  max_dayz: 3\n", "expiry.max_dayz: unknown key"),
        ("max_role: superuser\n", "max_role"),
        ("expiry:\n  max_days: 0\n", "expiry.max_days"),
        ("requesters:\n  users: [alice]\n", "requesters.users"),
        ("audit_channel: general\n", "audit_channel"),
        ("external_teams: [acme]\n", "external_teams"),
        ("external_team: [T0123]\n", "external_team: unknown key"),
        ("- just\n- a list\n", "mapping"),
        ("max_role: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_policy_names_the_key(tmp_path, text, named):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert named in str(raised.value)
    assert str(path) in str(raised.value)


def test_every_list_of_people_and_every_channel_is_found_with_its_key():
    policy = Policy(
        requesters=PersonSelector(users=["U1"], usergroups=["S1"]),
        elevated=[
            ElevatedGrant(users=["U2"], max_role=Role.ADMIN),
            ElevatedGrant(usergroups=["S2"], max_role=Role.ADMIN),
        ],
        audit_channel="C0AUDIT",
    )
    found = {key: (selector.users, selector.usergroups) for key, selector in policy.selectors()}
    assert found == {
        "requesters": (["U1"], ["S1"]),
        "elevated.0": (["U2"], []),
        "elevated.1": ([], ["S2"]),
    }
    assert policy.channels() == {"audit_channel": "C0AUDIT"}
    assert Policy().selectors() == [] and Policy().channels() == {}
