"""Which listed Mixpanel accounts a request made: the pure decisions behind cleanup after an ambiguous create.

Mixpanel returns no request id, so an account is attributed to a request only when everything that can
be checked agrees (docs/guarantees.md, "What cleanup deletes"): the bot made it (`creator` is the bot's
own Mixpanel user), its name is the requested one, it was created inside the request's own window, and
no other request knows it. An account without a creation time is never attributed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.db.schema import StoredRequest
from bot.mixpanel.models import ServiceAccountRead
from bot.models import MIXPANEL_USERNAME_SUFFIX

# How far Mixpanel's clock may differ from ours when comparing an account's `created` with our window.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime | None  # None: the create call may still be running

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment <= self.end)


def create_window(request: StoredRequest, skew: timedelta, *, still_running: bool = False) -> Window | None:
    """From when the request was stored to its last create call, each widened by the skew.
    None when no create call was ever made: then nothing can be this request's."""
    if request.last_create_attempt_at is None:
        return None
    end = None if still_running else request.last_create_attempt_at + skew
    return Window(start=request.created_at - skew, end=end)


def name_matches(requested: str, username: str) -> bool:
    """Mixpanel names `etl` as `etl.<suffix>.mp-service-account`; the bare name is accepted too."""
    suffix = re.escape(MIXPANEL_USERNAME_SUFFIX)
    return re.fullmatch(re.escape(requested) + rf"(\.[^.]+{suffix})?", username) is not None


def is_ours(
    account: ServiceAccountRead,
    request: StoredRequest,
    bot_user_id: int | None,
    known_ids: set[int] | frozenset[int],
    skew: timedelta = CLOCK_SKEW,
) -> bool:
    """True only when this request's create call made this account."""
    created = account.created_at()
    window = create_window(request, skew)
    return (
        bot_user_id is not None
        and account.creator == bot_user_id
        and name_matches(request.username, account.username)
        and created is not None
        and window is not None
        and window.holds(created)
        and account.id not in known_ids
    )


@dataclass(frozen=True)
class Attribution:
    ours: list[ServiceAccountRead] = field(default_factory=list)
    # Ours by every test, but another request for the same name is still inside its create call and may
    # yet record it: deleting now could revoke a token that is about to be delivered. Look again later.
    contested: list[ServiceAccountRead] = field(default_factory=list)


def attribute(
    accounts: list[ServiceAccountRead],
    request: StoredRequest,
    *,
    bot_user_id: int | None,
    known_ids: set[int] | frozenset[int],
    creates_in_flight: list[StoredRequest],
    skew: timedelta = CLOCK_SKEW,
) -> Attribution:
    ours: list[ServiceAccountRead] = []
    contested: list[ServiceAccountRead] = []
    others = [create_window(other, skew, still_running=True) for other in creates_in_flight]
    for account in accounts:
        if not is_ours(account, request, bot_user_id, known_ids, skew):
            continue
        created = account.created_at()
        if any(window is not None and created is not None and window.holds(created) for window in others):
            contested.append(account)
        else:
            ours.append(account)
    return Attribution(ours=ours, contested=contested)
