"""Shared by the rotation tests: a bot with a Vault destination, admins and an audit channel, an injected
clock, and ways to mint an account into Vault and to read what the owner was told."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.db.schema import RequestState, StoredRequest
from bot.policy.file import ApprovalPolicy, DestinationPolicy, PersonSelector, Policy, RotationPolicy
from bot.rotate.states import RotationState
from bot.rotate.store import Rotation
from tests.conftest import ALICE, RunningBot
from tests.test_destinations import VAULT_POLICY, create, to_store

ADMIN = "UADMIN"
AUDIT = "C0AUDIT"
SECRET_PATH = "mixpanel/etl-nightly"


class Clock:
    """The one clock of a test: the bot reads it, the test moves it."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


def rotating_bot(
    bots,
    vault,
    slack,
    *,
    database_url: str | None = None,
    vault_token: str | None = None,
    approval: ApprovalPolicy | None = None,
    **rotation: Any,
) -> tuple[RunningBot, Clock]:
    slack.add_user(ADMIN, tz="UTC", name="admin")
    policy = Policy(
        destinations=[
            DestinationPolicy(
                name="etl-vault", kind="vault_kv2", url=vault.url, mount="secret", path_prefix="mixpanel/"
            )
        ],
        admins=PersonSelector(users=[ADMIN]),
        audit_channel=AUDIT,
        rotation=RotationPolicy(**rotation),
        approval=approval,
    )
    overrides: dict[str, Any] = {"rotation_interval_seconds": 0}
    if database_url:
        overrides["database_url"] = database_url
    bot = bots.start(
        policy=policy, vault_token=vault_token or vault.add_token(policy=VAULT_POLICY), **overrides
    )
    clock = Clock()
    bot.runtime.flow.d.clock = clock
    return bot, clock


def mint(bot: RunningBot, user: str = ALICE) -> StoredRequest:
    """An account made through the form, straight into Vault; its stored request."""
    create(bot, to_store("etl-vault"), user)
    [request] = [r for r in bot.runtime.manage.records.delivered(user) if r.destination == "etl-vault"]
    return request


def rotation_of(bot: RunningBot, request: StoredRequest) -> Rotation:
    assert bot.runtime.rotation is not None
    found = bot.runtime.rotation.rotations.get(request.id)
    assert found is not None
    return found


def run(bot: RunningBot) -> list[RotationState]:
    """One `rotate` run, as the CLI does it; the states each account passed through."""
    assert bot.runtime.rotation is not None
    done = bot.runtime.rotation.run_once()
    bot.wait_idle()  # the audit channel's announcements
    return [state for item in done for state in item.passed]


def dms_to(bot: RunningBot, user: str) -> list[str]:
    """What the bot posted in its DM with `user` (chat.postMessage), as text."""
    return [
        json.dumps(call.args.get("blocks") or call.args.get("text"), ensure_ascii=False)
        for call in bot.slack.calls("chat.postMessage")
        if call.args.get("channel") == "D" + user
    ]


def to_channel(bot: RunningBot, channel: str) -> str:
    return " ".join(
        json.dumps(call.args, ensure_ascii=False)
        for call in bot.slack.calls("chat.postMessage")
        if call.args.get("channel") == channel
    )


def successor_of(bot: RunningBot, old: StoredRequest) -> StoredRequest:
    rotation = rotation_of(bot, old)
    successor = bot.store.get(rotation.successor_request_id or "")
    assert successor is not None and successor.state is RequestState.DELIVERED
    return successor


def due(old: StoredRequest, clock: Clock, days_before: int = 14) -> None:
    """Move the clock to just past the moment the account is due."""
    assert old.expires_at is not None
    clock.at = old.expires_at - timedelta(days=days_before) + timedelta(minutes=1)
