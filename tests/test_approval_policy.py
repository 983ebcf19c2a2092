"""The `approval:` policy block and the "needs approval" answer of the pure `decide`."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.models import AccountSpec, Requester, Role, Standing, Workspace
from bot.policy.access import ApprovalTrigger, decide, entitlement_for
from bot.policy.file import (
    ApprovalPolicy,
    ApprovalTriggers,
    ExpiryPolicy,
    PersonSelector,
    Policy,
    PolicyError,
    ProjectPolicy,
    load_policy,
)

TODAY = date(2026, 11, 28)
SENSITIVE = 4001


HOME = Workspace(team_id="T1")


def member(user_id: str = "U1") -> Requester:
    return Requester(user_id=user_id, standing=Standing.MEMBER, team_id=HOME.team_id)


def spec(role: Role = Role.ANALYST, projects=(3001,), days: int | None = 30) -> AccountSpec:
    return AccountSpec(
        username="etl",
        role=role,
        project_ids=tuple(projects),
        expires_on=None if days is None else TODAY + timedelta(days=days),
    )


def approving_policy(**triggers) -> Policy:
    return Policy(
        max_role=Role.ADMIN,
        expiry=ExpiryPolicy(max_days=365, allow_never=True),
        approval=ApprovalPolicy(
            required_for=ApprovalTriggers(**triggers), approvers=PersonSelector(users=["UAPPROVER"])
        ),
    )


FULL = {"roles": [Role.ADMIN], "projects": [SENSITIVE], "expiry_over_days": 90, "never_expires": True}


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        (spec(), ()),
        (spec(role=Role.ADMIN), (ApprovalTrigger.ROLE,)),
        (spec(projects=(3001, SENSITIVE)), (ApprovalTrigger.PROJECT,)),
        (spec(days=90), ()),
        (spec(days=91), (ApprovalTrigger.LONG_EXPIRY,)),
        (spec(days=None), (ApprovalTrigger.NEVER_EXPIRES,)),
        (
            spec(role=Role.ADMIN, projects=(SENSITIVE,), days=None),
            (ApprovalTrigger.ROLE, ApprovalTrigger.PROJECT, ApprovalTrigger.NEVER_EXPIRES),
        ),
    ],
)
def test_decide_says_which_rule_needs_approval(account, expected):
    decision = decide(
        approving_policy(**FULL), member(), account, installation=HOME, today=TODAY, recent_creations=0
    )
    assert decision.allowed
    assert decision.needs_approval == expected


def test_without_an_approval_block_nothing_needs_approval():
    policy = Policy(max_role=Role.ADMIN, expiry=ExpiryPolicy(allow_never=True))
    decision = decide(
        policy, member(), spec(role=Role.ADMIN, days=None), installation=HOME, today=TODAY, recent_creations=0
    )
    assert decision.allowed and decision.needs_approval == ()


def test_a_forbidden_request_is_refused_not_sent_for_approval():
    policy = approving_policy(**FULL).model_copy(update={"max_role": Role.ANALYST})
    decision = decide(
        policy, member(), spec(role=Role.ADMIN), installation=HOME, today=TODAY, recent_creations=0
    )
    assert not decision.allowed
    assert decision.needs_approval == ()


@pytest.mark.parametrize(
    ("triggers", "policy_changes", "may_need"),
    [
        ({}, {}, False),
        ({"roles": [Role.ADMIN]}, {}, True),
        ({"roles": [Role.ADMIN]}, {"max_role": Role.ANALYST}, False),
        ({"projects": [SENSITIVE]}, {}, True),
        ({"projects": [SENSITIVE]}, {"projects": ProjectPolicy(allowed=[3001])}, False),
        ({"expiry_over_days": 90}, {}, True),
        ({"expiry_over_days": 365}, {}, False),
        ({"never_expires": True}, {}, True),
        ({"never_expires": True}, {"expiry": ExpiryPolicy(allow_never=False)}, False),
    ],
)
def test_the_form_asks_for_a_reason_only_from_people_who_may_pick_such_values(
    triggers, policy_changes, may_need
):
    policy = approving_policy(**triggers).model_copy(update=policy_changes)
    assert entitlement_for(policy, member()).may_need_approval is may_need


@given(
    role=st.sampled_from(list(Role)),
    projects=st.lists(st.sampled_from([3001, 3002, SENSITIVE]), min_size=1, max_size=3, unique=True),
    days=st.one_of(st.none(), st.integers(min_value=1, max_value=365)),
)
def test_approval_is_needed_exactly_when_some_rule_holds(role, projects, days):
    policy = approving_policy(**FULL).model_copy(update={"max_role": Role.OWNER})
    account = spec(role=role, projects=projects, days=days)
    decision = decide(policy, member(), account, installation=HOME, today=TODAY, recent_creations=0)
    holds = role is Role.ADMIN or SENSITIVE in projects or days is None or days > 90
    assert decision.allowed
    assert bool(decision.needs_approval) is holds
    # Whenever an account needs approval, its requester was shown the reason field.
    if holds:
        assert decision.entitlement.may_need_approval


def write(tmp_path, text: str):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    return path


def test_a_full_approval_block_loads(tmp_path):
    policy = load_policy(
        write(
            tmp_path,
            """
max_role: admin
approval:
  required_for: {roles: [admin], projects: [4001], expiry_over_days: 90, never_expires: true}
  approvers: {users: [UAPPROVER, UOTHER], usergroups: []}
  approvals_needed: 2
  channel: C0APPROVALS
  request_ttl_hours: 24
  remind_after_hours: 4
  claim_ttl_hours: 72
  break_glass: true
""",
        )
    )
    assert policy.approval.approvals_needed == 2
    assert policy.approval.required_for.roles == [Role.ADMIN]
    assert policy.approval.break_glass


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("approvers: {users: []}", "approval.approvers: names nobody"),
        ("approvers: {users: [UA]}\n  approvals_needed: 2", "approval.approvals_needed: is 2, but"),
        ("approvers: {users: [UA, UA]}\n  approvals_needed: 2", "lists only 1 people"),
        ("approvers: {users: [UA]}\n  aprovals_needed: 1", "approval.aprovals_needed: unknown key"),
        (
            "approvers: {users: [UA]}\n  required_for: {role: [admin]}",
            "approval.required_for.role: unknown key",
        ),
        ("approvals_needed: 1", "approval.approvers: Field required"),
    ],
)
def test_approval_that_could_never_succeed_names_the_key(tmp_path, block, problem):
    with pytest.raises(PolicyError) as raised:
        load_policy(write(tmp_path, f"approval:\n  {block}\n"))
    assert problem in str(raised.value)


def test_approver_groups_are_looked_up():
    policy = Policy(approval=ApprovalPolicy(approvers=PersonSelector(usergroups=["SAPPROVERS"])))
    assert "SAPPROVERS" in policy.usergroups_in_use()


@pytest.mark.subprocess
def test_the_app_refuses_to_start_when_approval_could_never_succeed(tmp_path):
    from tests.test_startup import run_app

    write(tmp_path, "approval:\n  approvers: {users: [UA]}\n  approvals_needed: 2\n")
    result = run_app(
        {
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "s",
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "u",
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": "p",
            "SLACK_API_URL": "http://127.0.0.1:9/api/",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        },
        tmp_path,
    )
    assert result.returncode == 2
    assert "approval.approvals_needed: is 2" in result.stderr
    assert "Traceback" not in result.stderr
