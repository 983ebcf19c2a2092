"""Projects…: add an account to projects or remove it from some, within the policy, through the wire."""

from __future__ import annotations

import json

import pytest

from bot.db.schema import AuditEvent
from bot.manage import messages as say
from bot.manage.permissions import AccountRefusal
from bot.manage.projects_view import BLOCK_PROJECT_CHOICE, PROJECTS_CALLBACK_ID
from bot.manage.views import ACTION_RESCOPE
from bot.models import Role
from bot.policy.file import (
    ApprovalPolicy,
    ApprovalTriggers,
    ExpiryPolicy,
    PersonSelector,
    Policy,
    ProjectPolicy,
)
from tests.conftest import ALICE, GENERAL
from tests.fakes.mixpanel import hang
from tests.lifecycle import AUDIT, BOB, audit_events, managed, mint, run_list, text_of

__all__ = ["managed"]  # a fixture
APPROVER = "UAPPROVER1"


def click_projects(bot, user: str, value: str, response_url: str | None = None):
    return bot.sender.block_actions(
        user_id=user,
        actions=[{"action_id": ACTION_RESCOPE, "block_id": "mine:1:more", "value": value}],
        channel_id=GENERAL,
        response_url=response_url or bot.slack.new_response_url(),
    )


def open_projects(bot, request, user: str = ALICE) -> dict:
    result = click_projects(bot, user, f"r:{request.id}")
    assert result.status == 200 and result.elapsed < 3
    opened = bot.slack.opened_by(result.trigger_id)
    assert opened.response["ok"], opened.response
    return opened.response["view"]


def options(view: dict) -> tuple[list[str], list[str]]:
    element = next(b for b in view["blocks"] if b.get("block_id") == BLOCK_PROJECT_CHOICE)["element"]
    return [o["value"] for o in element["options"]], [o["value"] for o in element.get("initial_options", [])]


def test_projects_are_added_and_removed_with_the_two_bodies_audited_and_stored(managed):
    request = mint(managed)  # in 3001 and 3002
    view = open_projects(managed, request)
    offered, initial = options(view)
    assert sorted(offered) == ["3001", "3002", "3003"] and sorted(initial) == ["3001", "3002"]
    assert (
        view["callback_id"] == PROJECTS_CALLBACK_ID
        and json.loads(view["private_metadata"])["r"] == request.id
    )

    ack = managed.sender.view_submission(view, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: ["3002", "3003"]})

    assert ack.status == 200 and ack.json()["response_action"] == "update"
    managed.wait_idle()
    account_id = request.mixpanel_account_id
    assert managed.mixpanel.membership(account_id) == {3002: "analyst", 3003: "analyst"}
    added = managed.mixpanel.wait_for("add_to_project")[0].json
    removed = managed.mixpanel.wait_for("remove_from_project")[0].json
    assert added == {"service_account_ids": [account_id], "projects": [{"id": 3003, "role": "analyst"}]}
    assert removed == {"projects": [{"id": 3001, "service_account_ids": [account_id]}]}
    assert managed.mixpanel.schema_violations == []
    assert managed.store.get(request.id).project_ids == (3002, 3003)
    row = audit_events(managed, AuditEvent.PROJECTS_CHANGED)[-1]
    assert row["requester_id"] == ALICE and row["detail"].startswith("allowed as creator")
    final = managed.slack.wait_for(lambda c: c.method == "views.update" and "is now in" in json.dumps(c.args))
    assert "Web Analytics" in json.dumps(final[-1].args)
    announced = managed.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and "changed the projects" in json.dumps(c.args)
    )[-1]
    assert announced.args["channel"] == AUDIT


def test_a_click_on_a_cold_catalog_opens_a_loading_modal_without_waiting_for_mixpanel(managed):
    request = mint(managed)
    managed.runtime.catalog._snapshot = None  # a cold catalog (e.g. the warm-up failed at start)
    managed.mixpanel.script("me", hang(5.0))
    clicked = click_projects(managed, ALICE, f"r:{request.id}")
    assert clicked.status == 200
    opened = managed.slack.opened_by(clicked.trigger_id)
    # Opened while /me still hangs (it answers after 5 s): the modal says so instead of listing projects.
    assert say.PROJECTS_LOADING_TRY_AGAIN in json.dumps(opened.args["view"], ensure_ascii=False)
    managed.mixpanel.wait_for("me")  # and the click started the fetch the next click will use


