"""The suite's one clock: every date a test builds beside the bot is derived from the real now, here.

The bot reads the wall clock (datetime.now, time.time) wherever a test does not inject one. A test that puts
a fixed date beside that clock passes only until the calendar reaches the date. So a test either injects
one clock into everything it touches (a fixed `now=` through and through, as the pure-function and store
tests do), or it derives each date from the real now with these helpers. Never both.

Call them while the test runs (in the test or a function-scoped fixture), never at import time or in a
`parametrize` list: such a value is taken before `--shift-clock` (tests/conftest.py) moves the clock, and
.ci/run runs the suite again with the clock a year ahead and a year back to catch exactly that.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

ALICE_TZ = "Europe/Berlin"  # the time zone of the fixtures' ALICE (tests/conftest.py)


def now() -> datetime:
    """The wall clock, as an aware UTC datetime."""
    return datetime.now(UTC)


def today(tz: str = "UTC") -> date:
    """Today's date in time zone `tz`."""
    return datetime.now(ZoneInfo(tz)).date()


def days_from_now(days: int, tz: str = "UTC") -> date:
    """The date `days` days after today in time zone `tz` (negative: before)."""
    return today(tz) + timedelta(days=days)


def form_expiry(days: int, tz: str = ALICE_TZ) -> str:
    """The modal's expiry date picker value, `days` days ahead of today where the requester lives."""
    return days_from_now(days, tz).isoformat()


def iso_z(moment: datetime | date) -> str:
    """Mixpanel's timestamp format, "YYYY-MM-DDTHH:MM:SSZ", in UTC; a date stands for its UTC midnight."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
