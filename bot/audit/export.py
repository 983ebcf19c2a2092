"""`python -m bot audit --since YYYY-MM-DD [--format csv|json]`: the audit trail, for compliance reviews."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import inspect

from bot.db.engine import build_engine
from bot.db.schema import AUDIT_COLUMNS
from bot.db.store import Store
from bot.settings import DatabaseSettings, describe_validation_error


def export(*, since: datetime, output_format: str) -> int:
    try:
        settings = DatabaseSettings()
    except ValidationError as error:
        for problem in describe_validation_error(error):
            print(f"cannot read the audit trail: {problem}", file=sys.stderr)
        return 2
    engine = build_engine(settings.database_url)
    if "audit_events" not in inspect(engine).get_table_names():
        # Reading must not create an empty database where someone mistyped the URL.
        print(f"no audit trail in {engine.url.render_as_string(hide_password=True)}", file=sys.stderr)
        return 1
    store = Store(engine)
    try:
        rows = store.audit_trail(since=since)
    finally:
        store.close()
    if output_format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "project_ids": " ".join(str(p) for p in row["project_ids"] or [])})
    return 0
