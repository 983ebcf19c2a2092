"""Who may manage which account: tables, then properties that must hold for every input."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.manage.permissions import (
    AccountOwnership,
    AccountRefusal,
    Basis,
    ManageAction,
    ManageRefusal,
    account_refusal,
    may_list_all,
    may_list_own,
    may_manage,
)
from bot.models import Requester, Role, Standing, Workspace
from bot.policy.access import Entitlement
from bot.policy.file import PersonSelector, Policy, PolicyError, load_policy

ADMINS = Policy(admins=PersonSelector(users=["UADMIN"], usergroups=["SADMINS"]))
MINE = AccountOwnership(creator_id="U1")
THEIRS = AccountOwnership(creator_id="U2")
OUTSIDE = AccountOwnership(creator_id=None)
HOME = Workspace(team_id="T1")


def person(
    user_id: str = "U1", *groups: str, standing: Standing = Standing.MEMBER, team_id: str = "T1"
) -> Requester:
    return Requester(user_id=user_id, standing=standing, usergroups=frozenset(groups), team_id=team_id)


@pytest.mark.parametrize(
    ("policy", "who", "action", "account", "basis", "refusal"),
    [
        (Policy(), person("U1"), ManageAction.DELETE, MINE, Basis.CREATOR, None),
        (Policy(), person("U1"), ManageAction.RESCOPE, MINE, Basis.CREATOR, None),
        (Policy(), person("U1"), ManageAction.REPLACE, MINE, Basis.CREATOR, None),
        (Policy(), person("U1"), ManageAction.DELETE, THEIRS, None, ManageRefusal.NOT_YOURS),
        (Policy(), person("U1"), ManageAction.DELETE, OUTSIDE, None, ManageRefusal.NOT_YOURS),
        (ADMINS, person("UADMIN"), ManageAction.DELETE, THEIRS, Basis.ADMIN, None),
        (ADMINS, person("UX", "SADMINS"), ManageAction.DELETE, OUTSIDE, Basis.ADMIN, None),
        (ADMINS, person("UADMIN"), ManageAction.REPLACE, OUTSIDE, None, ManageRefusal.NOT_MADE_BY_BOT),
        (ADMINS, person("UADMIN"), ManageAction.RESCOPE, THEIRS, Basis.ADMIN, None),
        # An admin's own account is managed as its creator: the more specific reason.
        (ADMINS, person("UADMIN"), ManageAction.DELETE, AccountOwnership("UADMIN"), Basis.CREATOR, None),
        (ADMINS, person("UADMIN", standing=Standing.GUEST), ManageAction.DELETE, THEIRS, None,
         ManageRefusal.NOT_A_MEMBER),
        (Policy(), person("U1", standing=Standing.GUEST), ManageAction.DELETE, MINE, None,
         ManageRefusal.NOT_A_MEMBER),
        (Policy(), person("U1", standing=Standing.DEACTIVATED), ManageAction.DELETE, MINE, None,
         ManageRefusal.NOT_A_MEMBER),
        (Policy(), person("U1", standing=Standing.BOT), ManageAction.DELETE, MINE, None,
         ManageRefusal.NOT_A_MEMBER),
        (Policy(), None, ManageAction.DELETE, MINE, None, ManageRefusal.UNVERIFIED),
        # Dropped from the list of requesters: may still delete, but not grow or renew.
        (Policy(requesters=PersonSelector(users=["U9"])), person("U1"), ManageAction.DELETE, MINE,
         Basis.CREATOR, None),
        (Policy(requesters=PersonSelector(users=["U9"])), person("U1"), ManageAction.REPLACE, MINE, None,
         ManageRefusal.NOT_LISTED),
        (Policy(requesters=PersonSelector(users=["U9"]), admins=PersonSelector(users=["U1"])), person("U1"),
         ManageAction.REPLACE, MINE, Basis.ADMIN, None),
        # From another workspace: only while the policy admits it, for every action, like creation.
        (Policy(), person("U1", team_id="T2"), ManageAction.RESCOPE, MINE, None, ManageRefusal.EXTERNAL),
        (Policy(), person("U1", team_id="T2"), ManageAction.DELETE, MINE, None, ManageRefusal.EXTERNAL),
        (ADMINS, person("UADMIN", team_id="T2"), ManageAction.DELETE, THEIRS, None, ManageRefusal.EXTERNAL),
        (Policy(external_teams=["T2"]), person("U1", team_id="T2"), ManageAction.RESCOPE, MINE,
         Basis.CREATOR, None),
    ],
)  # fmt: skip
def test_who_may_manage_what(policy, who, action, account, basis, refusal):
    decision = may_manage(policy, who, action, account, installation=HOME)
    assert (decision.basis, decision.refusal) == (basis, refusal)
    assert decision.allowed == (refusal is None)


TODAY = date(2026, 11, 29)  # a pure decision: the date is an argument, no clock is read


def entitled(max_days: int = 30, allow_never: bool = False, max_role: Role = Role.ANALYST) -> Entitlement:
    return Entitlement(max_role=max_role, project_ids=None, max_expiry_days=max_days, allow_never=allow_never)


@pytest.mark.parametrize(
    ("entitlement", "action", "role", "expires_on", "refusal"),
    [
        (entitled(), ManageAction.RESCOPE, Role.ANALYST, TODAY + timedelta(days=30), None),
        (entitled(), ManageAction.RESCOPE, Role.ANALYST, TODAY + timedelta(days=31),
         AccountRefusal.EXPIRY_BEYOND_LIMIT),
        (entitled(), ManageAction.RESCOPE, Role.CONSUMER, TODAY + timedelta(days=1), None),
        (entitled(), ManageAction.RESCOPE, Role.ANALYST, None, AccountRefusal.NEVER_EXPIRES),
        (entitled(allow_never=True), ManageAction.RESCOPE, Role.ANALYST, None, None),
        (entitled(max_days=365), ManageAction.RESCOPE, Role.ANALYST, TODAY + timedelta(days=365), None),
        # The role comes first: the more basic reason.
        (entitled(), ManageAction.RESCOPE, Role.ADMIN, None, AccountRefusal.ROLE_ABOVE_CEILING),
        (entitled(max_role=Role.ADMIN), ManageAction.RESCOPE, Role.ADMIN, TODAY, None),
        # Replace… makes a new account whose expiry the form judges: only the role counts.
        (entitled(), ManageAction.REPLACE, Role.ANALYST, None, None),
        (entitled(), ManageAction.REPLACE, Role.ANALYST, TODAY + timedelta(days=400), None),
        (entitled(), ManageAction.REPLACE, Role.ADMIN, TODAY, AccountRefusal.ROLE_ABOVE_CEILING),
    ],
)  # fmt: skip
def test_which_accounts_may_be_grown_or_renewed_under_todays_policy(
    entitlement, action, role, expires_on, refusal
):
    assert account_refusal(entitlement, action, role=role, expires_on=expires_on, today=TODAY) == refusal


@pytest.mark.parametrize(
    ("policy", "who", "allowed", "refusal"),
    [
        (Policy(), person("U1"), False, ManageRefusal.NOT_AN_ADMIN),
        (ADMINS, person("UADMIN"), True, None),
        (ADMINS, person("U7", "SADMINS"), True, None),
        (ADMINS, person("U7", "SOTHER"), False, ManageRefusal.NOT_AN_ADMIN),
        (ADMINS, person("UADMIN", standing=Standing.GUEST), False, ManageRefusal.NOT_A_MEMBER),
        (ADMINS, None, False, ManageRefusal.UNVERIFIED),
        (ADMINS, person("UADMIN", team_id="T2"), False, ManageRefusal.EXTERNAL),
    ],
)
def test_who_may_list_every_account(policy, who, allowed, refusal):
    decision = may_list_all(policy, who, installation=HOME)
    assert decision.allowed is allowed
    assert decision.refusal == refusal
    assert may_manage(policy, who, ManageAction.LIST_ALL, OUTSIDE, installation=HOME) == decision


def test_a_person_from_a_workspace_no_longer_admitted_may_not_even_list_their_own():
    outsider = person("U1", team_id="T2")
    assert may_list_own(Policy(), outsider, installation=HOME) is ManageRefusal.EXTERNAL
    assert may_list_own(Policy(external_teams=["T2"]), outsider, installation=HOME) is None


def test_admins_default_to_nobody_and_load_from_yaml(tmp_path: Path):
    assert Policy().admins.users == [] and Policy().admins.usergroups == []
    path = tmp_path / "policy.yml"
    path.write_text("admins:\n  users: [UADMIN]\n  usergroups: [SADMINS]\n")
    policy = load_policy(path)
    assert policy.admins.users == ["UADMIN"]
    assert "SADMINS" in policy.usergroups_in_use()


def test_unknown_keys_under_admins_are_errors(tmp_path: Path):
    path = tmp_path / "policy.yml"
    path.write_text("admins:\n  people: [UADMIN]\n")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert "admins.people: unknown key" in str(raised.value)


user_ids = st.sampled_from(["U1", "U2", "U3", "UADMIN"])
groups = st.frozensets(st.sampled_from(["SADMINS", "SOTHER"]), max_size=2)
standings = st.sampled_from(list(Standing))
requesters = st.one_of(
    st.none(),
    st.builds(
        lambda u, g, s, t: Requester(user_id=u, standing=s, usergroups=g, team_id=t),
        user_ids,
        groups,
        standings,
        st.sampled_from(["T1", "T2", None]),
    ),
)
ownerships = st.builds(AccountOwnership, st.one_of(st.none(), user_ids))
policies = st.builds(
    lambda admin_users, admin_groups, listed, external: Policy(
        admins=PersonSelector(users=admin_users, usergroups=admin_groups),
        requesters=PersonSelector(users=listed) if listed is not None else None,
        external_teams=external,
    ),
    st.lists(user_ids, max_size=2),
    st.lists(st.sampled_from(["SADMINS"]), max_size=1),
    st.one_of(st.none(), st.lists(user_ids, max_size=2)),
    st.sampled_from([[], ["T2"]]),
)
actions = st.sampled_from([ManageAction.DELETE, ManageAction.RESCOPE, ManageAction.REPLACE])


@given(policies, requesters, actions, ownerships)
def test_properties_of_every_decision(policy, who, action, account):
    decision = may_manage(policy, who, action, account, installation=HOME)
    # Exactly one of a basis or a refusal.
    assert (decision.basis is None) != (decision.refusal is None)
    if decision.allowed:
        assert who is not None and who.standing is Standing.MEMBER
        admin = policy.admins.matches(who)
        # Nobody manages someone else's account, or one made outside the bot, without being an admin.
        assert account.creator_id == who.user_id or admin
        assert (decision.basis is Basis.ADMIN) <= admin
        assert who.belongs_to(HOME) or policy.admits_external(who)
    if who is None or who.standing is not Standing.MEMBER:
        assert not decision.allowed


@given(policies, requesters, ownerships)
def test_a_creator_may_always_delete_what_they_made(policy, who, account):
    admitted = who is not None and (who.belongs_to(HOME) or policy.admits_external(who))
    if admitted and who.standing is Standing.MEMBER and account.creator_id == who.user_id:
        assert may_manage(policy, who, ManageAction.DELETE, account, installation=HOME).basis is Basis.CREATOR


@given(policies, requesters, actions, ownerships)
def test_being_made_an_admin_never_takes_a_right_away(policy, who, action, account):
    if who is None:
        return
    promoted = policy.model_copy(update={"admins": PersonSelector(users=[*policy.admins.users, who.user_id])})
    assert (
        may_manage(policy, who, action, account, installation=HOME).allowed
        <= may_manage(promoted, who, action, account, installation=HOME).allowed
    )