def test_only_projects_the_person_may_grant_are_offered_and_a_forged_one_is_refused(bots, slack):
    slack.add_user(BOB, tz="UTC")
    bot = bots.start(policy=Policy(projects=ProjectPolicy(allowed=[3001, 3002]), audit_channel=AUDIT))
    request = mint(bot)
    view = open_projects(bot, request)
    assert sorted(options(view)[0]) == ["3001", "3002"]

    ack = bot.sender.view_submission(view, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: ["3001", "3003"]})

    assert ack.json()["response_action"] == "errors"
    bot.wait_idle()
    assert bot.mixpanel.calls("POST", "project") == []
    assert bot.store.get(request.id).project_ids == (3001, 3002)
    [refusal] = audit_events(bot, AuditEvent.MANAGE_REFUSED)  # a forged action is audited, like any refusal
    assert (refusal["requester_id"], refusal["request_id"]) == (ALICE, request.id)
    assert "3003" in refusal["detail"]
    told = bot.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and "was refused" in json.dumps(c.args)
    )
    assert told[-1].args["channel"] == AUDIT and "3003" in json.dumps(told[-1].args)


def test_an_account_above_the_persons_ceiling_cannot_be_rescoped(bots, slack, tmp_path):
    first = bots.start(policy=Policy(elevated=[], max_role=Role.ANALYST))
    request = mint(first)
    lowered = bots.start(policy=Policy(max_role=Role.CONSUMER))  # the same database, a stricter policy
    url = lowered.slack.new_response_url()

    click_projects(lowered, ALICE, f"r:{request.id}", url)

    answer = lowered.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert "above the consumer role you may grant" in text_of(answer.args)
    assert (
        lowered.slack.calls("views.open")[-1].args.get("view", {}).get("callback_id") != PROJECTS_CALLBACK_ID
    )
    assert audit_events(lowered, AuditEvent.MANAGE_REFUSED)[-1]["detail"].endswith("role above ceiling")


def test_someone_elses_account_is_refused_at_click_and_at_submission(managed):
    request = mint(managed)
    url = managed.slack.new_response_url()
    click_projects(managed, BOB, f"r:{request.id}", url)
    answer = managed.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert "only the service accounts you own" in text_of(answer.args)

    # Alice's own modal, replayed by Bob: the submission is judged again.
    view = open_projects(managed, request)
    ack = managed.sender.view_submission(view, user_id=BOB, values={BLOCK_PROJECT_CHOICE: ["3003"]})
    assert "only the service accounts you own" in json.dumps(ack.json())
    managed.wait_idle()
    assert managed.mixpanel.calls("POST", "project") == []
    assert len(audit_events(managed, AuditEvent.MANAGE_REFUSED)) == 2


def test_admins_may_rescope_others_accounts(managed):
    request = mint(managed)
    admin = PersonSelector(users=["UADMIN"]).users[0]
    view = open_projects(managed, request, admin)
    managed.sender.view_submission(view, user_id=admin, values={BLOCK_PROJECT_CHOICE: ["3001"]})
    managed.wait_idle()
    assert managed.mixpanel.membership(request.mixpanel_account_id) == {3001: "analyst"}
    assert audit_events(managed, AuditEvent.PROJECTS_CHANGED)[-1]["detail"].startswith("allowed as admin")


def approval_for(**triggers) -> Policy:
    return Policy(
        audit_channel=AUDIT,
        max_role=Role.ADMIN,
        approval=ApprovalPolicy(
            required_for=ApprovalTriggers(**triggers), approvers=PersonSelector(users=[APPROVER])
        ),
    )


