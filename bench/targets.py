"""The targets of issue 9, judged per server (HTTP mode, Socket Mode) and per cold-start run."""

from __future__ import annotations

from dataclasses import dataclass

from bench.cold_start import ColdStartResult
from bench.config import SLACK_DEADLINE
from bench.figures import LevelFigures, figures, fmt_ms, fmt_ratio, ratio
from bench.figures import inf_if_none as _inf
from bench.results import ServerResult

TARGET_P99_ACK_MS = 250.0
TARGET_RATIO = 10.0
TARGET_OVERHEAD_P50_MS = 150.0
TARGET_STARTUP_S = 2.0
TARGET_RSS_MB = 150.0
TARGET_LEVEL = 50


@dataclass
class Target:
    name: str
    passed: bool | None  # None: not measured in this run
    detail: str

    @property
    def verdict(self) -> str:
        return "n/a " if self.passed is None else ("PASS" if self.passed else "MISS")


def targets(
    servers: list[ServerResult], base: ServerResult | None, levels: list[int], cold: list[ColdStartResult]
) -> list[Target]:
    """Every target, for each of our servers (HTTP mode, Socket Mode) and the cold-start runs."""
    base_fig = figures(base, levels) if base is not None and base.fatal is None else {}
    top = TARGET_LEVEL if TARGET_LEVEL in levels else max(levels)
    where = f"at {top} people" + ("" if top == TARGET_LEVEL else f" (target is for {TARGET_LEVEL}; not run)")
    out = []
    for ours in servers:
        out.extend(_server_targets(ours, base, base_fig, levels, top, where))
    for run in cold:
        on_time = sum(1 for s in run.form_seconds if s is not None and s <= SLACK_DEADLINE)
        out.append(
            Target(
                f"{run.kind.name}: cold start, {run.people} people: form <= {SLACK_DEADLINE:.0f} s, "
                "<= 1 /me in flight per process",
                None if run.fatal else run.passed,
                run.fatal
                or f"{on_time} of {len(run.form_seconds)} forms within {SLACK_DEADLINE:.0f} s, "
                f"/me in flight at most {run.worst_in_flight} ({run.me_calls} calls)",
            )
        )
    return out


def _server_targets(
    ours: ServerResult,
    base: ServerResult | None,
    base_fig: dict[int, LevelFigures],
    levels: list[int],
    top: int,
    where: str,
) -> list[Target]:
    name = ours.kind.name
    ours_fig = figures(ours, levels) if ours.fatal is None else {}
    out = []
    fig = ours_fig.get(top)
    if fig is None:
        out.append(Target(f"{name}: p99 ack <= {TARGET_P99_ACK_MS:.0f} ms {where}", None, "not measured"))
    else:
        worst = max(_inf(fig.command.p99), _inf(fig.submit.p99))
        out.append(
            Target(
                f"{name}: p99 ack <= {TARGET_P99_ACK_MS:.0f} ms {where}",
                worst <= TARGET_P99_ACK_MS,
                f"command {fmt_ms(fig.command.p99, 0)} ms, submission {fmt_ms(fig.submit.p99, 0)} ms",
            )
        )
    bfig = base_fig.get(top)
    if fig is None or bfig is None:
        out.append(
            Target(
                f"{name}: >= {TARGET_RATIO:.0f}x better than the baseline's p99 {where}",
                None,
                "baseline not run" if base is None else "not measured",
            )
        )
    else:
        r_cmd, r_sub = ratio(bfig.command.p99, fig.command.p99), ratio(bfig.submit.p99, fig.submit.p99)
        passed = all(r is not None and r >= TARGET_RATIO for r in (r_cmd, r_sub))
        out.append(
            Target(
                f"{name}: >= {TARGET_RATIO:.0f}x better than the baseline's p99 {where}",
                passed,
                f"command {fmt_ratio(r_cmd)}, submission {fmt_ratio(r_sub)}",
            )
        )
    if ours_fig:
        worst_level = max(ours_fig.values(), key=lambda f: _inf(f.overhead.p50))
        passed = all(_inf(f.overhead.p50) <= TARGET_OVERHEAD_P50_MS for f in ours_fig.values())
        detail = ", ".join(f"{p}p {fmt_ms(f.overhead.p50, 0)}" for p, f in ours_fig.items())
        out.append(
            Target(
                f"{name}: overhead p50 <= {TARGET_OVERHEAD_P50_MS:.0f} ms (every level)",
                passed,
                f"{detail} ms (worst at {worst_level.people} people)",
            )
        )
    else:
        out.append(Target(f"{name}: overhead p50 <= {TARGET_OVERHEAD_P50_MS:.0f} ms", None, "not measured"))
    out.append(
        _at_most(f"{name}: start-up <= {TARGET_STARTUP_S:.0f} s", ours.startup, TARGET_STARTUP_S, "{:.2f} s")
    )
    out.append(
        _at_most(
            f"{name}: peak RSS <= {TARGET_RSS_MB:.0f} MB per process",
            ours.peak_rss_mb,
            TARGET_RSS_MB,
            "{:.0f} MB",
        )
    )
    return out


def _at_most(name: str, value: float | None, limit: float, detail: str) -> Target:
    """A target met when the measured ``value`` is at most ``limit``; ``detail`` formats the value."""
    if value is None:
        return Target(name, None, "not measured")
    return Target(name, value <= limit, detail.format(value))
