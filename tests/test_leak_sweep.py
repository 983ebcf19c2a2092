"""The token's one place, across every flow that makes an account into a secret store, in one bot: create,
Replace…, an approval's claim, break glass and a rotation (its successor, the overlap, the old account's
deletion). Each token must be in its own secret, and in no Slack call, no database row, no audit row and no
log record at DEBUG (slack_sdk's request bodies included)."""

from __future__ import annotations

import json

import pytest

from bot.approve import messages as text
from bot.create import views
from bot.models import Role
from bot.policy.file import (
    ApprovalPolicy,
    ApprovalTriggers,
    DestinationPolicy,
    ExpiryPolicy,
    PersonSelector,
    Policy,
)
from bot.rotate.states import RotationState
from tests.conftest import ALICE, dump_database
from tests.fakes.vault import FakeVault
from tests.rotation_harness import ADMIN, AUDIT, Clock, due, run, successor_of
from tests.test_approvals import (
    APPROVER,
    CHANNEL,
    SECOND,
    approve_and_get_claim,
    approver_posts,
    button_value,
)
from tests.test_approvals import claim as click_claim
from tests.test_destinations import VAULT_POLICY, create, to_store
from tests.test_rotation_replace import replace_into_its_secret

S = RotationState


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def leak_sweep_bot(bots, vault, slack):
    for user in (APPROVER, SECOND, ADMIN):
        slack.add_user(user, tz="UTC", name=user.lower())
    policy = Policy(
        max_role=Role.ADMIN,
        expiry=ExpiryPolicy(max_days=365),
        destinations=[
            DestinationPolicy(
                name="etl-vault", kind="vault_kv2", url=vault.url, mount="secret", path_prefix="mixpanel/"
            )
        ],
        approval=ApprovalPolicy(
            required_for=ApprovalTriggers(roles=[Role.ADMIN]),
            approvers=PersonSelector(users=[APPROVER, SECOND]),
            channel=CHANNEL,
            break_glass=True,
        ),
        admins=PersonSelector(users=[ADMIN]),
        audit_channel=AUDIT,
    )
    bot = bots.start(
        policy=policy,
        vault_token=vault.add_token(policy=VAULT_POLICY),
        slack_cache_seconds=0,
        rotation_interval_seconds=0,
    )
    the_clock = Clock()
    bot.runtime.flow.d.clock = the_clock
    return bot, the_clock


def admin_into(secret_name: str, reason: str) -> dict:
    values = to_store("etl-vault", secret_name, role="admin")
    values[views.BLOCK_REASON] = reason
    return values


def test_no_token_leaves_its_secret_in_any_flow(bots, vault, slack, debug_logs):
    bot, the_clock = leak_sweep_bot(bots, vault, slack)

    # 1. Create into a store, then Replace… into the same secret.
    create(bot, to_store("etl-vault", "etl-nightly"))
    [first] = bot.runtime.manage.records.delivered(ALICE)
    replace_into_its_secret(bot, first.id)
    [replacement] = [r for r in bot.runtime.manage.records.delivered(ALICE) if r.id != first.id]

    # 2. A request that needs a yes, claimed into its store.
    _, view, _ = bot.open_form(ALICE)
    bot.submit(view, admin_into("etl-admin", "The nightly export needs admin"))
    bot.slack.wait_for(lambda c: c.method == "chat.postMessage" and approver_posts(bot))
    request_id = button_value(approver_posts(bot)[-1].args, text.ACTION_APPROVE)
    approve_and_get_claim(bot, request_id)
    click_claim(bot, ALICE, request_id)
    bot.slack.wait_for(
        lambda c: c.method == "views.update" and "secret/mixpanel/etl-admin" in json.dumps(c.args)
    )
    bot.wait_idle()

    # 3. Break glass, into its store.
    _, view, _ = bot.open_form(APPROVER)
    values = admin_into("etl-glass", "Production incident")
    values[views.BLOCK_BREAK_GLASS] = [views.BREAK_GLASS_VALUE]
    bot.submit(view, values, user_id=APPROVER)
    bot.wait_idle()

    # 4. The replacement is rotated: successor, overlap, the old account deleted.
    due(replacement, the_clock)
    assert S.FAILED not in run(bot)  # the admin accounts' successors wait for approval; the others rotate
    the_clock.advance(hours=25)
    assert S.OLD_DELETED in run(bot)
    bot.wait_idle()

    successor = successor_of(bot, replacement)
    current = {
        "mixpanel/etl-nightly": successor.mixpanel_account_id,
        "mixpanel/etl-admin": bot.store.get(request_id).mixpanel_account_id,
    }
    for path, account_id in current.items():
        assert vault.secret("secret", path)["secret"] == bot.mixpanel.tokens[account_id]
    [glass] = vault.versions("secret", "mixpanel/etl-glass")
    tokens = bot.mixpanel.created_tokens()
    assert len(tokens) == 5  # create, replacement, claim, break glass, successor
    assert glass["data"]["secret"] in tokens

    slack_calls = json.dumps([call.args for call in bot.slack.calls()], default=str)
    database = dump_database(bot.store)
    audit = json.dumps(bot.store.audit_trail(), default=str)
    logged = "\n".join(record.getMessage() for record in debug_logs.records) + debug_logs.text
    assert debug_logs.records, "nothing was logged: the check would be vacuous"
    for token in tokens:
        assert token not in slack_calls
        assert token not in database
        assert token not in audit
        assert token not in logged
