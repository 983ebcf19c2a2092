"""The printed table and the JSON of a run."""

from __future__ import annotations

from typing import Any

from bench.cold_start import FORM_TIMEOUT, ColdStartResult
from bench.config import BASELINE
from bench.figures import figures, fmt_fail, fmt_ms, fmt_ratio, ratio, stats
from bench.results import ServerResult
from bench.targets import targets
from tests.fakes._server import LoopbackHTTPServer


def _ms(value: float | None) -> str:
    text = fmt_ms(value, 0)
    return text if text in ("-", "failed") else text + " ms"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


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
            f"  command -> usable form: {forms.n - forms.late - forms.failed} of {forms.n} within 3 s, "
            f"{forms.late} later, {forms.failed} none within {FORM_TIMEOUT:.0f} s; "
            f"p50 {_ms(forms.p50)}, p99 {_ms(forms.p99)}; command ack p99 {_ms(acks.p99)}"
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
