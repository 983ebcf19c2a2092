"""Rotations that are stuck: failed ones (the old account expires unless someone acts), and those a run
should have moved on but that have not moved for a day. Read-only, like every check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.db.store import Store
from bot.doctor.local_checks import read_only_engine
from bot.doctor.report import CheckResult, passed, skipped, warned
from bot.rotate.states import RotationState
from bot.rotate.store import RotationStore

# Longer than any schedule's interval: `python -m bot rotate` runs at least daily, the app every 15 minutes.
STUCK_AFTER = timedelta(days=1)
SHOWN = 5


def check_rotations(database_url: str, now: datetime | None = None) -> CheckResult:
    now = now or datetime.now(UTC)
    engine = read_only_engine(make_url(database_url))
    try:
        if "rotations" not in inspect(engine).get_table_names():
            return skipped("rotations", "the database has no rotations table yet (see database)")
        store = Store(engine)
        stuck = RotationStore(store).stuck(now, quiet_for=STUCK_AFTER)
        lines = []
        for rotation in stuck[:SHOWN]:
            old = store.get(rotation.request_id)
            name = (old.mixpanel_username or old.username) if old else rotation.request_id
            why = (
                rotation.failure
                if rotation.state is RotationState.FAILED
                else f"{rotation.state} since {rotation.updated_at:%Y-%m-%d %H:%M} UTC"
            )
            lines.append(f"{name}: {why}")
    except SQLAlchemyError as error:
        return warned("rotations", f"could not read the rotations ({type(error).__name__})")
    finally:
        engine.dispose()
    if not stuck:
        return passed("rotations", "no rotation is stuck")
    more = f" (and {len(stuck) - SHOWN} more)" if len(stuck) > SHOWN else ""
    return warned(
        "rotations",
        f"{len(stuck)} rotation(s) stuck: {'; '.join(lines)}{more}",
        "fix the cause, then click Rotate now in the account list (or wait for the next day's run)",
    )
