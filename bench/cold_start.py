"""The cold-start level: a fresh app, its project catalog cold, and N people sending the command at once.

Measured per person: from sending the command until a usable form (the create view, opened directly or
completed from the loading view) reaches Slack. Measured at the fake Mixpanel: how many ``/me`` calls
each app process had in flight at once (the caller found from the socket's owner in /proc).
Target: every person has a usable form within Slack's 3 s, with at most one ``/me`` in flight per process.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import SLACK_DEADLINE, ServerKind
from bench.harness import Fakes, fresh_fakes, launch, log_problems, wait_form

FORM_TIMEOUT = 8.0  # well past Slack's 3 s: long enough to see how late, short enough to keep the run short
# Pending form completions are all a cold-start app has to finish when it is stopped.
STOP_GRACE = {"SHUTDOWN_GRACE_SECONDS": "1"}
STOP_TIMEOUT = 5.0


@dataclass
class ColdStartResult:
    kind: ServerKind
    people: int
    mixpanel_latency: float
    log_path: str
    startup: float | None = None
    command_ack: list[float | None] = field(default_factory=list)  # seconds; None = failed
    form_seconds: list[float | None] = field(default_factory=list)  # command sent -> usable form
    errors: list[str] = field(default_factory=list)
    me_calls: int = 0
    me_in_flight: dict[str, int] = field(default_factory=dict)  # pid (or "unknown") -> most at once
    notes: list[str] = field(default_factory=list)
    fatal: str | None = None

    @property
    def worst_in_flight(self) -> int:
        return max(self.me_in_flight.values(), default=0)

    @property
    def passed(self) -> bool:
        on_time = all(s is not None and s <= SLACK_DEADLINE for s in self.form_seconds)
        return self.fatal is None and bool(self.form_seconds) and on_time and self.worst_in_flight <= 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.kind.name,
            "people": self.people,
            "mixpanel_latency_s": self.mixpanel_latency,
            "startup_s": self.startup,
            "command_ack_s": self.command_ack,
            "form_s": self.form_seconds,
            "errors": self.errors,
            "me_calls": self.me_calls,
            "me_max_in_flight_per_process": self.me_in_flight,
            "passed": self.passed,
            "notes": self.notes,
            "fatal": self.fatal,
            "log": self.log_path,
        }


def run_cold_start(
    kind: ServerKind,
    people: int,
    workdir: Path,
    progress: Callable[[str], None],
    *,
    mixpanel_latency: float,
    extra_env: dict[str, str] | None = None,
) -> ColdStartResult:
    workdir = workdir / f"cold-{kind.name}"
    workdir.mkdir(parents=True, exist_ok=True)
    result = ColdStartResult(kind, people, mixpanel_latency, str(workdir / "app.log"))
    users = [f"UC{index:03d}" for index in range(people)]
    try:
        with fresh_fakes(kind, mixpanel_latency, users) as fakes:
            _run(result, fakes, users, workdir, progress, {**STOP_GRACE, **(extra_env or {})})
    except Exception as error:
        result.fatal = f"{type(error).__name__}: {error}"
    return result


def _run(
    result: ColdStartResult,
    fakes: Fakes,
    users: list[str],
    workdir: Path,
    progress: Callable[[str], None],
    extra_env: dict[str, str],
) -> None:
    app, transport, probe = launch(result.kind, fakes, workdir, Path(result.log_path), extra_env)
    slots: list[tuple[float | None, float | None, str | None]] = [(None, None, "not run")] * len(users)
    barrier = threading.Barrier(len(users))

    def person(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            response_url, trigger_id = fakes.slack.new_response_url(), fakes.slack.issue_trigger_id()
            sent = time.monotonic()
            ack = transport.command(users[index], response_url=response_url, trigger_id=trigger_id)
            if ack.error is not None:
                slots[index] = (None, None, f"command: {ack.error}")
                return
            view, at, error = wait_form(fakes.watcher, trigger_id, FORM_TIMEOUT)
            slots[index] = (ack.elapsed, None if view is None else at - sent, error)
        except Exception as error:
            slots[index] = (None, None, f"benchmark error: {error!r}\n{traceback.format_exc()}")

    app.start()
    try:
        result.startup = app.wait_until_serving(probe)
        progress(f"cold start, {result.kind.name}: serving after {result.startup:.2f}s; {len(users)} people")
        with ThreadPoolExecutor(max_workers=len(users), thread_name_prefix="cold") as pool:
            for future in [pool.submit(person, index) for index in range(len(users))]:
                future.result()
    finally:
        stopping = time.monotonic()
        code = app.stop(timeout=STOP_TIMEOUT)
        if code != 0:
            result.notes.append(
                f"on SIGTERM the app exited with {code} after {time.monotonic() - stopping:.1f} s "
                f"(SHUTDOWN_GRACE_SECONDS=1; killed after {STOP_TIMEOUT:.0f} s)"
            )
    note = log_problems(app)
    if note:
        result.notes.append(note)
    result.command_ack = [ack for ack, _, _ in slots]
    result.form_seconds = [form for _, form, _ in slots]
    result.errors = [error.splitlines()[0] for _, _, error in slots if error]
    result.me_calls = len(fakes.mixpanel.me_calls())
    peaks = fakes.mixpanel.max_in_flight("me")
    result.me_in_flight = {
        ("unknown" if pid is None else str(pid)): n for pid, n in sorted(peaks.items(), key=str)
    }
    forms = sorted(s for s in result.form_seconds if s is not None)
    progress(
        f"cold start, {result.kind.name}: slowest form {forms[-1] if forms else float('nan'):.2f}s, "
        f"{result.me_calls} /me calls, most in flight per process {result.worst_in_flight}"
    )
