"""People who leave: when an owner counts as gone, who may take their accounts over. Pure decisions.

One `user_change` event never acts by itself: `has_left` is asked of the event's payload only to decide
whether to look the person up again, and then of what `users.info` says (bot/govern/owners.py).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from bot.db.schema import StoredRequest
from bot.manage.permissions import is_admin
from bot.models import AccountSpec, Requester, Standing, Workspace, zone
from bot.policy.access import decide
from bot.policy.file import Policy
from bot.slack.directory import standing_of

# Standings that end ownership: deactivated, or demoted to a guest (bots never own accounts either).
GONE_STANDINGS = (Standing.DEACTIVATED, Standing.GUEST, Standing.BOT)


def has_left(user: dict[str, Any]) -> bool:
    """Does this users.info (or user_change) user object say the person no longer may own accounts?"""
    return standing_of(user) in GONE_STANDINGS


class TakeoverRefusal(StrEnum):
    NOT_OPEN = "not_open"  # the ownership is not open (any more): taken, deleted, or never opened
    NOT_A_CANDIDATE = "not_a_candidate"  # neither in the successor group nor an admin
    POLICY = "policy"  # the policy would not let this person request this account today


def is_candidate(policy: Policy, person: Requester) -> bool:
    """Offered an open ownership: the successor group's members; the admins always."""
    successor = policy.governance.successor
    in_group = successor is not None and successor in person.usergroups
    return person.standing is Standing.MEMBER and (in_group or is_admin(policy, person))


def spec_of(request: StoredRequest, timezone: str) -> AccountSpec:
    """The account as a request today would describe it: its role, projects and expiry."""
    expires_on = request.expires_at.astimezone(zone(timezone)).date() if request.expires_at else None
    return AccountSpec(
        username=request.username,
        role=request.role,
        project_ids=request.project_ids,
        expires_on=expires_on,
        timezone=timezone,
    )


def takeover_refusal(
    policy: Policy,
    person: Requester | None,
    request: StoredRequest,
    *,
    is_open: bool,
    installation: Workspace,
    today: date,
) -> TakeoverRefusal | None:
    """May this person become the owner of this account now? Only of an open ownership, only a candidate,
    and only if the policy would let them request this very account (role, projects, expiry) today,
    without an approval. A takeover is no creation: the daily limit does not apply."""
    if not is_open:
        return TakeoverRefusal.NOT_OPEN
    if person is None or not is_candidate(policy, person):
        return TakeoverRefusal.NOT_A_CANDIDATE
    decision = decide(
        policy,
        person,
        spec_of(request, person.timezone),
        installation=installation,
        today=today,
        recent_creations=0,
    )
    if not decision.allowed or decision.needs_approval:
        return TakeoverRefusal.POLICY
    return None
