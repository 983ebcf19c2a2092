"""Operator commands.

`python -m bot audit --since YYYY-MM-DD [--format csv|json]`: the audit trail for compliance reviews.
`python -m bot doctor [--format text|json]`: check a deployment's settings, credentials and policy.
`python -m bot remind [--dry-run]`: send the expiry reminders that are due (for cron, Heroku Scheduler or
a Kubernetes CronJob); safe beside a running app, since each reminder is claimed once in the database.
`python -m bot govern [--dry-run] [--report] [--format text|json]`: idle accounts, owners who left,
accounts made outside the bot, reviews and the posture (docs/governance.md); safe beside a running app.
`python -m bot inventory [--format text|json]`: every account the bot did not make.
`python -m bot audit --reviews [--format csv|json]`: the periodic reviews' answers.
`python -m bot rotate [--dry-run]`: move on the rotations of accounts that live in a secret store (due, or
under way); safe beside running instances and concurrent runs, since each step is claimed in the database.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime


def _since(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date as YYYY-MM-DD") from None


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected a time as YYYY-MM-DDTHH:MM:SSZ") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    audit = commands.add_parser("audit", help="print the audit trail")
    audit.add_argument("--since", type=_since, help="first day to include (UTC), YYYY-MM-DD")
    audit.add_argument("--reviews", action="store_true", help="export the periodic reviews' answers instead")
    audit.add_argument("--format", choices=["csv", "json"], default="csv")
    doctor = commands.add_parser(
        "doctor", help="check this deployment: one line per check, exit 1 on a failure"
    )
    doctor.add_argument("--format", choices=["text", "json"], default="text")
    remind = commands.add_parser("remind", help="send the expiry reminders that are due")
    remind.add_argument("--dry-run", action="store_true", help="print what would be sent; change nothing")
    remind.add_argument("--now", type=_moment, help="act as if it were this time (UTC); for tests and drills")
    govern = commands.add_parser("govern", help="run the governance job once (docs/governance.md)")
    govern.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    govern.add_argument("--report", action="store_true", help="print the posture counts only, change nothing")
    govern.add_argument("--format", choices=["text", "json"], default="text")
    govern.add_argument("--now", type=_moment, help="act as if it were this time (UTC); for tests and drills")
    inventory = commands.add_parser("inventory", help="list every account the bot did not make")
    inventory.add_argument("--format", choices=["text", "json"], default="text")
    rotate = commands.add_parser("rotate", help="rotate the accounts in secret stores that are due")
    rotate.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    rotate.add_argument("--now", type=_moment, help="act as if it were this time (UTC); for tests and drills")
    args = parser.parse_args(argv)
    if args.command == "rotate":
        return _rotate(dry_run=args.dry_run, now=args.now)
    if args.command == "govern":
        from bot.govern.cli import govern as run_govern

        return run_govern(dry_run=args.dry_run, report=args.report, output_format=args.format, now=args.now)
    if args.command == "inventory":
        from bot.govern.cli import inventory as run_inventory

        return run_inventory(output_format=args.format)
    if args.command == "remind":
        return _remind(dry_run=args.dry_run, now=args.now)
    if args.command == "doctor":
        from bot.doctor import main as run_doctor

        return run_doctor(args.format)
    if args.reviews:
        from bot.govern.cli import reviews_export

        return reviews_export(output_format=args.format)
    if args.since is None:
        parser.error("audit needs --since YYYY-MM-DD (or --reviews)")
    from bot.audit.export import export

    return export(since=args.since, output_format=args.format)


def _remind(*, dry_run: bool, now: datetime | None) -> int:
    from bot.runtime import run_command

    def work(runtime) -> int:
        reminders = runtime.reminders.run_once(now, dry_run=dry_run)
        verb = "would send" if dry_run else "sent"
        for reminder in reminders:
            print(f"{verb}: {reminder.describe(runtime.policy.audit_channel)}")
        print(f"{len(reminders)} reminder(s) {verb}")
        return 0

    return run_command("send reminders", work)


def _rotate(*, dry_run: bool, now: datetime | None) -> int:
    from bot.runtime import run_command

    def work(runtime) -> int:
        planned = runtime.rotation.run_once(now, dry_run=dry_run)
        verb = "would rotate" if dry_run else "rotated"
        for item in planned:
            print(f"{verb}: {item.describe()}")
        print(f"{len(planned)} account(s) {'planned' if dry_run else 'looked at'}")
        return 0

    return run_command("rotate", work)


if __name__ == "__main__":
    sys.exit(main())
