"""``python -m bench``: run the benchmark, print the table, exit 1 if any correctness check failed.

Exit codes: 0 every check held (performance targets may still be MISSed: they never fail the run),
1 a correctness check failed, 2 a server could not be started or measured at all.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.harness import BASELINE, FAKE_BACKLOG, OURS, ServerBench

DEFAULT_LEVELS = (1, 10, 50)


def rounds_for(people: int, quick: bool) -> int:
    """1 person: 20 sequential flows; otherwise enough rounds for ~30 samples, at least 2."""
    if quick:
        return 3 if people == 1 else 1
    if people == 1:
        return 20
    return max(2, -(-30 // people))


def parse_levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not levels or levels[0] < 1 or levels[-1] > 500:
        raise argparse.ArgumentTypeError("levels must be between 1 and 500")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument(
        "--levels",
        type=parse_levels,
        default=list(DEFAULT_LEVELS),
        help="concurrent people per level, comma-separated (default: 1,10,50)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip Bolt's development server")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (app logs, databases)")
    args = parser.parse_args(argv)

    levels: list[int] = args.levels
    plan = {people: rounds_for(people, args.quick) for people in levels}
    info = report.machine()
    workdir = Path(tempfile.mkdtemp(prefix="mpsa-bench-"))
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    progress(f"work dir {workdir}; plan {plan}")
    info["fake_backlog"] = FAKE_BACKLOG
    ours = ServerBench(OURS, list(plan.items()), workdir, progress).run()
    base = None
    if not args.no_baseline:
        base = ServerBench(BASELINE, list(plan.items()), workdir, progress).run()
    elapsed = time.perf_counter() - started

    print(report.render(info, ours, base, levels, plan, elapsed))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(info, ours, base, levels, plan), indent=2) + "\n")
        print(f"results written to {args.json}")

    servers = [s for s in (ours, base) if s is not None]
    failed = any(s.problems for s in servers)
    fatal = any(s.fatal for s in servers)
    if failed or fatal or args.keep:
        print(f"app logs and databases kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        return 1
    return 2 if fatal else 0