def test_projects_that_need_approval_are_neither_offered_nor_accepted(bots, slack):
    slack.add_user(APPROVER, tz="UTC")
    bot = bots.start(policy=approval_for(projects=[3003]))
    request = mint(bot)  # 3001, 3002: no approval needed

    view = open_projects(bot, request)

    assert sorted(options(view)[0]) == ["3001", "3002"]
    notes = json.dumps(view["blocks"])
    assert "Web Analytics need someone else" in notes and "Replace" in notes
    # A forged (or stale) submission naming it anyway is refused inline, keyed by the block.
    ack = bot.sender.view_submission(
        view, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: ["3001", "3002", "3003"]}
    )
    assert ack.json()["response_action"] == "errors"
    assert "need someone else's approval" in ack.json()["errors"][BLOCK_PROJECT_CHOICE]
    bot.wait_idle()
    assert bot.mixpanel.calls("POST", "project") == []
    assert 3003 not in bot.mixpanel.membership(request.mixpanel_account_id)
    [refusal] = audit_events(bot, AuditEvent.MANAGE_REFUSED)
    assert (refusal["requester_id"], refusal["request_id"]) == (ALICE, request.id)
    assert "needs approval" in refusal["detail"] and "3003" in refusal["detail"]
    told = bot.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and "was refused" in json.dumps(c.args)
    )
    assert told[-1].args["channel"] == AUDIT and "3003" in json.dumps(told[-1].args)


def test_an_account_whose_role_needs_approval_cannot_be_rescoped(bots, slack):
    slack.add_user(APPROVER, tz="UTC")
    first = bots.start(policy=Policy(audit_channel=AUDIT))
    request = mint(first)
    stale = open_projects(first, request)  # opened before the policy made analysts need approval
    stricter = bots.start(policy=approval_for(roles=[Role.ANALYST]))  # the same database
    url = stricter.slack.new_response_url()

    click_projects(stricter, ALICE, f"r:{request.id}", url)

    answer = stricter.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert "needs someone else's approval" in text_of(answer.args) and "Replace" in text_of(answer.args)
    ack = stricter.sender.view_submission(
        stale, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: ["3001", "3003"]}
    )
    assert "needs someone else's approval" in json.dumps(ack.json())
    stricter.wait_idle()
    assert stricter.mixpanel.calls("POST", "project") == []
    refusals = audit_events(stricter, AuditEvent.MANAGE_REFUSED)
    assert len(refusals) == 2 and all(r["detail"].endswith("needs approval") for r in refusals)
    assert all(r["request_id"] == request.id for r in refusals)


def test_a_save_changes_only_the_projects_the_modal_could_show(bots, slack, mixpanel):
    for i in range(110):
        mixpanel.projects[5000 + i] = {"id": 5000 + i, "name": f"AAA {i:03d}", "organization_id": 1234}
    bot = bots.start(policy=Policy())
    request = mint(bot)  # in 3001 and 3002, which sort after the 110 "AAA" ones

    view = open_projects(bot, request)

    offered, initial = options(view)
    assert len(offered) == 100 and set(offered[:2]) == {"3001", "3002"}
    assert sorted(initial) == ["3001", "3002"]  # the account's own projects are always listed
    assert "Only 100 of the 113 projects" in json.dumps(view["blocks"])
    hidden = next(str(pid) for pid in range(5000, 5110) if str(pid) not in offered)
    refused = bot.sender.view_submission(
        view, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: [*initial, hidden]}
    )
    assert refused.json()["response_action"] == "errors"

    ack = bot.sender.view_submission(view, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: [*initial, "5000"]})

    assert ack.status == 200 and ack.json()["response_action"] == "update"
    bot.wait_idle()
    assert bot.mixpanel.membership(request.mixpanel_account_id) == {
        3001: "analyst",
        3002: "analyst",
        5000: "analyst",
    }
    assert bot.mixpanel.calls("POST", "remove-from-project") == []
    assert bot.store.get(request.id).project_ids == (3001, 3002, 5000)


