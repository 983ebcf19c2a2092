"""Refusals: every one is stored; the audit channel hears of at most one per person per interval.

The throttle is decided by the database in the refusal's own write (see `Store.record_refusal`), so the
processes and instances that share it agree: a per-process memory would let each of them announce.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot import messages
from bot.models import AccountSpec, Project
from bot.policy import Policy
from bot.storage import Store

REFUSAL_NOTICE_INTERVAL = timedelta(minutes=10)


def record_refusal(
    store: Store,
    policy: Policy,
    user_id: str,
    reason: str,
    spec: AccountSpec | None,
    *,
    now: datetime,
    projects: Callable[[], dict[int, Project]],
) -> dict[str, Any] | None:
    """Store the refusal; return the audit-channel message to post, or None when this one stays untold."""
    recorded = store.record_refusal(
        user_id,
        reason,
        spec,
        announce_every=REFUSAL_NOTICE_INTERVAL if policy.audit_channel else None,
        now=now,
    )
    if not recorded.announce:
        return None
    return messages.audit_message(
        event="refused",
        requester_id=user_id,
        username=spec.username if spec else None,
        role=spec.role if spec else None,
        project_ids=spec.project_ids if spec else (),
        projects=projects(),
        expires_at=spec.expires_at if spec else None,
        detail=reason,
        suppressed=recorded.suppressed,
    )
