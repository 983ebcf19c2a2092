"""Figures from the samples: nearest-rank percentiles per level, ratios, and how they are printed."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import SLACK_DEADLINE
from bench.results import Flow, ServerResult

INF = math.inf


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    return {
        "cpu": model,
        "nproc": cpus,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
    }


def percentile(samples: list[float | None], p: float) -> float | None:
    """Nearest-rank percentile; a failed sample (None) counts as infinitely slow. None if no samples."""
    if not samples:
        return None
    ordered = sorted(INF if s is None else s for s in samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Stats:
    n: int
    p50: float | None  # ms
    p99: float | None
    failed: int
    late: int  # answered, but after Slack's 3 s

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "p50_ms": _json_num(self.p50),
            "p99_ms": _json_num(self.p99),
            "failed": self.failed,
            "late_over_3s": self.late,
        }


def _json_num(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "inf" if math.isinf(value) else round(value, 2)


def stats(samples: list[float | None]) -> Stats:
    ms = [None if s is None else s * 1000 for s in samples]
    return Stats(
        n=len(ms),
        p50=percentile(ms, 50),
        p99=percentile(ms, 99),
        failed=sum(1 for s in ms if s is None),
        late=sum(1 for s in ms if s is not None and s > SLACK_DEADLINE * 1000),
    )


def command_samples(flows: list[Flow]) -> list[float | None]:
    return [f.command_ack for f in flows]


def submit_samples(flows: list[Flow]) -> list[float | None]:
    # Only people who got as far as submitting; a flow that died earlier has no submission to time.
    return [f.submit_ack for f in flows if f.submitted]


def overhead_samples(flows: list[Flow], create_latency: float) -> list[float | None]:
    return [
        None if f.token_latency is None else f.token_latency - create_latency for f in flows if f.submitted
    ]


@dataclass
class LevelFigures:
    people: int
    flows: int
    command: Stats
    submit: Stats
    overhead: Stats
    before_create: Stats
    after_create: Stats


def figures(result: ServerResult, levels: list[int]) -> dict[int, LevelFigures]:
    out = {}
    for people in levels:
        flows = result.measured(people)
        out[people] = LevelFigures(
            people=people,
            flows=len(flows),
            command=stats(command_samples(flows)),
            submit=stats(submit_samples(flows)),
            overhead=stats(overhead_samples(flows, result.mixpanel_latency)),
            before_create=stats([f.before_create for f in flows if f.submitted]),
            after_create=stats([f.after_create for f in flows if f.submitted]),
        )
    return out


def ratio(base: float | None, ours: float | None) -> float | None:
    if base is None or ours is None or math.isinf(ours):
        return None
    if ours <= 0:
        return INF
    return base / ours


def fmt_ms(value: float | None, width: int = 8) -> str:
    if value is None:
        text = "-"
    elif math.isinf(value):
        text = "failed"
    elif value >= 10_000:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.1f}"
    return text.rjust(width)


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf (fails)"
    return f"{value:.1f}x"


def fmt_fail(s: Stats) -> str:
    text = str(s.failed)
    if s.late:
        text += f"+{s.late}late"
    return text.rjust(8)


def inf_if_none(value: float | None) -> float:
    return INF if value is None else value
