"""The operator commands of governance: `python -m bot govern [--dry-run] [--report] [--format json]`,
`python -m bot inventory [--format json]` and `python -m bot audit --reviews [--format csv|json]`.
bot/__main__.py dispatches here."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime

from bot.govern.posture import POSTURE_LABELS, posture_lines
from bot.runtime import run_command


def govern(*, dry_run: bool, report: bool, output_format: str, now: datetime | None) -> int:
    """One pass of the governance job. `--report` (or `--dry-run`) writes and sends nothing."""

    def work(runtime) -> int:
        run = runtime.governance.job.run_once(now, dry_run=dry_run or report)
        if output_format == "json":
            counts = {key: run.counts.get(key, 0) for key in POSTURE_LABELS}
            out = {"counts": counts, "previous": run.previous}
            if not report:
                out["actions"] = run.actions
            json.dump(out, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        if not report:
            verb = "would do" if dry_run else "did"
            for action in run.actions:
                print(f"{verb}: {action}")
            print(f"{len(run.actions)} action(s)")
        if report or output_format == "text":
            for line in posture_lines(run.counts, run.previous):
                print(line)
        return 0

    return run_command("govern", work)


INVENTORY_COLUMNS = ["account_id", "username", "mixpanel_creator", "created", "expires", "last_used"]


def inventory(*, output_format: str) -> int:
    """Every live account the bot did not make (nor adopt): who made it in Mixpanel, when, expiry, use."""
    from bot.govern.inventory import unmanaged

    def work(runtime) -> int:
        entries, _ = runtime.manage.read_entries(None, outside_projects=False)
        rows = [
            {
                "account_id": e.account_id,
                "username": e.username,
                "mixpanel_creator": e.mixpanel_creator,
                "created": e.created_at.isoformat() if e.created_at else None,
                "expires": e.expires_at.isoformat() if e.expires_at else None,
                "last_used": e.last_used.isoformat() if e.last_used else None,
            }
            for e in unmanaged(entries)
        ]
        if output_format == "json":
            json.dump(rows, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            for row in rows:
                print(
                    f"{row['username']} (id {row['account_id']}): made in Mixpanel by user "
                    f"{row['mixpanel_creator']} on {row['created'] or 'an unknown date'}, expires "
                    f"{row['expires'] or 'never'}, last used {row['last_used'] or 'never'}"
                )
            print(f"{len(rows)} account(s) made outside the bot")
        return 0

    return run_command("list the inventory", work)


REVIEW_COLUMNS = [
    "period",
    "started_at",
    "owner_id",
    "account_id",
    "username",
    "answer",
    "answered_by",
    "answered_at",
]


def reviews_export(*, output_format: str) -> int:
    """Every review line: who was asked about which account, and who answered what, when."""
    from bot.audit.export import read_for_export, spreadsheet_cell
    from bot.govern.review_store import ReviewStore

    items = read_for_export("reviews", "review_rounds", lambda store: ReviewStore(store).items())
    if isinstance(items, int):
        return items
    rows = [
        {
            "period": item.period,
            "started_at": item.started_at.isoformat(),
            "owner_id": item.owner_id,
            "account_id": item.account_id,
            "username": item.username,
            "answer": str(item.answer) if item.answer else None,
            "answered_by": item.answered_by,
            "answered_at": item.answered_at.isoformat() if item.answered_at else None,
        }
        for item in items
    ]
    if output_format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    writer = csv.DictWriter(sys.stdout, fieldnames=REVIEW_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: spreadsheet_cell(row[key]) for key in REVIEW_COLUMNS})
    return 0
