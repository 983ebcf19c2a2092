"""Issue 3 through the wire: who may create what, enforced at command and at submission, and audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.create import messages, views
from bot.mixpanel.client import MixpanelError
from bot.models import Role
from bot.policy.file import ElevatedGrant, ExpiryPolicy, PersonSelector, Policy, ProjectPolicy, RateLimit
from tests import clock
from tests.conftest import ALICE, BOT_USER, GONE, GUEST, ORG_ID, dump_database, form_values
from tests.fakes.mixpanel import respond
from tests.slack_requests import build_payload_view_submission

BOB = "UBOB"
ADMIN_GROUP = "SADMINS"
DATA_GROUP = "SDATA"
AUDIT = "C0AUDIT"
CONTACT = "#data-platform"


def block_ids(view: dict) -> list[str]:
    return [b.get("block_id") for b in view["blocks"]]


def options_of(view: dict, block_id: str) -> list[str]:
    [element] = [b["element"] for b in view["blocks"] if b.get("block_id") == block_id]
    return [o["value"] for o in element["options"]]


def refused_without_form(bot, user_id: str) -> str:
    response_url = bot.slack.new_response_url()
    result = bot.sender.slash_command(user_id, response_url=response_url)
    assert result.status == 200 and result.elapsed < 3
    [reply] = bot.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == response_url)
    assert bot.slack.calls("views.open") == []
    assert reply.args["response_type"] == "ephemeral"
    return reply.args["text"]


def refused_in_the_modal(bot, user_id: str) -> str:
    """Slack could not say who the person is in the trigger's 3 s: the modal opens as a placeholder and,
    when Slack still cannot answer, shows the refusal (also sent privately); never the form."""
    response_url = bot.slack.new_response_url()
    result = bot.sender.slash_command(user_id, response_url=response_url)
    assert result.status == 200 and result.elapsed < 3
    [reply] = bot.slack.wait_for(lambda c: c.method == "response_url" and c.args["_url"] == response_url)
    [opened] = bot.slack.calls("views.open")
    [shown] = bot.slack.wait_for(lambda c: c.method == "views.update" and c.response is not None)
    assert opened.args["view"]["callback_id"] != views.CREATE_CALLBACK_ID
    assert shown.args["view"]["callback_id"] != views.CREATE_CALLBACK_ID
    assert reply.args["text"] in json.dumps(shown.args["view"], ensure_ascii=False)
    return reply.args["text"]


def audit_events(bot) -> list[dict]:
    return bot.store.audit_trail()


@pytest.fixture
def listed_policy() -> Policy:
    return Policy(
        requesters=PersonSelector(users=[ALICE, GUEST], usergroups=[DATA_GROUP]),
        contact=CONTACT,
        audit_channel=AUDIT,
    )


def test_an_outsider_is_refused_without_a_form_and_told_whom_to_ask(bots, slack, listed_policy):
    slack.add_user(BOB, tz="UTC")
    slack.set_usergroup(DATA_GROUP, ["UOTHER"])
    bot = bots.start(policy=listed_policy)

    text = refused_without_form(bot, BOB)

    assert "not on the list" in text and CONTACT in text
    [row] = audit_events(bot)
    assert row["event"] == "refused" and row["requester_id"] == BOB and row["detail"] == "not_listed"
    announcement = bot.slack.wait_for("chat.postMessage")[0]
    assert announcement.args["channel"] == AUDIT and BOB in json.dumps(announcement.args)


@pytest.mark.parametrize("user_id", [GUEST, BOT_USER, GONE])
def test_guests_bots_and_deactivated_users_are_refused_even_when_named(bots, user_id):
    policy = Policy(requesters=PersonSelector(users=[ALICE, GUEST, BOT_USER, GONE]), contact=CONTACT)
    bot = bots.start(policy=policy)

    text = refused_without_form(bot, user_id)

    assert "full members" in text and CONTACT in text


OUTSIDER = "UOUTSIDER"
STRANGER = "USTRANGER"
PARTNER_TEAM = "T0PARTNER"


@pytest.mark.parametrize(
    ("user_id", "who"),
    [(OUTSIDER, {"team_id": PARTNER_TEAM}), (STRANGER, {"is_stranger": True})],
    ids=["another-team", "slack-connect-stranger"],
)
def test_people_from_other_workspaces_are_refused_by_default(bots, slack, user_id, who):
    slack.add_user(user_id, tz="UTC", **who)
    bot = bots.start(policy=Policy(contact=CONTACT, audit_channel=AUDIT))

    text = refused_without_form(bot, user_id)

    assert "another workspace" in text and CONTACT in text
    [row] = audit_events(bot)
    assert (row["event"], row["requester_id"], row["detail"]) == ("refused", user_id, "external")
    assert bot.slack.wait_for("chat.postMessage")[0].args["channel"] == AUDIT


def test_a_team_named_by_the_policy_gets_the_form(bots, slack):
    slack.add_user(OUTSIDER, tz="UTC", team_id=PARTNER_TEAM)
    slack.add_user(STRANGER, tz="UTC", team_id="T0OTHER", is_stranger=True)
    bot = bots.start(policy=Policy(external_teams=[PARTNER_TEAM], contact=CONTACT))

    _, view, _ = bot.open_form(OUTSIDER)

    assert view["callback_id"] == views.CREATE_CALLBACK_ID
    bot.slack.reset()
    assert "another workspace" in refused_without_form(bot, STRANGER)  # only the named team


def test_on_enterprise_grid_other_workspaces_of_the_same_organization_are_members(bots, slack):
    slack.enterprise_id = "E0ACME"
    slack.add_user(OUTSIDER, tz="UTC", team_id="T0SISTER", enterprise_id="E0ACME")
    slack.add_user(STRANGER, tz="UTC", team_id="T0RIVAL", enterprise_id="E0RIVAL")
    bot = bots.start(policy=Policy(contact=CONTACT))

    _, view, _ = bot.open_form(OUTSIDER)

    assert view["callback_id"] == views.CREATE_CALLBACK_ID
    bot.slack.reset()
    assert "another workspace" in refused_without_form(bot, STRANGER)


def test_a_member_of_an_allowed_user_group_gets_the_form(bots, slack, listed_policy):
    slack.add_user(BOB, tz="UTC")
    slack.set_usergroup(DATA_GROUP, ["UOTHER", BOB])
    bot = bots.start(policy=listed_policy)

    _, view, _ = bot.open_form(BOB)

    assert view["callback_id"] == views.CREATE_CALLBACK_ID
    assert bot.slack.calls("usergroups.users.list")[0].args["usergroup"] == DATA_GROUP


def test_membership_that_cannot_be_verified_fails_closed(bots, slack, listed_policy):
    slack.add_user(BOB, tz="UTC")
    slack.fail("usergroups.users.list", error="ratelimited")
    bot = bots.start(policy=listed_policy)

    text = refused_in_the_modal(bot, BOB)

    assert "could not verify" in text
    assert [row["detail"] for row in bot.store.audit_trail() if row["event"] == "refused"] == ["unverified"]


def test_lookups_are_cached_so_repeated_commands_do_not_hit_slack_again(bots, slack, listed_policy):
    slack.set_usergroup(DATA_GROUP, ["UOTHER"])
    bot = bots.start(policy=listed_policy)
    bot.open_form()
    bot.open_form()
    assert len(slack.calls("users.info")) == 1
    assert len(slack.calls("usergroups.users.list")) == 1


def test_the_role_ceiling_shapes_the_form_and_is_enforced_on_forged_submissions(bots, slack):
    slack.add_user(BOB, tz="UTC")
    slack.set_usergroup(ADMIN_GROUP, [BOB])
    policy = Policy(
        max_role=Role.ANALYST,
        elevated=[ElevatedGrant(usergroups=[ADMIN_GROUP], max_role=Role.ADMIN)],
        audit_channel=AUDIT,
    )
    bot = bots.start(policy=policy)

    _, alice_view, _ = bot.open_form(ALICE)
    _, bob_view, _ = bot.open_form(BOB)
    assert options_of(alice_view, views.BLOCK_ROLE) == ["consumer", "analyst"]
    assert options_of(bob_view, views.BLOCK_ROLE) == ["consumer", "analyst", "admin"]

    forged = bot.submit(alice_view, form_values(role="admin", expires_on=clock.form_expiry(5)))
    assert forged.json()["response_action"] == "errors"
    assert set(forged.json()["errors"]) == {views.BLOCK_ROLE}
    owner = bot.submit(bob_view, form_values(role="owner", expires_on=clock.form_expiry(5)), user_id=BOB)
    assert set(owner.json()["errors"]) == {views.BLOCK_ROLE}
    assert bot.mixpanel.create_calls() == []
    refusals = [r for r in audit_events(bot) if r["event"] == "refused"]
    assert [(r["requester_id"], r["role"]) for r in refusals] == [(ALICE, "admin"), (BOB, "owner")]

    allowed = bot.submit(bob_view, form_values(role="admin", expires_on=clock.form_expiry(5)), user_id=BOB)
    assert allowed.json()["response_action"] == "update"
    bot.wait_idle()
    assert bot.mixpanel.create_calls()[0].json["role"] == "admin"


def test_projects_and_expiry_limits_shape_the_form_and_are_rechecked(bots):
    policy = Policy(projects=ProjectPolicy(allowed=[3001, 3003, 999999]), expiry=ExpiryPolicy(max_days=30))
    bot = bots.start(policy=policy)

    _, view, _ = bot.open_form()

    assert options_of(view, views.BLOCK_PROJECTS) == ["3001", "3003"]  # 999999 is not in the organization
    assert "30 days" in json.dumps(view)
    assert views.BLOCK_NEVER not in block_ids(view)
    soon = clock.form_expiry(5)
    for values, block_id in [
        (form_values(projects=[3002], expires_on=soon), views.BLOCK_PROJECTS),
        (form_values(projects=[4001], expires_on=soon), views.BLOCK_PROJECTS),  # another organization
        (form_values(projects=[3001], expires_on=clock.form_expiry(31)), views.BLOCK_EXPIRY),
    ]:
        answer = bot.submit(view, values)
        assert answer.json()["response_action"] == "errors", values
        assert set(answer.json()["errors"]) == {block_id}
    # A hand-made payload with a "never expires" box the form never offered.
    payload = build_payload_view_submission(view, user_id=ALICE, values=form_values(projects=[3001]))
    payload["view"]["state"]["values"][views.BLOCK_NEVER] = {
        views.ACTION_NEVER: {"type": "checkboxes", "selected_options": [{"value": views.NEVER_VALUE}]}
    }
    answer = bot.sender.send_form({"payload": json.dumps(payload)})
    assert set(answer.json()["errors"]) == {views.BLOCK_EXPIRY}
    assert bot.mixpanel.create_calls() == []


def test_a_submission_to_a_process_without_the_project_list_is_asked_again_and_creates_nothing(
    bots, mixpanel
):
    warm = bots.start()
    _, view, _ = warm.open_form()  # rendered by a worker whose project list is loaded
    mixpanel.script("me", *[respond(500, {"status": "error", "error": "down"})] * 40)  # /me fails from now on
    cold = bots.start(
        warm_cache=False, background_tasks=False
    )  # another worker, same database, list unloaded

    asked = len(mixpanel.me_calls())
    for projects in ([4001], [3001]):  # another organization's project, then one of ours: neither is checked
        ack = cold.submit(view, form_values(projects=projects, expires_on=clock.form_expiry(5)))
        assert ack.status == 200 and ack.elapsed < 3
        assert ack.json() == {
            "response_action": "errors",
            "errors": {views.BLOCK_PROJECTS: messages.PROJECTS_NOT_CHECKED},
        }
    mixpanel.wait_for("me", count=asked + 1)  # the submission started a fetch of the list, without waiting
    cold.wait_idle()
    assert mixpanel.create_calls() == []
    assert cold.store.submission_status(view["id"], ALICE)[0] is None  # nothing was stored either

    mixpanel.clear_faults()  # Mixpanel answers again: once the list is loaded, the same form goes through
    try:
        cold.runtime.catalog.load()
    except MixpanelError:  # joined the failing fetch the submissions started: the next one is new
        cold.runtime.catalog.load()
    refused = cold.submit(view, form_values(projects=[4001], expires_on=clock.form_expiry(5)))
    assert set(refused.json()["errors"]) == {views.BLOCK_PROJECTS}
    assert cold.submit(view, form_values(projects=[3001], expires_on=clock.form_expiry(5))).json()[
        "response_action"
    ] == ("update")
    cold.wait_idle()
    assert [call.json["projects"] for call in mixpanel.create_calls()] == [[{"id": 3001, "role": "analyst"}]]


@pytest.mark.parametrize(("me_seconds", "created"), [(0.5, True), (2.6, False)])
def test_a_process_whose_project_list_is_loading_waits_for_it_only_as_long_as_the_ack_allows(
    bots, mixpanel, me_seconds, created
):
    warm = bots.start()
    _, view, _ = warm.open_form()  # rendered by a worker whose project list is loaded
    mixpanel.latency = {"me": me_seconds}
    cold = bots.start(warm_cache=False, background_tasks=False)  # another worker, just started

    ack = cold.submit(view, form_values(projects=[3001], expires_on=clock.form_expiry(5)))

    assert ack.status == 200 and ack.elapsed < 3
    if created:  # the list came within the wait: the person never sees the cold start
        assert ack.json()["response_action"] == "update"
        cold.wait_idle()
        assert len(mixpanel.create_calls()) == 1
    else:  # it did not: fail closed, ask again, nothing made
        assert ack.json()["errors"] == {views.BLOCK_PROJECTS: messages.PROJECTS_NOT_CHECKED}
        assert mixpanel.create_calls() == []


def test_never_expiring_accounts_when_the_policy_allows_them(bots):
    bot = bots.start(policy=Policy(expiry=ExpiryPolicy(allow_never=True)))
    _, view, _ = bot.open_form()
    assert views.BLOCK_NEVER in block_ids(view)

    bot.submit(view, form_values(never=True))
    bot.wait_idle()

    [create] = bot.mixpanel.create_calls()
    assert "expires" not in create.json
    assert bot.mixpanel.schema_violations == []


def test_the_rate_limit_refuses_the_command_and_the_submission(bots):
    bot = bots.start(policy=Policy(rate_limit=RateLimit(per_user_per_day=2)))
    _, first, _ = bot.open_form()
    _, second, _ = bot.open_form()
    _, third, _ = bot.open_form()  # opened while still under the limit

    values = form_values(expires_on=clock.form_expiry(5))
    for view in (first, second):
        assert bot.submit(view, values).json()["response_action"] == "update"
    bot.wait_idle()
    late = bot.submit(third, values)
    assert late.json()["response_action"] == "update"
    assert "limit of 2" in json.dumps(late.json()["view"])
    assert len(bot.mixpanel.create_calls()) == 2

    bot.slack.reset()
    text = refused_without_form(bot, ALICE)
    assert "limit of 2" in text


def test_audit_rows_and_channel_message_after_a_creation(bots):
    bot = bots.start(policy=Policy(audit_channel=AUDIT))
    _, view, _ = bot.open_form()
    expiry = clock.form_expiry(20)

    bot.submit(view, form_values(projects=[3001, 3002], expires_on=expiry))
    bot.wait_idle()

    [account] = bot.mixpanel.accounts.values()
    token = bot.mixpanel.tokens[account["id"]]
    rows = audit_events(bot)
    assert [r["event"] for r in rows] == ["submitted", "created", "token_delivered"]
    for row in rows:
        assert row["requester_id"] == ALICE and row["role"] == "analyst"
        assert row["project_ids"] == [3001, 3002] and row["expires_at"].startswith(expiry)
        assert datetime.fromisoformat(row["at"]) <= clock.now()
    created = rows[1]
    assert (
        created["mixpanel_account_id"] == account["id"]
        and created["mixpanel_username"] == account["username"]
    )

    [announcement] = bot.slack.wait_for("chat.postMessage")
    text = json.dumps(announcement.args)
    assert announcement.args["channel"] == AUDIT
    for expected in (
        ALICE,
        account["username"],
        "analyst",
        "android App (3001)",
        "Backend Events (3002)",
        expiry,
    ):
        assert expected in text
    assert token not in text
    assert token not in dump_database(bot.store)


@pytest.mark.subprocess  # `python -m bot audit`
def test_the_audit_export_prints_the_trail(bots, tmp_path):
    bot = bots.start()
    _, view, _ = bot.open_form()
    bot.submit(view, form_values(expires_on=clock.form_expiry(3)))
    bot.wait_idle()
    token = bot.mixpanel.created_tokens()[0]
    env = {**os.environ, "DATABASE_URL": str(bot.store.engine.url)}
    root = Path(__file__).resolve().parents[1]

    def export(fmt: str, since: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "bot", "audit", "--since", since, "--format", fmt],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    # --since is a UTC day.
    rows = json.loads(export("json", clock.days_from_now(-1).isoformat()))
    assert [r["event"] for r in rows] == ["submitted", "created", "token_delivered"]
    csv_text = export("csv", clock.days_from_now(-1).isoformat())
    assert csv_text.splitlines()[0].startswith("at,event,request_id,requester_id")
    assert len(csv_text.splitlines()) == 4 and token not in csv_text
    assert json.loads(export("json", clock.days_from_now(1).isoformat())) == []


def test_owner_is_offered_only_where_a_ceiling_allows_it(bots):
    bot = bots.start(policy=Policy(max_role=Role.OWNER))
    _, view, _ = bot.open_form()
    assert options_of(view, views.BLOCK_ROLE) == ["consumer", "analyst", "admin", "owner"]
    assert ORG_ID  # the form is for the configured organization


# --- refusals: every one stored, the audit channel told at most once per person per interval -------------


def announcements(bot) -> list[str]:
    bot.wait_idle()  # announcements are posted in the background
    return [json.dumps(call.args) for call in bot.slack.calls("chat.postMessage")]


def refuse_repeatedly(bot, user_id: str, times: int) -> list[str]:
    """Type the command `times` times, each refused; returns what the audit channel got meanwhile."""
    posted = []
    for _ in range(times):
        assert "not on the list" in refused_without_form(bot, user_id)
        posted += announcements(bot)
        bot.slack.reset()  # refused_without_form checks that no form opened since the last reset
    return posted


def test_a_person_repeating_a_refused_command_is_announced_once_but_every_attempt_is_stored(
    bots, slack, listed_policy
):
    slack.add_user(BOB, tz="UTC")
    slack.set_usergroup(DATA_GROUP, [])
    bot = bots.start(policy=listed_policy)

    posted = refuse_repeatedly(bot, BOB, 5)

    rows = [r for r in audit_events(bot) if r["event"] == "refused"]
    assert [(r["requester_id"], r["detail"]) for r in rows] == [(BOB, "not_listed")] * 5
    assert len(posted) == 1 and BOB in posted[0] and "more time" not in posted[0]
    # Throttled per person: someone else's refusal is still announced.
    slack.add_user("UCAROL", tz="UTC")
    [other] = refuse_repeatedly(bot, "UCAROL", 1)
    assert "UCAROL" in other


def test_the_next_notice_after_the_interval_counts_the_untold_refusals(bots, slack, listed_policy):
    slack.add_user(BOB, tz="UTC")
    slack.set_usergroup(DATA_GROUP, [])
    bot = bots.start(policy=listed_policy)
    moment = [clock.now()]
    bot.runtime.flow.d.clock = lambda: moment[0]

    assert len(refuse_repeatedly(bot, BOB, 4)) == 1  # the first is told, three are not
    moment[0] += timedelta(minutes=9)
    assert refuse_repeatedly(bot, BOB, 1) == []  # nine minutes after the notice: still quiet
    moment[0] += timedelta(minutes=2)
    [notice] = refuse_repeatedly(bot, BOB, 1)

    assert "Also refused 4 more times since the last notice" in notice
    assert len([r for r in audit_events(bot) if r["event"] == "refused"]) == 6


@pytest.mark.postgres
def test_two_instances_sharing_postgres_announce_a_burst_of_refusals_once(bots, slack, fresh_postgres_url):
    from concurrent.futures import ThreadPoolExecutor

    slack.add_user(BOB, tz="UTC")
    slack.set_usergroup(DATA_GROUP, [])
    policy = Policy(requesters=PersonSelector(usergroups=[DATA_GROUP]), audit_channel=AUDIT)
    first = bots.start(policy=policy, database_url=fresh_postgres_url)
    second = bots.start(policy=policy, database_url=fresh_postgres_url)

    def command(bot) -> int:
        return bot.sender.slash_command(BOB, response_url=slack.new_response_url()).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(command, [first, second] * 4))
    assert statuses == [200] * 8
    slack.wait_for("response_url", count=8)
    first.wait_idle()
    second.wait_idle()

    assert len([r for r in audit_events(first) if r["event"] == "refused"]) == 8
    assert len(slack.calls("chat.postMessage")) == 1
