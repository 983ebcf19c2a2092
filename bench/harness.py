"""Drive one app server as Slack would: spawn it against fresh fakes, run people's flows, check the tokens.

Every measurement is taken from outside the app process:
- ack latency, HTTP mode: the HTTP round trip of the signed request (``time.perf_counter``);
- ack latency, Socket Mode: from handing the envelope to the WebSocket until its ack arrives, stamped by
  the fake Socket Mode server (``bench.fakes.TimedSocketMode``);
- submit-to-token: from just before the view submission is sent until the token's POST arrives at the
  person's response_url (``SlackCall.at``; both ends are ``time.monotonic``, the fakes' clock);
- start-up: from just before the spawn until a ``/mp-service-account help`` command is answered;
- peak RSS: the largest ``VmHWM`` among the app's processes (the gunicorn master and its workers), read
  just before it is stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.app_process import AppProcess, app_environment, free_port
from bench.config import (
    APP_TOKEN,
    BOT_TOKEN,
    CLIENT_TIMEOUT,
    DESTINATION_NAME,
    MP_SECRET,
    MP_USERNAME,
    ORG_ID,
    PROBE_USER,
    PROJECT_ID,
    TOKEN_RE,
    TOKEN_TIMEOUT,
    USER_TZ,
    VIEW_TIMEOUT,
    WARMUP_USER,
    ServerKind,
)
from bench.fakes import BenchVault, TimedMixpanel, TimedSocketMode
from bench.results import Flow, ServerResult
from bench.transport import HttpTransport, SocketTransport
from bench.watcher import SlackWatcher
from bot.create import views
from bot.settings import default_process_count, default_socket_mode_processes
from tests import clock
from tests.fakes.slack_api import FakeSlack, SlackCall

Transport = HttpTransport | SocketTransport


def form_values(username: str, destination: str | None = None) -> dict[str, Any]:
    """A valid form: keyed by block id, as tests/slack_requests.build_view_state expects. With a destination,
    the token goes there, into a secret named like the account."""
    values: dict[str, Any] = {
        views.BLOCK_USERNAME: username,
        views.BLOCK_ROLE: "analyst",
        views.BLOCK_PROJECTS: [str(PROJECT_ID)],
        views.BLOCK_EXPIRY: clock.form_expiry(30, USER_TZ),
    }
    if destination is not None:
        values[views.BLOCK_DESTINATION] = DESTINATION_NAME
        values[views.BLOCK_SECRET_NAME] = username
    return values


def ok_view(call: SlackCall) -> dict[str, Any] | None:
    response = call.response if isinstance(call.response, dict) else {}
    return response.get("view") if response.get("ok") else None


@dataclass
class Fakes:
    slack: FakeSlack
    mixpanel: TimedMixpanel
    socket_mode: TimedSocketMode | None
    watcher: SlackWatcher
    vault: BenchVault | None = None  # the --destination vault level's secret store


@contextlib.contextmanager
def fresh_fakes(
    kind: ServerKind, mixpanel_latency: float, users: list[str], *, destination: str | None = None
) -> Iterator[Fakes]:
    """Fake Slack (and its Socket Mode server for `kind`) and a fake Mixpanel slow on every route; with
    `destination`, the fake secret store every flow writes to."""
    with contextlib.ExitStack() as stack:
        slack = stack.enter_context(FakeSlack(bot_token=BOT_TOKEN))
        mixpanel = stack.enter_context(
            TimedMixpanel(username=MP_USERNAME, secret=MP_SECRET, organizations={ORG_ID: "Acme"})
        )
        mixpanel.slow_everywhere(mixpanel_latency)
        socket_mode = None
        if kind.socket_mode:
            socket_mode = stack.enter_context(TimedSocketMode())
            slack.socket_mode_url = socket_mode.url
            slack.app_token = APP_TOKEN
        for user in users:
            slack.add_user(user)
        watcher = SlackWatcher(slack).start()
        stack.callback(watcher.stop)
        vault = stack.enter_context(BenchVault()) if destination == "vault" else None
        yield Fakes(slack, mixpanel, socket_mode, watcher, vault)


def launch(
    kind: ServerKind, fakes: Fakes, workdir: Path, log_path: Path, extra_env: dict[str, str]
) -> tuple[AppProcess, Transport, Callable[[], bool]]:
    """Spawn the app pointed at `fakes`; return it, a transport to it and a probe that it serves."""
    port = free_port()
    env = {**app_environment(fakes.slack, fakes.mixpanel, workdir, port, vault=fakes.vault), **extra_env}
    if kind.socket_mode:
        assert fakes.socket_mode is not None
        env["SLACK_APP_TOKEN"] = APP_TOKEN
        transport: Transport = SocketTransport(fakes.socket_mode, CLIENT_TIMEOUT)
        probe_transport: Transport = SocketTransport(fakes.socket_mode, 2)
    else:
        url = f"http://127.0.0.1:{port}/slack/events"
        transport, probe_transport = HttpTransport(url, CLIENT_TIMEOUT), HttpTransport(url, 2)

    # Socket Mode serves once every process has its connection: until then, envelopes spread over fewer.
    web_concurrency = int(env.get("WEB_CONCURRENCY") or default_process_count())
    processes = int(env.get("SOCKET_MODE_PROCESSES") or default_socket_mode_processes(web_concurrency))
    connections = processes if kind.socket_mode else 0

    def probe() -> bool:
        if fakes.socket_mode is not None and fakes.socket_mode.connection_count < connections:
            return False
        ack = probe_transport.command(PROBE_USER, text="help", response_url=fakes.slack.new_response_url())
        return ack.error is None and isinstance(ack.body, dict) and "text" in ack.body

    app = AppProcess(kind, env, log_path)
    fakes.mixpanel.pids = app.process_tree
    return app, transport, probe


def wait_form(
    watcher: SlackWatcher, trigger_id: str, timeout: float
) -> tuple[dict | None, float, str | None]:
    """The usable create form opened for `trigger_id` (directly, or a loading view completed later).

    Returns (view, when it reached Slack as time.monotonic, error)."""
    opened = watcher.wait_open(trigger_id, timeout)
    if opened is None:
        return None, 0.0, "views.open never reached Slack"
    view = ok_view(opened)
    if view is None:
        return None, 0.0, f"views.open failed: {(opened.response or {}).get('error')}"
    if view.get("callback_id") == views.CREATE_CALLBACK_ID:
        return view, opened.at, None
    # A cold project cache opens a loading view first and completes it with views.update.
    updated = watcher.wait_update(
        view["id"], lambda c: (ok_view(c) or {}).get("callback_id") == views.CREATE_CALLBACK_ID, timeout
    )
    if updated is None:
        return None, 0.0, "the loading view was never completed"
    return ok_view(updated), updated.at, None


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def log_problems(app: AppProcess) -> str | None:
    log = app.log_tail(400)
    tracebacks = log.count("Traceback (most recent call last)")
    errors = len(re.findall(r"^\S+ \S+ (ERROR|CRITICAL) ", log, re.MULTILINE))
    if tracebacks or errors:
        return f"app log has {errors} ERROR line(s), {tracebacks} traceback(s): {app.log_path}"
    return None


class ServerBench:
    """One server kind: fresh fakes, the app subprocess, the warm-up flow, then every level's rounds."""

    def __init__(
        self,
        kind: ServerKind,
        plan: list[tuple[int, int]],
        workdir: Path,
        progress: Callable[[str], None],
        *,
        mixpanel_latency: float,
        extra_env: dict[str, str] | None = None,
        destination: str | None = None,
    ) -> None:
        self.kind = kind
        self.destination = destination
        self.plan = plan  # [(people, rounds)]
        self.workdir = workdir / kind.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.extra_env = extra_env or {}
        self.result = ServerResult(
            kind=kind,
            log_path=str(self.workdir / "app.log"),
            mixpanel_latency=mixpanel_latency,
            settings=dict(self.extra_env),
        )
        if destination is not None:
            self.result.settings["destination"] = f"{destination} (every flow writes its token there)"

    # --- one person ----------------------------------------------------------------------------------

    def _flow(self, flow: Flow) -> None:
        slack, watcher, transport = self.fakes.slack, self.fakes.watcher, self.transport
        flow.response_url = slack.new_response_url()
        trigger_id = slack.issue_trigger_id()  # expires after 3 s, as Slack's do
        ack = transport.command(flow.user_id, response_url=flow.response_url, trigger_id=trigger_id)
        if ack.error is not None:
            flow.command_error = flow.error = f"command: {ack.error} after {ack.elapsed:.2f}s"
            return
        flow.command_ack = ack.elapsed
        view, _, error = wait_form(watcher, trigger_id, VIEW_TIMEOUT)
        if view is None:
            flow.error = error
            return
        flow.submitted_at = submitted_at = time.monotonic()
        flow.submitted = True
        ack = transport.submission(
            view, user_id=flow.user_id, values=form_values(flow.username, self.destination)
        )
        if ack.error is not None:
            flow.submit_error = flow.error = f"submission: {ack.error} after {ack.elapsed:.2f}s"
            return  # the app may still act on it: the quiesce step waits for any token it delivers
        flow.submit_ack = ack.elapsed
        if not isinstance(ack.body, dict) or ack.body.get("response_action") != "update":
            flow.error = f"submission answered {json.dumps(ack.body)[:200]!r}"
            return
        post = watcher.wait_post(flow.response_url, TOKEN_TIMEOUT)
        if post is None:
            flow.error = f"no message at the response_url within {TOKEN_TIMEOUT:.0f}s"
            return
        flow.token_latency = post.at - submitted_at
        create = self.fakes.mixpanel.create_for(flow.username)
        if create is not None and create.ended is not None:
            flow.before_create = create.started - submitted_at
            flow.after_create = post.at - create.ended

    def _person(self, flow: Flow, barrier: threading.Barrier | None) -> None:
        try:
            if barrier is not None:
                barrier.wait(timeout=60)
            self._flow(flow)
        except Exception as error:  # a broken person must not take the benchmark down
            flow.error = f"benchmark error: {error!r}\n{traceback.format_exc()}"

    # --- the whole run -------------------------------------------------------------------------------

    def run(self) -> ServerResult:
        from bench.checks import check

        result = self.result
        users = [WARMUP_USER] + [self._user_id(p, i) for p, _ in self.plan for i in range(p)]
        try:
            with fresh_fakes(
                self.kind, result.mixpanel_latency, users, destination=self.destination
            ) as fakes:
                self.fakes = fakes
                self._run_app()
                fakes.watcher.stop()
                check(result, fakes.watcher, fakes.slack, fakes.mixpanel, fakes.vault)
        except Exception as error:
            result.fatal = f"{type(error).__name__}: {error}"
        return result

    @staticmethod
    def _user_id(people: int, index: int) -> str:
        return f"UB{people:03d}X{index:03d}"

    def _run_app(self) -> None:
        result = self.result
        app, self.transport, probe = launch(
            self.kind, self.fakes, self.workdir, Path(result.log_path), self.extra_env
        )
        app.start()
        try:
            result.startup = app.wait_until_serving(probe)
            self.progress(f"{self.kind.name}: serving after {result.startup:.2f}s; warm-up flow")
            warmup = Flow(
                level=0,
                round=0,
                user_id=WARMUP_USER,
                username=f"bench-{self.kind.name}-warmup",
                measured=False,
            )
            result.flows.append(warmup)
            self._person(warmup, None)
            workers = max(people for people, _ in self.plan)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="person") as pool:
                for people, rounds in self.plan:
                    app_cpu, own_cpu = app.cpu_seconds(), _own_cpu_seconds()
                    self._level(pool, people, rounds)
                    result.level_cpu[people] = (app.cpu_seconds() - app_cpu, _own_cpu_seconds() - own_cpu)
            self._quiesce()
            result.peak_rss_mb = app.peak_rss_mb()
        finally:
            result.exit_code = app.stop()
        note = log_problems(app)
        if note:
            result.notes.append(note)

    def _level(self, pool: ThreadPoolExecutor, people: int, rounds: int) -> None:
        """`rounds` bursts of `people` distinct users starting together; a round ends with its last token."""
        result = self.result
        started = time.perf_counter()
        for round_no in range(1, rounds + 1):
            flows = [
                Flow(
                    level=people,
                    round=round_no,
                    user_id=self._user_id(people, i),
                    username=f"bench-{self.kind.name}-{people}p-r{round_no}-{i}",
                )
                for i in range(people)
            ]
            result.flows.extend(flows)
            barrier = threading.Barrier(people) if people > 1 else None
            for future in [pool.submit(self._person, flow, barrier) for flow in flows]:
                future.result()
        result.level_seconds[people] = time.perf_counter() - started
        failed = sum(1 for f in result.measured(people) if not f.complete)
        who = "person" if people == 1 else "people"
        self.progress(
            f"{self.kind.name}: {people} {who} x {rounds} rounds in {result.level_seconds[people]:.1f}s"
            + (f" ({failed} flows failed)" if failed else "")
        )

    def _quiesce(self, timeout: float = 30) -> None:
        """Let in-flight creations finish and deliver, so the checks see the final state."""
        mixpanel, watcher = self.fakes.mixpanel, self.fakes.watcher
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            creates = mixpanel.create_calls()
            issued = set(mixpanel.created_tokens())
            delivered = set()
            for flow in self.result.flows:
                if self.fakes.vault is not None:
                    delivered.add(self.fakes.vault.token_for(flow.username))
                    continue
                for post in watcher.posts_to(flow.response_url):
                    delivered.update(TOKEN_RE.findall(json.dumps(post.args)))
            if all(c.status is not None for c in creates) and issued <= delivered:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # the final views.update and audit after each delivery
