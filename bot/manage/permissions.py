"""Who may manage which service account: pure decisions over the policy, the person and the account.

Creators manage the accounts they made through the bot; the policy's `admins` manage every account of the
organization, including those made outside the bot. Guests, bots, deactivated and unverifiable people
manage nothing. Every click is judged again with this, on the server, at the moment it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from bot.models import Requester, Role, Standing, Workspace
from bot.policy.access import Entitlement, latest_expiry
from bot.policy.file import Policy


class ManageAction(StrEnum):
    LIST_ALL = "list_all"
    DELETE = "delete"
    RESCOPE = "rescope"
    REPLACE = "replace"


class Basis(StrEnum):
    """Why an action was allowed; recorded in the audit trail."""

    CREATOR = "creator"
    ADMIN = "admin"


class ManageRefusal(StrEnum):
    UNVERIFIED = "unverified"
    NOT_A_MEMBER = "not_a_member"
    EXTERNAL = "external"  # from another workspace the policy does not (or no longer) admit
    NOT_AN_ADMIN = "not_an_admin"
    NOT_YOURS = "not_yours"
    NOT_LISTED = "not_listed"  # a creator who may no longer create accounts may not grow or renew one
    NOT_MADE_BY_BOT = "not_made_by_bot"  # the bot knows neither role nor projects of such an account


class AccountRefusal(StrEnum):
    """Why this person may not grow (Projects…) or renew (Replace…) an account the bot made, under today's
    policy; the values are the audit trail's words."""

    ROLE_ABOVE_CEILING = "role above ceiling"
    EXPIRY_BEYOND_LIMIT = "expiry beyond the policy's limit"
    NEVER_EXPIRES = "never expires"


@dataclass(frozen=True)
class ManageDecision:
    basis: Basis | None = None
    refusal: ManageRefusal | None = None

    @property
    def allowed(self) -> bool:
        return self.basis is not None and self.refusal is None


@dataclass(frozen=True)
class AccountOwnership:
    """What the bot knows about who answers for an account: `creator_id` is its current owner
    (`StoredRequest.owner`: the creator, until a takeover or an adoption); None means made outside the bot
    and not adopted."""

    creator_id: str | None

    @property
    def made_by_bot(self) -> bool:
        return self.creator_id is not None


def is_admin(policy: Policy, requester: Requester) -> bool:
    return requester.standing is Standing.MEMBER and policy.admins.matches(requester)


def _person_refusal(
    policy: Policy, requester: Requester | None, installation: Workspace
) -> ManageRefusal | None:
    """The same judgement of the person as `bot.policy.access.decide`: known, from here or an admitted
    workspace, and a full member."""
    if requester is None:
        return ManageRefusal.UNVERIFIED
    if not requester.belongs_to(installation) and not policy.admits_external(requester):
        return ManageRefusal.EXTERNAL
    if requester.standing is not Standing.MEMBER:
        return ManageRefusal.NOT_A_MEMBER
    return None


def may_list_own(
    policy: Policy, requester: Requester | None, *, installation: Workspace
) -> ManageRefusal | None:
    """Any full member may see the accounts they made (possibly none); others see nothing."""
    return _person_refusal(policy, requester, installation)


def may_list_all(policy: Policy, requester: Requester | None, *, installation: Workspace) -> ManageDecision:
    refusal = _person_refusal(policy, requester, installation)
    if refusal is not None or requester is None:
        return ManageDecision(refusal=refusal or ManageRefusal.UNVERIFIED)
    if is_admin(policy, requester):
        return ManageDecision(basis=Basis.ADMIN)
    return ManageDecision(refusal=ManageRefusal.NOT_AN_ADMIN)


def may_manage(
    policy: Policy,
    requester: Requester | None,
    action: ManageAction,
    account: AccountOwnership,
    *,
    installation: Workspace,
) -> ManageDecision:
    """May this person delete, re-scope or replace this account, and on what basis? `installation` is the
    workspace the bot is installed in: people from elsewhere pass only if the policy admits their team."""
    if action is ManageAction.LIST_ALL:
        return may_list_all(policy, requester, installation=installation)
    refusal = _person_refusal(policy, requester, installation)
    if refusal is not None or requester is None:
        return ManageDecision(refusal=refusal or ManageRefusal.UNVERIFIED)
    admin = is_admin(policy, requester)
    if action is not ManageAction.DELETE and not account.made_by_bot:
        return ManageDecision(refusal=ManageRefusal.NOT_MADE_BY_BOT if admin else ManageRefusal.NOT_YOURS)
    if account.creator_id == requester.user_id:
        # Deleting only ever lowers risk; growing or renewing an account needs the right to create one.
        listed = policy.requesters is None or policy.requesters.matches(requester)
        if action is ManageAction.DELETE or listed:
            return ManageDecision(basis=Basis.CREATOR)
        return (
            ManageDecision(basis=Basis.ADMIN) if admin else ManageDecision(refusal=ManageRefusal.NOT_LISTED)
        )
    if admin:
        return ManageDecision(basis=Basis.ADMIN)
    return ManageDecision(refusal=ManageRefusal.NOT_YOURS)


def account_refusal(
    entitlement: Entitlement, action: ManageAction, *, role: Role, expires_on: date | None, today: date
) -> AccountRefusal | None:
    """Is this account one the person could be granted today? Its role must be within their ceiling. For
    Projects…, which keeps the account and so its expiry, the expiry must also be one today's policy would
    grant (by `latest_expiry`, the rule of the form): growing an account the policy would no longer allow
    is refused, and Replace… is the way on. Replace… makes a new account whose expiry the form judges, so
    only the role counts there. `expires_on` and `today` are dates in the person's time zone."""
    if role.rank > entitlement.max_role.rank:
        return AccountRefusal.ROLE_ABOVE_CEILING
    if action is not ManageAction.RESCOPE:
        return None
    if expires_on is None:
        return None if entitlement.allow_never else AccountRefusal.NEVER_EXPIRES
    if expires_on > latest_expiry(entitlement, today):
        return AccountRefusal.EXPIRY_BEYOND_LIMIT
    return None