def test_two_concurrent_saves_keep_both_changes_and_the_later_one_is_told(bots, slack):
    from tests.fakes.mixpanel import hang

    bot = bots.start(policy=Policy())
    request = mint(bot)  # 3001, 3002
    view_a = open_projects(bot, request)
    view_b = open_projects(bot, request)
    bot.mixpanel.script("add_to_project", hang(1.0))  # A's add is slow, so B's removal lands meanwhile

    a = bot.sender.view_submission(
        view_a, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: ["3001", "3002", "3003"]}
    )
    b = bot.sender.view_submission(view_b, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: ["3001"]})

    assert a.status == b.status == 200
    bot.wait_idle()
    live = bot.mixpanel.membership(request.mixpanel_account_id)
    assert set(live) == {3001, 3003}
    assert bot.store.get(request.id).project_ids == (3001, 3003)  # the record agrees with Mixpanel
    told = bot.slack.wait_for(
        lambda c: c.method == "views.update" and "at the same time" in json.dumps(c.args)
    )
    assert "Web Analytics" in json.dumps(told[-1].args)


def test_a_person_from_a_workspace_no_longer_admitted_cannot_grow_their_account(bots, slack):
    outsider = "UEXT"
    slack.add_user(outsider, tz="UTC", team_id="T2", is_stranger=True)
    first = bots.start(policy=Policy(external_teams=["T2"]))
    request = mint(first, user=outsider)
    stale = open_projects(first, request, user=outsider)
    bot = bots.start(policy=Policy(audit_channel=AUDIT))  # the same database; T2 is no longer admitted
    url = bot.slack.new_response_url()

    click_projects(bot, outsider, f"r:{request.id}", url)

    answer = bot.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert "does not admit people from your workspace" in text_of(answer.args)
    ack = bot.sender.view_submission(stale, user_id=outsider, values={BLOCK_PROJECT_CHOICE: ["3001", "3003"]})
    assert "does not admit people from your workspace" in json.dumps(ack.json())
    assert "does not admit people from your workspace" in text_of(run_list(bot, outsider))
    bot.wait_idle()
    assert bot.mixpanel.calls("POST", "project") == []
    assert 3003 not in bot.mixpanel.membership(request.mixpanel_account_id)


@pytest.mark.parametrize(
    ("minted_under", "days", "expected", "reason"),
    [
        # Made when "never expires" was allowed; the policy now wants an expiry within 30 days.
        (
            Policy(expiry=ExpiryPolicy(allow_never=True)),
            None,
            "never expires, which the policy no longer allows",
            AccountRefusal.NEVER_EXPIRES,
        ),
        # Made for 60 days under the default 365; the policy now allows 30.
        (
            Policy(),
            60,
            "later than the 30 days from today the policy now allows",
            AccountRefusal.EXPIRY_BEYOND_LIMIT,
        ),
    ],
)
def test_an_account_whose_expiry_todays_policy_forbids_cannot_grow(
    bots, slack, minted_under, days, expected, reason
):
    first = bots.start(policy=minted_under)
    request = mint(first, days=days)
    stale = open_projects(first, request)  # opened while the old policy held
    stricter = bots.start(  # a restart with a stricter policy, on the same database
        policy=Policy(audit_channel=AUDIT, expiry=ExpiryPolicy(max_days=30, allow_never=False))
    )
    url = stricter.slack.new_response_url()

    click_projects(stricter, ALICE, f"r:{request.id}", url)

    answer = stricter.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == url)[-1]
    assert expected in text_of(answer.args) and "Replace…" in text_of(answer.args)
    opened = [c.args.get("view", {}).get("callback_id") for c in stricter.slack.calls("views.open")]
    assert opened.count(PROJECTS_CALLBACK_ID) == 1  # only the old bot's modal, none by the stricter one
    ack = stricter.sender.view_submission(
        stale, user_id=ALICE, values={BLOCK_PROJECT_CHOICE: ["3001", "3002", "3003"]}
    )
    assert ack.json()["response_action"] == "update" and expected in json.dumps(ack.json())
    stricter.wait_idle()
    assert stricter.mixpanel.calls("POST", "project") == []
    assert stricter.mixpanel.membership(request.mixpanel_account_id) == {3001: "analyst", 3002: "analyst"}
    refusals = audit_events(stricter, AuditEvent.MANAGE_REFUSED)
    assert len(refusals) == 2 and all(r["request_id"] == request.id for r in refusals)
    assert all(r["detail"].startswith("change projects of") for r in refusals)
    assert all(r["detail"].endswith(str(reason)) for r in refusals)
