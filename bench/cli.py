"""``python -m bench``: run the benchmark, print the table, write JSON and the chart; exit 1 if any
correctness check failed.

Exit codes: 0 every check held (performance targets may still be MISSed: they never fail the run),
1 a correctness check failed, 2 a server could not be started or measured at all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.cold_start import run_cold_start
from bench.config import BASELINE, MIXPANEL_LATENCY, OURS, REPO_ROOT, SOCKET
from bench.figures import machine
from bench.harness import ServerBench

DEFAULT_LEVELS = (1, 10, 50)
DEFAULT_OUT = REPO_ROOT / "docs"


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


def parse_setting(text: str) -> tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return match.group(1).upper(), match.group(2)


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError("must be between 0 and 10 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load benchmark: our bot in HTTP mode and Socket Mode, and the baseline, against fakes.",
        epilog="Exit codes: 0 every correctness check held (targets may still be MISSed), 1 a check failed, "
        "2 a server could not be measured.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="1 round per level: a smoke run (writes no files unless asked)")
    add(
        "--levels", type=parse_levels, default=list(DEFAULT_LEVELS), help="people per level (default 1,10,50)"
    )
    add(
        "--mixpanel-latency",
        type=parse_seconds,
        default=MIXPANEL_LATENCY,
        metavar="SECONDS",
        help=f"every fake Mixpanel call takes this long (default {MIXPANEL_LATENCY})",
    )
    add(
        "--cold-start", type=int, default=50, metavar="PEOPLE", help="people in the cold-start level; 0: skip"
    )
    add(
        "--destination",
        choices=["vault"],
        help="every flow writes its token to this secret store (a FakeVault) instead of to its requester",
    )
    add("--no-baseline", action="store_true", help="skip Bolt's development server")
    add("--no-socket", action="store_true", help="skip Socket Mode")
    add("--no-http", action="store_true", help="skip HTTP mode")
    add(
        "--set",
        type=parse_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an app setting for our servers, e.g. WEB_CONCURRENCY=2 or SOCKET_MODE_CONCURRENCY=16",
    )
    add(
        "--out",
        type=Path,
        metavar="DIR",
        help="write benchmark.txt and benchmark.png here (full runs: docs/)",
    )
    add("--json", type=Path, metavar="PATH", help="write the results, with every sample, as JSON here")
    add("--chart", type=Path, metavar="PATH", help="draw the chart here (.png or .svg)")
    add("--keep", action="store_true", help="keep the work dir (app logs, databases)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    levels: list[int] = args.levels
    plan = {people: rounds_for(people, args.quick) for people in levels}
    out: Path | None = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    json_path = args.json
    chart_path = args.chart or (out / "benchmark.png" if out else None)
    text_path = out / "benchmark.txt" if out else None

    info = machine()
    info["loadavg"] = _loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="mpsa-bench-"))
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    progress(f"work dir {workdir}; plan {plan}; load average {info['loadavg']}")
    settings = dict(args.set)
    kinds = [k for k, skip in ((OURS, args.no_http), (SOCKET, args.no_socket)) if not skip]
    if not args.no_baseline:
        kinds.append(BASELINE)
    latency = args.mixpanel_latency
    servers = []
    for kind in kinds:
        env = {} if kind is BASELINE else settings
        bench = ServerBench(
            kind,
            list(plan.items()),
            workdir,
            progress,
            mixpanel_latency=latency,
            extra_env=env,
            destination=args.destination,
        )
        servers.append(bench.run())
    cold = []
    if args.cold_start > 0:
        for kind in (k for k in kinds if k is not BASELINE):
            cold.append(
                run_cold_start(
                    kind, args.cold_start, workdir, progress, mixpanel_latency=latency, extra_env=settings
                )
            )
    elapsed = time.perf_counter() - started
    info["loadavg_after"] = _loadavg()

    table = report.render(info, servers, cold, levels, plan, elapsed)
    print(table)
    if text_path:
        text_path.parent.mkdir(parents=True, exist_ok=True)
        text_path.write_text(table + "\n")
        print(f"table written to {text_path}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        results = report.to_json(info, servers, cold, levels, plan)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {json_path}")
    if chart_path and any(s.fatal is None for s in servers):
        from bench.chart import draw

        subtitle = (
            f"{info['nproc']} cores, load average {info['loadavg']}; Mixpanel {latency:.1f} s per call; "
            f"{time.strftime('%Y-%m-%d', time.gmtime())}"
        )
        print(f"chart written to {draw(servers, levels, chart_path, subtitle)}")

    failed = any(s.problems for s in servers)
    fatal = any(s.fatal for s in servers) or any(c.fatal for c in cold)
    log_notes = any("app log has" in note for run in [*servers, *cold] for note in run.notes)
    if failed or fatal or log_notes or args.keep:
        print(f"app logs and databases kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        return 1
    return 2 if fatal else 0


def _loadavg() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"
