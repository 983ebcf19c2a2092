"""When Slack asks the bot to slow down (HTTP 429 with Retry-After), wait as asked, within a budget.

A rate limit lasts a second or two; it must never refuse a person or delete a fresh account. But a call
made inside Slack's 3 s trigger window cannot wait long: past the budget the 429 stands, and the caller's
usual failure path (a plain sentence, the next delivery path) takes over.

The waiting is slack_sdk's own `RateLimitErrorRetryHandler` (it sleeps Retry-After plus up to 1 s of
jitter); this module only bounds it, per call and, optionally, per piece of work (`retry_budget`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

log = logging.getLogger(__name__)

# Calls inside the 3 s trigger window (users.info and usergroups.users.list at command or submit time,
# views.open): one Retry-After of 1 s plus slack_sdk's jitter (at most 2 s) fits; anything longer fails
# at once. The slash command's calls share it (see handlers/commands.py).
TRIGGER_WINDOW_RETRY_BUDGET = 2.5
# Calls after the ack (token delivery, views.update, the audit channel): how long they may wait in total.
BACKGROUND_RETRY_BUDGET = 30.0
# Token delivery, over all its paths together, before it counts as failed (and the account is deleted).
DELIVERY_RETRY_BUDGET = 30.0

# slack_sdk sleeps int(Retry-After) + random.random(): plan for the worst case.
_SDK_JITTER = 1.0

_local = threading.local()


@contextmanager
def retry_budget(seconds: float) -> Iterator[None]:
    """Bound the 429 waits of every Slack call this thread makes inside the block, taken together."""
    outer = getattr(_local, "deadline", math.inf)
    _local.deadline = min(outer, time.monotonic() + seconds)
    try:
        yield
    finally:
        _local.deadline = outer


def time_left() -> float:
    """What is left of the current block's budget (infinite outside any): inside the trigger window, how long
    this thread may still wait before Slack's ack is due."""
    return getattr(_local, "deadline", math.inf) - time.monotonic()


def _retry_after(response: HttpResponse) -> int | None:
    for name, values in response.headers.items():
        if name.lower() == "retry-after":
            value = values[0] if isinstance(values, list) else values
            text = str(value).strip()
            # slack_sdk only understands whole seconds; anything else (an HTTP date) is not retried.
            return int(text) if text.isdigit() else None
    return 0  # slack_sdk then waits 1 s plus jitter


class BudgetedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler that declines a wait which would overrun its budget."""

    def __init__(self, budget: float):
        super().__init__(max_retry_count=max(1, math.ceil(budget)))
        self.budget = budget

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or not super()._can_retry(state=state, request=request, response=response):
            return False
        retry_after = _retry_after(response)
        waited = (state.custom_values or {}).get("waited", 0.0)
        remaining = min(self.budget - waited, getattr(_local, "deadline", math.inf) - time.monotonic())
        if retry_after is None or max(retry_after, 1) + _SDK_JITTER > remaining:
            log.warning(
                "Slack rate-limited a call (HTTP 429, Retry-After %s); not waiting, %.1f s of budget left",
                retry_after,
                max(remaining, 0.0),
            )
            return False
        log.info("Slack rate-limited a call (HTTP 429); retrying after %s s as asked", retry_after)
        return True

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        started = time.monotonic()
        super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)
        state.custom_values = state.custom_values or {}
        state.custom_values["waited"] = state.custom_values.get("waited", 0.0) + time.monotonic() - started


def retry_handlers(budget: float) -> list[RetryHandler]:
    """What every Slack client of the bot retries: a dropped connection once (slack_sdk's default) and
    HTTP 429 within `budget` seconds of waiting."""
    return [ConnectionErrorRetryHandler(), BudgetedRateLimitRetryHandler(budget)]
