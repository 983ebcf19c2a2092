"""Figures, targets and the printed table."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cold_start import FORM_TIMEOUT, ColdStartResult
from bench.config import BASELINE, SLACK_DEADLINE
from bench.results import Flow, ServerResult
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
        forms = [s for s in run.form_seconds]
        slowest = max((INF if s is None else s) for s in forms) if forms else None
        out.append(
            Target(
                f"{run.kind.name}: cold start, {run.people} people: form <= {SLACK_DEADLINE:.0f} s, "
                "<= 1 /me in flight per process",
                None if run.fatal else run.passed,
                run.fatal
                or f"slowest form {fmt_ms(None if slowest is None else slowest * 1000, 0)} ms, "
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


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _inf(value: float | None) -> float:
    return INF if value is None else value


def render(
    info: dict[str, Any],
    servers: list[ServerResult],
    cold: list[ColdStartResult],
    levels: list[int],
    plan: dict[int, int],
    elapsed: float,
) -> str:
    ours = [s for s in servers if s.kind is not BASELINE]
    base = next((s for s in servers if s.kind is BASELINE), None)
    latency = servers[0].mixpanel_latency if servers else (cold[0].mixpanel_latency if cold else 0.0)
    lines: list[str] = []
    add = lines.append
    add("mp-service-account benchmark")
    add(f"machine: {info['cpu']} | nproc {info['nproc']} | {info['python']} | Linux {info['kernel']}")
    add(f"load average before the run: {info.get('loadavg', '?')}; after: {info.get('loadavg_after', '?')}")
    for server in servers:
        tuning = ", ".join(f"{k}={v}" for k, v in server.settings.items())
        add(f"{server.kind.name + ':':<9} {server.kind.description}" + (f" [{tuning}]" if tuning else ""))
    add(
        f"fake Mixpanel answers every call (/me, list, create, ...) after {latency:.2f} s; "
        "fake Slack answers at once; both in this process, on loopback"
    )
    add(
        f"fakes' listen backlog: {LoopbackHTTPServer.request_queue_size} "
        "(http.server's 5 drops SYNs in a burst)"
    )
    add("people = concurrent distinct Slack users; each: command -> views.open -> submit -> token")
    add(
        "rounds: "
        + ", ".join(f"{p} {'person' if p == 1 else 'people'} x {r}" for p, r in plan.items())
        + " (+1 unmeasured warm-up flow per server)"
    )
    add("ack: HTTP round trip of the signed request; Socket Mode: envelope sent -> its ack received")
    add("percentiles: nearest rank; a failed request (error, non-200, no ack in 10 s) is infinitely slow")
    add("")
    for server in servers:
        if server.fatal:
            add(f"!! {server.kind.name} could not be measured: {server.fatal}")
            add("")
    figs = {s.kind.name: figures(s, levels) for s in servers if s.fatal is None}
    names = list(figs)

    add("Ack latency, ms (Slack's deadline is 3000)")
    head = f"{'people':>6} {'request':<10} |" + "|".join(
        f" {'n':>4} {name[:8] + ' p50':>12} {name[:8] + ' p99':>12} {'fail':>8} " for name in names
    )
    if base is not None and "baseline" in figs:
        head += "| " + " ".join(f"{'base/' + n[:6]:>13}" for n in names if n != "baseline")
    add(head)
    add("-" * len(head))
    for people in levels:
        for label, attr in (("command", "command"), ("submission", "submit")):
            row = f"{people:>6} {label:<10} |"
            cells = []
            for name in names:
                st = getattr(figs[name][people], attr)
                cells.append(f" {st.n:>4} {fmt_ms(st.p50, 12)} {fmt_ms(st.p99, 12)} {fmt_fail(st)} ")
            row += "|".join(cells)
            if base is not None and "baseline" in figs:
                b = getattr(figs["baseline"][people], attr)
                row += "| " + " ".join(
                    f"{fmt_ratio(ratio(b.p99, getattr(figs[n][people], attr).p99)):>13}"
                    for n in names
                    if n != "baseline"
                )
            add(row)
    add("")
    add(f"Bot overhead, ms (submit -> token at response_url minus Mixpanel's {latency:.2f} s create)")
    head = f"{'people':>6} |" + "|".join(
        f" {'n':>4} {name[:8] + ' p50':>12} {name[:8] + ' p99':>12} {'fail':>8} " for name in names
    )
    add(head)
    add("-" * len(head))
    for people in levels:
        cells = []
        for name in names:
            o = figs[name][people].overhead
            cells.append(f" {o.n:>4} {fmt_ms(o.p50, 12)} {fmt_ms(o.p99, 12)} {fmt_fail(o)} ")
        add(f"{people:>6} |" + "|".join(cells))
    add("")
    add("Where the overhead goes, ms p50/p99: submission sent -> create reaches Mixpanel (ack, job, claim)")
    add("  | create answered -> token reaches the response_url (delivery)")
    for people in levels:
        add(
            f"{people:>6} | "
            + " | ".join(
                f"{name}: {fmt_ms(f.before_create.p50, 0)}/{fmt_ms(f.before_create.p99, 0)} then "
                f"{fmt_ms(f.after_create.p50, 0)}/{fmt_ms(f.after_create.p99, 0)}"
                for name, f in ((n, figs[n][people]) for n in names)
            )
        )
    add("")
    add(f"{'':<34}" + "".join(f" {s.kind.name:>14}" for s in servers))

    def cols(fn) -> str:
        return "".join(f" {fn(s):>14}" for s in servers)

    add(
        f"{'start-up to first served request':<34}"
        + cols(lambda s: "-" if s.startup is None else f"{s.startup:.2f} s")
    )
    add(
        f"{'peak RSS, largest app process':<34}"
        + cols(lambda s: "-" if s.peak_rss_mb is None else f"{s.peak_rss_mb:.0f} MB")
    )
    add(
        f"{'wall time per level':<34}"
        + cols(
            lambda s: " / ".join(f"{s.level_seconds[p]:.0f}" for p in levels if p in s.level_seconds) + " s"
        )
    )
    add(
        f"{'CPU s per level: app / benchmark':<34}"
        + cols(
            lambda s: " ".join(
                f"{a:.1f}/{b:.1f}" for p in levels if p in s.level_cpu for a, b in [s.level_cpu[p]]
            )
        )
    )
    add("")
    for run in cold:
        add(
            f"Cold start, {run.kind.name}: fresh app, catalog cold, {run.people} people send the command "
            f"at once right after it first answers (start-up {_seconds(run.startup)})"
        )
        if run.fatal:
            add(f"  !! could not be measured: {run.fatal}")
            continue
        forms = stats(run.form_seconds)
        acks = stats(run.command_ack)
        add(
            f"  command -> usable form, ms: p50 {fmt_ms(forms.p50, 0)}, p99 {fmt_ms(forms.p99, 0)}, "
            f"over 3 s {forms.late}, no form within {FORM_TIMEOUT:.0f} s {forms.failed}; "
            f"command ack p99 {fmt_ms(acks.p99, 0)}"
        )
        per_process = ", ".join(f"pid {pid}: {n}" for pid, n in run.me_in_flight.items()) or "none"
        add(f"  /me calls {run.me_calls}; most in flight at once, per app process: {per_process}")
        for error in sorted(set(run.errors))[:5]:
            add(f"    error ({run.errors.count(error)}x) {error}")
        for note in run.notes:
            add(f"    note {note}")
        add("")
    add("Correctness")
    for server in servers:
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
    add("Targets")
    for target in targets(ours, base, levels, cold):
        add(f"  {target.verdict}  {target.name:<72} {target.detail}")
    add("")
    add(f"benchmark took {elapsed:.0f} s")
    return "\n".join(lines)


def to_json(
    info: dict[str, Any],
    servers: list[ServerResult],
    cold: list[ColdStartResult],
    levels: list[int],
    plan: dict[int, int],
) -> dict[str, Any]:
    def server(s: ServerResult) -> dict[str, Any]:
        figs = figures(s, levels) if s.fatal is None else {}
        return {
            "description": s.kind.description,
            "settings": s.settings,
            "fatal": s.fatal,
            "startup_s": s.startup,
            "peak_rss_mb": s.peak_rss_mb,
            "exit_code": s.exit_code,
            "level_seconds": s.level_seconds,
            "level_cpu_seconds": {str(p): {"app": a, "benchmark": b} for p, (a, b) in s.level_cpu.items()},
            "levels": {
                str(p): {
                    "flows": f.flows,
                    "command_ack": f.command.as_dict(),
                    "submit_ack": f.submit.as_dict(),
                    "overhead": f.overhead.as_dict(),
                    "overhead_before_create": f.before_create.as_dict(),
                    "overhead_after_create": f.after_create.as_dict(),
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
                    "before_create_s": f.before_create,
                    "after_create_s": f.after_create,
                    "error": f.error,
                }
                for f in s.flows
            ],
        }

    ours = [s for s in servers if s.kind is not BASELINE]
    base = next((s for s in servers if s.kind is BASELINE), None)
    return {
        "machine": info,
        "mixpanel_latency_s": servers[0].mixpanel_latency if servers else None,
        "plan": {str(p): r for p, r in plan.items()},
        "servers": {s.kind.name: server(s) for s in servers},
        "cold_start": [run.as_dict() for run in cold],
        "targets": [
            {"name": t.name, "passed": t.passed, "detail": t.detail}
            for t in targets(ours, base, levels, cold)
        ],
    }
