"""`python -m bot audit --since YYYY-MM-DD [--format csv|json]`: the audit trail, for compliance reviews.

The trail holds text people typed (a request's Reason, an approver's deny reason), and auditors open the
CSV in a spreadsheet: there a cell starting with `=`, `+`, `-` or `@` is a live formula (one that can send
the sheet's contents elsewhere). So every CSV cell starting like that is prefixed with a single quote, as
OWASP advises against CSV injection; the JSON export stays exactly as stored.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import inspect

from bot.db.engine import build_engine
from bot.db.schema import AUDIT_COLUMNS
from bot.db.store import Store
from bot.settings import DatabaseSettings, describe_validation_error

# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection"): tab and CR included, since
# some spreadsheets drop them and then see the character after.
T = TypeVar("T")

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> str:
    """One CSV cell as a spreadsheet will read it: as text, never as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_row(row: dict[str, Any]) -> dict[str, str]:
    flat = {**row, "project_ids": " ".join(str(p) for p in row["project_ids"] or [])}
    return {column: spreadsheet_cell(flat[column]) for column in AUDIT_COLUMNS}


def read_for_export(what: str, table: str, read: Callable[[Store], T]) -> T | int:
    """Read an export from DATABASE_URL alone; an exit code (2: the setting, 1: no such table there) instead
    when it cannot be read, after one plain line on stderr."""
    try:
        settings = DatabaseSettings()
    except ValidationError as error:
        for problem in describe_validation_error(error):
            print(f"cannot read the {what}: {problem}", file=sys.stderr)
        return 2
    engine = build_engine(settings.database_url)
    if table not in inspect(engine).get_table_names():
        # Reading must not create an empty database where someone mistyped the URL.
        print(f"no {what} in {engine.url.render_as_string(hide_password=True)}", file=sys.stderr)
        return 1
    store = Store(engine)
    try:
        return read(store)
    finally:
        store.close()


def export(*, since: datetime, output_format: str) -> int:
    rows = read_for_export("audit trail", "audit_events", lambda store: store.audit_trail(since=since))
    if isinstance(rows, int):
        return rows
    if output_format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_row(row))
    return 0
