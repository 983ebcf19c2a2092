"""Governance's check: accounts without an owner (the owner left, and nobody took them over). Read-only,
like the database check: a SQLite file is opened read-only, and nothing is created or migrated."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, inspect, make_url, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from bot.db.schema import REQUESTS, RequestState
from bot.doctor.report import CheckResult, passed, skipped, warned
from bot.govern.store import OWNERSHIPS, OwnershipState
from bot.policy.file import Policy

NAME = "ownerless-accounts"
SHOWN = 10


def _engine(database_url: str):
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        read_only = Path(url.database or "").resolve().as_uri() + "?mode=ro"
        return create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(read_only, uri=True), poolclass=NullPool
        )
    return create_engine(url, poolclass=NullPool)


def check_ownerless(database_url: str, policy: Policy, *, now: datetime | None = None) -> CheckResult:
    """WARN for each account whose ownership has been open longer than governance.orphan_days."""
    now = now or datetime.now(UTC)
    engine = _engine(database_url)
    try:
        with engine.connect() as connection:
            if "open_ownerships" not in inspect(connection).get_table_names():
                return skipped(NAME, "the database predates governance (start the app once to migrate it)")
            query = (
                select(OWNERSHIPS.c.former_owner, OWNERSHIPS.c.opened_at, REQUESTS.c.mixpanel_username)
                .join(REQUESTS, REQUESTS.c.id == OWNERSHIPS.c.request_id)
                .where(
                    OWNERSHIPS.c.state == str(OwnershipState.OPEN),
                    REQUESTS.c.state == str(RequestState.DELIVERED),  # a deleted account needs no owner
                )
                .order_by(OWNERSHIPS.c.opened_at)
            )
            rows = list(connection.execute(query))
    except SQLAlchemyError as error:
        return skipped(NAME, f"the database could not be read ({type(error).__name__})")
    finally:
        engine.dispose()
    limit = timedelta(days=policy.governance.orphan_days)
    overdue = [
        row for row in rows if now - row.opened_at.replace(tzinfo=row.opened_at.tzinfo or UTC) >= limit
    ]
    if not overdue:
        waiting = f"; {len(rows)} waiting for a new owner" if rows else ""
        return passed(
            NAME, f"none without an owner for {policy.governance.orphan_days} days or more{waiting}"
        )
    names = ", ".join(f"{row.mixpanel_username} (was {row.former_owner}'s)" for row in overdue[:SHOWN])
    more = f" and {len(overdue) - SHOWN} more" if len(overdue) > SHOWN else ""
    return warned(
        NAME,
        f"{len(overdue)} account(s) without an owner for {policy.governance.orphan_days} days or more: "
        f"{names}{more}",
        "an admin or the successor group takes each over (Take over), or deletes it",
    )
