"""Figures, targets and the printed table."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import MIXPANEL_CREATE_LATENCY, SLACK_DEADLINE, Flow, ServerResult
from tests.fakes._server import LoopbackHTTPServer

INF = math.inf
TARGET_P99_ACK_MS = 250.0
TARGET_RATIO = 10.0
TARGET_OVERHEAD_P50_MS = 150.0
TARGET_STARTUP_S = 2.0
TARGET_RSS_MB = 150.0
TARGET_LEVEL = 50


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


def overhead_samples(flows: list[Flow]) -> list[float | None]:
    return [
        None if f.token_latency is None else f.token_latency - MIXPANEL_CREATE_LATENCY
        for f in flows
        if f.submitted
    ]


@dataclass
class LevelFigures:
    people: int
    flows: int
    command: Stats
    submit: Stats
    overhead: Stats


def figures(result: ServerResult, levels: list[int]) -> dict[int, LevelFigures]:
    out = {}
    for people in levels:
        flows = result.measured(people)
        out[people] = LevelFigures(
            people=people,
            flows=len(flows),
            command=stats(command_samples(flows)),
            submit=stats(submit_samples(flows)),
            overhead=stats(overhead_samples(flows)),
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


@dataclass
class Target:
    name: str
    passed: bool | None  # None: not measured in this run
    detail: str

    @property
    def verdict(self) -> str:
        return "n/a " if self.passed is None else ("PASS" if self.passed else "MISS")


def targets(ours: ServerResult, base: ServerResult | None, levels: list[int]) -> list[Target]:
    ours_fig = figures(ours, levels) if ours.fatal is None else {}
    base_fig = figures(base, levels) if base is not None and base.fatal is None else {}
    top = TARGET_LEVEL if TARGET_LEVEL in levels else max(levels)
    where = f"at {top} people" + ("" if top == TARGET_LEVEL else f" (target is for {TARGET_LEVEL}; not run)")
    out = []
    fig = ours_fig.get(top)
    if fig is None:
        out.append(Target(f"p99 ack <= {TARGET_P99_ACK_MS:.0f} ms {where}", None, "not measured"))
    else:
        worst = max(_inf(fig.command.p99), _inf(fig.submit.p99))
        out.append(
            Target(
                f"p99 ack <= {TARGET_P99_ACK_MS:.0f} ms {where}",
                worst <= TARGET_P99_ACK_MS,
                f"command {fmt_ms(fig.command.p99, 0)} ms, submission {fmt_ms(fig.submit.p99, 0)} ms",
            )
        )
    bfig = base_fig.get(top)
    if fig is None or bfig is None:
        out.append(
            Target(
                f">= {TARGET_RATIO:.0f}x better than the baseline's p99 {where}",
                None,
                "baseline not run" if base is None else "not measured",
            )
        )
    else:
        r_cmd, r_sub = ratio(bfig.command.p99, fig.command.p99), ratio(bfig.submit.p99, fig.submit.p99)
        passed = all(r is not None and r >= TARGET_RATIO for r in (r_cmd, r_sub))
        out.append(
            Target(
                f">= {TARGET_RATIO:.0f}x better than the baseline's p99 {where}",
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
                f"overhead p50 <= {TARGET_OVERHEAD_P50_MS:.0f} ms (every level)",
                passed,
                f"{detail} ms (worst at {worst_level.people} people)",
            )
        )
    else:
        out.append(Target(f"overhead p50 <= {TARGET_OVERHEAD_P50_MS:.0f} ms", None, "not measured"))
    out.append(_at_most(f"start-up <= {TARGET_STARTUP_S:.0f} s", ours.startup, TARGET_STARTUP_S, "{:.2f} s"))
    out.append(
        _at_most(
            f"peak RSS <= {TARGET_RSS_MB:.0f} MB per process", ours.peak_rss_mb, TARGET_RSS_MB, "{:.0f} MB"
        )
    )
    return out


def _at_most(name: str, value: float | None, limit: float, detail: str) -> Target:
    """A target met when the measured ``value`` is at most ``limit``; ``detail`` formats the value."""
    if value is None:
        return Target(name, None, "not measured")
    return Target(name, value <= limit, detail.format(value))


def _inf(value: float | None) -> float:
    return INF if value is None else value


def render(
    info: dict[str, Any],
    ours: ServerResult,
    base: ServerResult | None,
    levels: list[int],
    plan: dict[int, int],
    elapsed: float,
) -> str:
    lines: list[str] = []
    add = lines.append
    add("mp-service-account benchmark")
    add(f"machine: {info['cpu']} | nproc {info['nproc']} | {info['python']} | Linux {info['kernel']}")
    add(f"ours:     {ours.kind.description}")
    if base is not None:
        add(f"baseline: {base.kind.description}")
    add(
        f"fake Mixpanel answers create in {MIXPANEL_CREATE_LATENCY:.2f} s; fake Slack answers at once; "
        "both in this process, on loopback"
    )
    backlog = LoopbackHTTPServer.request_queue_size
    add(f"fakes' listen backlog: {backlog} (http.server's 5 drops SYNs in a burst)")
    add("people = concurrent distinct Slack users; each: command -> views.open -> submit -> token")
    add(
        "rounds: "
        + ", ".join(f"{p} {'person' if p == 1 else 'people'} x {r}" for p, r in plan.items())
        + " (+1 unmeasured warm-up flow per server)"
    )
    add("percentiles: nearest rank; a failed request (error, non-200, >10 s) counts as infinitely slow")
    add("")
    for server in (ours, base):
        if server is not None and server.fatal:
            add(f"!! {server.kind.name} could not be measured: {server.fatal}")
            add("")
    ours_fig = figures(ours, levels) if ours.fatal is None else {}
    base_fig = figures(base, levels) if base is not None and base.fatal is None else {}
    both = bool(base_fig)

    add("Ack latency, ms (HTTP round trip of the signed request; Slack's deadline is 3000)")
    head = f"{'people':>6} {'request':<10} {'n':>4} | {'ours p50':>8} {'ours p99':>8} {'fail':>8}"
    if both:
        head += f" | {'n':>4} {'base p50':>8} {'base p99':>8} {'fail':>8} | base/ours p99"
    add(head)
    add("-" * len(head))
    for people in levels:
        for label, attr in (("command", "command"), ("submission", "submit")):
            o = getattr(ours_fig[people], attr) if people in ours_fig else None
            row = f"{people:>6} {label:<10} {(o.n if o else 0):>4} | "
            row += f"{fmt_ms(o.p50 if o else None)} {fmt_ms(o.p99 if o else None)} "
            row += fmt_fail(o) if o else f"{'-':>8}"
            if both:
                b = getattr(base_fig[people], attr)
                row += f" | {b.n:>4} {fmt_ms(b.p50)} {fmt_ms(b.p99)} {fmt_fail(b)} | "
                row += fmt_ratio(ratio(b.p99, o.p99 if o else None))
            add(row)
    add("")
    add(
        f"Bot overhead, ms (submit -> token at response_url minus Mixpanel's {MIXPANEL_CREATE_LATENCY:.2f} s)"
    )
    head = f"{'people':>6} {'n':>4} | {'ours p50':>8} {'ours p99':>8} {'fail':>8}"
    if both:
        head += f" | {'n':>4} {'base p50':>8} {'base p99':>8} {'fail':>8}"
    add(head)
    add("-" * len(head))
    for people in levels:
        o = ours_fig[people].overhead if people in ours_fig else None
        row = f"{people:>6} {(o.n if o else 0):>4} | "
        row += f"{fmt_ms(o.p50 if o else None)} {fmt_ms(o.p99 if o else None)} "
        row += fmt_fail(o) if o else f"{'-':>8}"
        if both:
            b = base_fig[people].overhead
            row += f" | {b.n:>4} {fmt_ms(b.p50)} {fmt_ms(b.p99)} {fmt_fail(b)}"
        add(row)
    add("")
    add(f"{'':<34} {'ours':>14}" + (f" {'baseline':>14}" if base is not None else ""))

    def both_cols(fn) -> str:
        text = f" {fn(ours):>14}"
        if base is not None:
            text += f" {fn(base):>14}"
        return text

    add(
        f"{'start-up to first served request':<34}"
        + both_cols(lambda s: "-" if s.startup is None else f"{s.startup:.2f} s")
    )
    add(
        f"{'peak RSS, largest app process':<34}"
        + both_cols(lambda s: "-" if s.peak_rss_mb is None else f"{s.peak_rss_mb:.0f} MB")
    )
    add(
        f"{'wall time per level':<34}"
        + both_cols(
            lambda s: " / ".join(f"{s.level_seconds[p]:.0f}" for p in levels if p in s.level_seconds) + " s"
        )
    )
    add("")
    add("Correctness")
    for server in (ours, base):
        if server is None:
            continue
        c = server.counts
        if c:
            add(
                f"  {server.kind.name}: {c['flows']} flows, {c['submitted']} submitted, "
                f"{c['creates']} Mixpanel creates, {c['own_token_delivered']} got exactly their own token, "
                f"{c['wrong_token']} got another's, {c['leaked']} tokens anywhere else in Slack, "
                f"{c['failed_flows']} flows failed -> " + ("OK" if not server.problems else "FAILED")
            )
        for problem in server.problems[:20]:
            add(f"    FAIL {problem}")
        if len(server.problems) > 20:
            add(f"    ... and {len(server.problems) - 20} more")
        for note in server.notes[:10]:
            add(f"    note {note}")
    add("")
    add("Targets (ours)")
    for target in targets(ours, base, levels):
        add(f"  {target.verdict}  {target.name:<58} {target.detail}")
    add("")
    add(f"benchmark took {elapsed:.0f} s")
    return "\n".join(lines)


def to_json(
    info: dict[str, Any],
    ours: ServerResult,
    base: ServerResult | None,
    levels: list[int],
    plan: dict[int, int],
) -> dict[str, Any]:
    def server(s: ServerResult) -> dict[str, Any]:
        figs = figures(s, levels) if s.fatal is None else {}
        return {
            "description": s.kind.description,
            "fatal": s.fatal,
            "startup_s": s.startup,
            "peak_rss_mb": s.peak_rss_mb,
            "exit_code": s.exit_code,
            "level_seconds": s.level_seconds,
            "levels": {
                str(p): {
                    "flows": f.flows,
                    "command_ack": f.command.as_dict(),
                    "submit_ack": f.submit.as_dict(),
                    "overhead": f.overhead.as_dict(),
                }
                for p, f in figs.items()
            },
            "counts": s.counts,
            "problems": s.problems,
            "notes": s.notes,
            "log": s.log_path,
            "samples": [
                {
                    "people": f.level,
                    "round": f.round,
                    "user": f.user_id,
                    "measured": f.measured,
                    "command_ack_s": f.command_ack,
                    "submit_ack_s": f.submit_ack,
                    "token_latency_s": f.token_latency,
                    "error": f.error,
                }
                for f in s.flows
            ],
        }

    return {
        "machine": info,
        "mixpanel_create_latency_s": MIXPANEL_CREATE_LATENCY,
        "plan": {str(p): r for p, r in plan.items()},
        "ours": server(ours),
        "baseline": server(base) if base is not None else None,
        "targets": [
            {"name": t.name, "passed": t.passed, "detail": t.detail} for t in targets(ours, base, levels)
        ],
    }
