"""Rotation through the wire: accounts minted through the form into the Vault fake, rotated by the job
against the Mixpanel, Slack and Vault fakes, with the clock injected."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from bot.db.schema import RequestState
from bot.models import Role
from bot.rotate.states import RotationState
from tests.conftest import ALICE, dump_database
from tests.fakes.mixpanel import respond
from tests.fakes.vault import FakeVault
from tests.rotation_harness import (
    ADMIN,
    AUDIT,
    SECRET_PATH,
    dms_to,
    due,
    mint,
    rotating_bot,
    rotation_of,
    run,
    successor_of,
    to_channel,
)
from tests.test_destinations import VAULT_POLICY

S = RotationState


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def test_a_full_rotation_overlaps_then_deletes_the_old_account_and_the_token_is_only_in_the_store(
    bots, vault, slack, debug_logs
):
    bot, clock = rotating_bot(bots, vault, slack, overlap_hours=24)
    old = mint(bot)
    assert run(bot) == []  # not due yet
    due(old, clock)

    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]

    successor = successor_of(bot, old)
    new_token = bot.mixpanel.tokens[successor.mixpanel_account_id]
    old_token = bot.mixpanel.tokens[old.mixpanel_account_id]
    versions = vault.versions("secret", SECRET_PATH)
    assert [v["data"]["secret"] for v in versions] == [old_token, new_token]  # the new version is current
    assert versions[-1]["data"]["username"] == successor.mixpanel_username != old.mixpanel_username
    assert successor.mixpanel_username.startswith(old.username + ".")  # the same stem
    assert successor.replaces_request_id == old.id and successor.role == old.role
    assert successor.project_ids == old.project_ids
    # The old account still works during the overlap: it is live in Mixpanel, its version still readable.
    assert old.mixpanel_account_id in bot.mixpanel.accounts and bot.mixpanel.delete_calls() == []
    [written] = dms_to(bot, ALICE)[-1:]
    assert "is being rotated" in written and successor.mixpanel_username in written
    lifetime = old.expires_at - old.created_at
    assert successor.expires_at.date() == (clock() + lifetime).date()

    clock.advance(hours=23)
    assert run(bot) == []  # still overlapping
    clock.advance(hours=2)
    assert run(bot) == [S.OLD_DELETED]

    assert old.mixpanel_account_id not in bot.mixpanel.accounts
    assert successor.mixpanel_account_id in bot.mixpanel.accounts
    assert len(bot.mixpanel.delete_calls()) == 1
    assert "was deleted" in dms_to(bot, ALICE)[-1]
    assert bot.store.get(old.id).state is RequestState.CLOSED
    assert run(bot) == []  # finished: nothing more, ever
    events = [row["event"] for row in bot.store.audit_trail() if row["event"].startswith("rotation_")]
    assert events == [
        "rotation_due",
        "rotation_successor_created",
        "rotation_written",
        "rotation_verified",
        "rotation_overlapping",
        "rotation_old_deleted",
    ]
    assert "Rotation of" in to_channel(bot, AUDIT)
    for token in (new_token, old_token):
        assert all(token not in json.dumps(call.args) for call in bot.slack.calls())
        assert token not in dump_database(bot.store)
        assert all(token not in record.getMessage() for record in debug_logs.records)


@pytest.mark.parametrize("how", ["forbidden", "changed_by_hand"])
def test_a_store_that_refuses_the_new_version_stops_the_rotation_and_keeps_the_old_account(
    bots, vault, slack, how
):
    token = vault.add_token(policy=VAULT_POLICY)
    bot, clock = rotating_bot(bots, vault, slack, vault_token=token)
    old = mint(bot)
    if how == "forbidden":
        vault.revoke_token(token)  # Vault answers 403
    else:
        vault.seed("secret", SECRET_PATH, {"edited": "by hand"}, custom_metadata={})
    due(old, clock)

    assert run(bot) == [S.SUCCESSOR_CREATED, S.FAILED]

    rotation = rotation_of(bot, old)
    assert "secret store refused" in rotation.failure
    successor = bot.store.get(rotation.successor_request_id)
    assert successor.state is RequestState.DELETED  # compensated: no orphan account
    assert successor.mixpanel_account_id not in bot.mixpanel.accounts
    assert old.mixpanel_account_id in bot.mixpanel.accounts  # the old account is kept
    assert "could not be rotated" in dms_to(bot, ALICE)[-1]
    assert "could not be rotated" in dms_to(bot, ADMIN)[-1]
    clock.advance(hours=1)
    assert run(bot) == []  # not retried at once
    assert len(bot.mixpanel.create_calls()) == 2  # the original and one successor


def test_mixpanel_refusing_the_create_stops_the_rotation_and_tells_owner_and_admins(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    bot.mixpanel.script("create", respond(400, {"status": "error", "error": "project 3001 is gone"}))
    due(old, clock)

    assert run(bot) == [S.FAILED]

    rotation = rotation_of(bot, old)
    assert "Mixpanel refused" in rotation.failure and "project 3001 is gone" in rotation.failure
    assert bot.store.get(rotation.successor_request_id).state is RequestState.FAILED
    assert [v["data"]["account_id"] for v in vault.versions("secret", SECRET_PATH)] == [
        old.mixpanel_account_id
    ]
    assert "project 3001 is gone" in dms_to(bot, ALICE)[-1]
    assert "could not be rotated" in dms_to(bot, ADMIN)[-1]
    clock.advance(days=1, minutes=1)
    assert run(bot)[-1] is S.OVERLAPPING  # a day later it is tried again, and goes through


class Killed(BaseException):
    """The process dies here: nothing after this line runs, no handler catches it."""


class DiesBeforeWriting:
    def __init__(self, destination):
        self._destination = destination

    def __getattr__(self, name):
        return getattr(self._destination, name)

    def write(self, *args, **kwargs):
        raise Killed


def test_killed_after_the_create_and_before_the_write_the_successor_is_deleted_and_a_new_one_made(
    bots, vault, slack
):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    destinations = bot.runtime.flow.d.destinations
    real = destinations["etl-vault"]
    destinations["etl-vault"] = DiesBeforeWriting(real)
    due(old, clock)

    with pytest.raises(Killed):
        bot.runtime.rotation.run_once()
    lost = bot.store.get(rotation_of(bot, old).successor_request_id)
    assert rotation_of(bot, old).state is S.SUCCESSOR_CREATED and lost.state is RequestState.CREATED

    destinations["etl-vault"] = real  # the next run, in a new process
    clock.advance(minutes=11)  # past the stale-request interval
    assert run(bot) == [S.DUE, S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING]

    assert bot.store.get(lost.id).state is RequestState.DELETED
    assert lost.mixpanel_account_id not in bot.mixpanel.accounts
    successor = successor_of(bot, old)
    assert successor.id != lost.id and rotation_of(bot, old).attempt == 2
    assert vault.secret("secret", SECRET_PATH)["account_id"] == successor.mixpanel_account_id
    assert any("was deleted again" in text for text in dms_to(bot, ALICE))


def test_two_runs_at_once_on_postgresql_make_one_successor(bots, vault, slack, fresh_postgres_url):
    first, clock = rotating_bot(bots, vault, slack, database_url=fresh_postgres_url)
    second = bots.start(
        policy=first.runtime.policy,
        database_url=fresh_postgres_url,
        vault_token=vault.add_token(policy=VAULT_POLICY),
        rotation_interval_seconds=0,
    )
    second.runtime.flow.d.clock = clock
    old = mint(first)
    due(old, clock)
    start = threading.Barrier(2)
    results: dict[str, list] = {}

    def rotate(name, bot):
        start.wait()
        results[name] = [s for item in bot.runtime.rotation.run_once() for s in item.passed]

    threads = [threading.Thread(target=rotate, args=(n, b)) for n, b in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(len(passed) > 0 for passed in results.values()) == [False, True]
    assert len(first.mixpanel.create_calls()) == 2  # the original and exactly one successor
    assert len(vault.versions("secret", SECRET_PATH)) == 2


def test_an_owner_who_left_does_not_stop_the_rotation_and_the_admins_are_told(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    slack.remove_user(ALICE)
    due(old, clock)

    assert run(bot)[-1] is S.OVERLAPPING

    assert successor_of(bot, old).requester_id == ALICE
    assert any("nobody owns it now" in text for text in dms_to(bot, ADMIN))


def test_accounts_without_a_destination_are_not_rotated(bots, vault, slack):
    from tests.lifecycle import mint as mint_to_slack

    bot, clock = rotating_bot(bots, vault, slack)
    old = mint_to_slack(bot, days=20)
    clock.at = old.expires_at - timedelta(days=1)
    assert run(bot) == []
    assert bot.runtime.rotation.rotations.get(old.id) is None


def test_dry_run_prints_the_plan_and_changes_nothing(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    due(old, clock)
    planned = bot.runtime.rotation.run_once(dry_run=True)
    assert [item.request.id for item in planned] == [old.id]
    due_since = old.expires_at - timedelta(days=14)
    assert f"due since {due_since:%Y-%m-%d %H:%M} UTC; a successor would be made" in planned[0].describe()
    assert bot.runtime.rotation.rotations.get(old.id) is None
    assert len(bot.mixpanel.create_calls()) == 1


def used(bot, account_id: int, at) -> None:
    bot.mixpanel.use_account(account_id, when=at.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_when_unused_deletes_the_old_account_once_last_used_stands_still_for_the_overlap(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack, delete_old="when_unused", overlap_hours=24)
    old = mint(bot)
    due(old, clock)
    run(bot)
    verified_at = rotation_of(bot, old).verified_at

    clock.at = verified_at + timedelta(hours=30)
    used(bot, old.mixpanel_account_id, clock() - timedelta(hours=2))  # an app still uses the old token
    assert run(bot) == []
    clock.at = verified_at + timedelta(hours=40)  # its last use is now 12 hours ago: not long enough
    assert run(bot) == []
    clock.at = verified_at + timedelta(hours=53)  # 25 hours without a use
    assert run(bot) == [S.OLD_DELETED]
    assert old.mixpanel_account_id not in bot.mixpanel.accounts


def test_when_unused_warns_the_owner_before_the_cap_deletes_an_old_account_still_in_use(bots, vault, slack):
    bot, clock = rotating_bot(
        bots, vault, slack, delete_old="when_unused", overlap_hours=24, unused_cap_hours=72
    )
    old = mint(bot)
    due(old, clock)
    run(bot)
    verified_at = rotation_of(bot, old).verified_at

    clock.at = verified_at + timedelta(hours=47)
    used(bot, old.mixpanel_account_id, clock())
    assert run(bot) == [] and not any("still being used" in text for text in dms_to(bot, ALICE))
    clock.at = verified_at + timedelta(hours=49)  # within a day of the cap
    used(bot, old.mixpanel_account_id, clock())
    run(bot)
    run(bot)
    assert sum("still being used" in text for text in dms_to(bot, ALICE)) == 1  # warned once
    assert old.mixpanel_account_id in bot.mixpanel.accounts
    clock.at = verified_at + timedelta(hours=72, minutes=1)
    used(bot, old.mixpanel_account_id, clock())
    assert run(bot) == [S.OLD_DELETED]  # the cap, though it is still in use


def test_delete_old_never_keeps_the_old_account_and_finishes(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack, delete_old="never")
    old = mint(bot)
    due(old, clock)
    assert run(bot) == [S.SUCCESSOR_CREATED, S.WRITTEN, S.VERIFIED, S.OVERLAPPING, S.OLD_KEPT]
    assert "Keep the old one" not in dms_to(bot, ALICE)[-1] and "expires on its own" in dms_to(bot, ALICE)[-1]
    clock.advance(days=1)
    assert run(bot) == []
    assert bot.mixpanel.delete_calls() == [] and old.mixpanel_account_id in bot.mixpanel.accounts


def test_the_successor_is_judged_by_todays_policy(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    deps = bot.runtime.flow.d
    deps.policy = deps.policy.model_copy(update={"max_role": Role.CONSUMER})  # the policy changed since
    due(old, clock)

    assert run(bot) == [S.FAILED]

    assert "today's policy would not allow" in rotation_of(bot, old).failure
    assert len(bot.mixpanel.create_calls()) == 1  # nothing was made
    assert "at most the consumer role" in dms_to(bot, ALICE)[-1]
    assert "could not be rotated" in dms_to(bot, ADMIN)[-1]


def test_the_successor_expiry_is_capped_by_todays_maximum(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    deps = bot.runtime.flow.d
    deps.policy = deps.policy.model_copy(
        update={"expiry": deps.policy.expiry.model_copy(update={"max_days": 20})}
    )
    due(old, clock)

    assert run(bot)[-1] is S.OVERLAPPING

    assert successor_of(bot, old).expires_at.date() == (clock() + timedelta(days=20)).date()


def test_an_old_account_a_person_deletes_during_the_overlap_finishes_the_rotation(bots, vault, slack):
    from tests.lifecycle import click_delete, delete_buttons, run_list

    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    due(old, clock)
    run(bot)
    buttons = delete_buttons(run_list(bot))
    [(block_id, button)] = [(b, v) for b, v in buttons.items() if b.endswith(str(old.mixpanel_account_id))]
    click_delete(bot, ALICE, button, block_id=block_id)
    bot.wait_idle()
    assert bot.store.get(old.id).state is RequestState.CLOSED

    assert run(bot) == [S.OLD_DELETED]
    assert len(bot.mixpanel.delete_calls()) == 1  # the person's; the rotation deleted nothing more


def test_in_the_app_one_instance_at_a_time_rotates_under_the_lease(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack)
    second = bots.start(
        policy=bot.runtime.policy,
        vault_token=vault.add_token(policy=VAULT_POLICY),
        rotation_interval_seconds=0,
    )
    second.runtime.flow.d.clock = clock
    old = mint(bot)
    due(old, clock)

    assert bot.runtime.rotation.run_under_lease(900) is not None
    assert second.runtime.rotation.run_under_lease(900) is None  # the first instance holds the lease
    clock.advance(seconds=961)
    assert second.runtime.rotation.run_under_lease(900) is not None  # lapsed: taken over
    assert rotation_of(bot, old).state is S.OVERLAPPING


def test_turning_rotation_off_makes_nothing_new_but_an_overlap_under_way_still_ends(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    due(old, clock)
    run(bot)
    deps = bot.runtime.flow.d
    deps.policy = deps.policy.model_copy(
        update={"rotation": deps.policy.rotation.model_copy(update={"enabled": False})}
    )

    clock.advance(days=20)  # the successor is due now too, but rotation is off
    assert run(bot) == [S.OLD_DELETED]
    assert len(bot.mixpanel.create_calls()) == 2  # the original and the one successor; nothing new


def test_a_successor_the_store_no_longer_holds_after_a_crash_is_deleted_not_left_alive(bots, vault, slack):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    flow = bot.runtime.rotation.flow
    real_move = flow._move

    def dies_before_verifying(old_request, rotation, target, *args, **kwargs):
        if target is S.VERIFIED:
            raise Killed
        return real_move(old_request, rotation, target, *args, **kwargs)

    flow._move = dies_before_verifying
    due(old, clock)
    with pytest.raises(Killed):
        bot.runtime.rotation.run_once()
    flow._move = real_move  # the next run, in a new process
    assert rotation_of(bot, old).state is S.WRITTEN
    successor = successor_of(bot, old)
    vault.seed("secret", SECRET_PATH, {"edited": "by hand"}, custom_metadata={})  # before the next run

    assert run(bot) == [S.FAILED]

    # Its token is in no store and no person's hands: the account goes, as every lost token's does.
    assert successor.mixpanel_account_id not in bot.mixpanel.accounts
    assert bot.store.get(successor.id).state is RequestState.CLOSED  # deleted once, as the list's Delete
    assert old.mixpanel_account_id in bot.mixpanel.accounts  # the old account is kept
    assert "could not be rotated" in dms_to(bot, ALICE)[-1]
