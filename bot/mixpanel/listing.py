"""The organization's service accounts as Mixpanel lists them, shared for a few seconds.

Every `list`, every App Home open and every reminder run reads this list, at whatever pace people click,
and each read counts against the Mixpanel rate limit that creations share. So a process keeps the list
for `MIXPANEL_LIST_CACHE_SECONDS` (default 5), and concurrent readers of a cold or expired list share one
call (single flight). The bot's own changes (create, delete, project membership, whether or not Mixpanel
answered) go through `MixpanelClient`, which makes this listing forget: the next reader lists afresh.
Changes made elsewhere (Mixpanel's UI, another process of the bot) show within the cache's lifetime.

Reconciling a lost create (bot/create/cleanup.py) never reads through here: it needs the list as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.cache import TTLCache
from bot.mixpanel.client import MixpanelClient
from bot.mixpanel.models import ServiceAccountRead


class AccountListing:
    def __init__(self, mixpanel: MixpanelClient, *, ttl: float, clock: Callable[[], float] = time.monotonic):
        self._mixpanel = mixpanel
        self._cache: TTLCache[tuple[ServiceAccountRead, ...]] = TTLCache(ttl, clock=clock)
        mixpanel.on_change(self.forget)

    def accounts(self, organization_id: int) -> list[ServiceAccountRead]:
        """The organization's accounts (a list of the caller's own). Raises MixpanelError."""
        listed = self._cache.get_or_load(
            organization_id, lambda: tuple(self._mixpanel.list_service_accounts(organization_id))
        )
        return list(listed)

    def forget(self) -> None:
        self._cache.clear()
