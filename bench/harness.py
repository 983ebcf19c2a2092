"""Drive one app server as Slack would: spawn it against fresh fakes, run people's flows, check the tokens.

Every measurement is taken from outside the app process:
- ack latency: the HTTP round trip of the signed request (``SlackResult.elapsed``, ``time.perf_counter``);
- submit-to-token: from just before the view submission is sent until the token's POST arrives at the
  person's response_url (``SlackCall.at``; both ends are ``time.monotonic``, the fakes' clock);
- start-up: from just before the spawn until a signed request (``/mp-service-account help``) is answered;
- peak RSS: the largest ``VmHWM`` among the app's processes (the gunicorn master and its workers), read
  just before it is stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

from bot import views
from bot.settings import Settings
from tests.fakes import bot_environment
from tests.fakes._server import LoopbackHTTPServer
from tests.fakes.mixpanel import FakeMixpanel
from tests.fakes.slack_api import FakeSlack, SlackCall
from tests.slack_requests import SlackResult, SlackSender

REPO_ROOT = Path(__file__).resolve().parent.parent

BOT_TOKEN = "xoxb-bench-token"  # noqa: S105 - the fakes' credentials
SIGNING_SECRET = "bench-signing-secret-0123456789"  # noqa: S105
MP_USERNAME = "bot.bench01.mp-service-account"
MP_SECRET = "mp-bench-secret-value"  # noqa: S105
ORG_ID = 1234
PROJECT_ID = 3001  # in the fake's DEFAULT_PROJECTS for ORG_ID
USER_TZ = "America/New_York"  # FakeSlack.add_user's default; the expiry date is a day in it

MIXPANEL_CREATE_LATENCY = 1.5
SLACK_DEADLINE = 3.0  # Slack gives up on an ack after 3 s
CLIENT_TIMEOUT = 10.0
VIEW_TIMEOUT = 15.0
TOKEN_TIMEOUT = 30.0
STARTUP_TIMEOUT = 30.0
POLL_INTERVAL = 0.003
TOKEN_RE = re.compile(r"[0-9a-f]{32}")  # FakeMixpanel issues secrets.token_hex(16)
FAKE_BACKLOG = LoopbackHTTPServer.request_queue_size  # the fakes widen their listen backlog themselves
PROBE_USER = "UBPROBE"
WARMUP_USER = "UBWARMUP"


@dataclass(frozen=True)
class ServerKind:
    name: str
    description: str
    argv: tuple[str, ...]


OURS = ServerKind(
    "ours", "gunicorn (WEB_CONCURRENCY workers): python app.py --mode http", ("app.py", "--mode", "http")
)
BASELINE = ServerKind(
    "baseline", "Bolt app.start(): python -m bench.baseline_server", ("-m", "bench.baseline_server")
)


@dataclass
class Flow:
    """One person's way from the slash command to the token."""

    level: int
    round: int
    user_id: str
    username: str
    measured: bool = True
    response_url: str = ""
    command_ack: float | None = None  # seconds; None = the request failed
    command_error: str | None = None
    submit_ack: float | None = None
    submit_error: str | None = None
    submitted: bool = False  # the submission was sent (the app may have acted on it even if it failed)
    token_latency: float | None = None
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and self.token_latency is not None


@dataclass
class ServerResult:
    kind: ServerKind
    startup: float | None = None
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    flows: list[Flow] = field(default_factory=list)
    level_seconds: dict[int, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # correctness failures
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure
    counts: dict[str, int] = field(default_factory=dict)
    log_path: str = ""
    fatal: str | None = None  # could not run at all

    def measured(self, level: int) -> list[Flow]:
        return [f for f in self.flows if f.measured and f.level == level]


class SlackWatcher:
    """One thread indexes FakeSlack's recorded calls for the people waiting on them.

    Fifty people each calling ``FakeSlack.wait_for`` would rescan every call, under the fake's lock, on
    every change; that would slow the fake (and so the app) down. Polling ``calls()`` from one thread and
    waking only the person a call is for keeps the fake's overhead out of the figures.
    """

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self._cond = threading.Condition()
        self._seen = 0
        self._unanswered: list[SlackCall] = []
        self.opened: dict[str, SlackCall] = {}  # trigger_id -> answered views.open
        self.updates: dict[str, list[SlackCall]] = {}  # view_id -> answered views.update
        self.posts: dict[str, list[SlackCall]] = {}  # response_url -> POSTs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watcher", daemon=True)

    def start(self) -> SlackWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            calls = self.slack.calls()
            fresh, self._seen = calls[self._seen :], len(calls)
            waiting = self._unanswered + [c for c in fresh if c.method in ("views.open", "views.update")]
            answered = [c for c in waiting if c.status is not None]
            self._unanswered = [c for c in waiting if c.status is None]
            posts = [c for c in fresh if c.method == "response_url"]
            if not answered and not posts:
                continue
            with self._cond:
                for call in answered:
                    if call.method == "views.open":
                        self.opened[str(call.args.get("trigger_id"))] = call
                    else:
                        self.updates.setdefault(str(call.args.get("view_id")), []).append(call)
                for call in posts:
                    self.posts.setdefault(str(call.args.get("_url")), []).append(call)
                self._cond.notify_all()

    def _wait(self, found: Callable[[], Any], timeout: float) -> Any:
        with self._cond:
            return self._cond.wait_for(found, timeout=timeout)

    def wait_open(self, trigger_id: str, timeout: float) -> SlackCall | None:
        return self._wait(lambda: self.opened.get(trigger_id), timeout)

    def wait_update(
        self, view_id: str, match: Callable[[SlackCall], bool], timeout: float
    ) -> SlackCall | None:
        return self._wait(lambda: next((c for c in self.updates.get(view_id, []) if match(c)), None), timeout)

    def wait_post(self, url: str, timeout: float) -> SlackCall | None:
        return self._wait(lambda: (self.posts.get(url) or [None])[0], timeout)

    def posts_to(self, url: str) -> list[SlackCall]:
        with self._cond:
            return list(self.posts.get(url, []))


class AppProcess:
    """The app under test, as a subprocess of this interpreter, started from the repository root."""

    def __init__(self, kind: ServerKind, env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.spawned_at = 0.0

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.spawned_at = time.perf_counter()
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
                [sys.executable, *self.kind.argv],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until_serving(self, probe: Callable[[], bool]) -> float:
        """Seconds from spawn until `probe` first succeeds."""
        assert self.proc is not None
        deadline = self.spawned_at + STARTUP_TIMEOUT
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} before serving:\n{self.log_tail()}")
            try:
                if probe():
                    return time.perf_counter() - self.spawned_at
            except requests.RequestException:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"not serving after {STARTUP_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def process_tree(self) -> list[int]:
        """The app's pid and its descendants' (gunicorn workers are children of the master)."""
        assert self.proc is not None
        parents: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
        tree, pending = [], [self.proc.pid]
        while pending:
            pid = pending.pop()
            tree.append(pid)
            pending.extend(parents.get(pid, []))
        return tree

    def peak_rss_mb(self) -> float | None:
        """The largest per-process peak RSS in the app's process tree."""
        peaks = []
        for pid in self.process_tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
            if match:
                peaks.append(int(match.group(1)) / 1024)
        return max(peaks) if peaks else None

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=35)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _describe(error: requests.RequestException) -> str:
    reason = re.search(r"(\[Errno \d+\] [^'\")]+|RemoteDisconnected|Read timed out|timed out)", str(error))
    return type(error).__name__ + (f" ({reason.group(1).strip()})" if reason else "")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_environment(slack: FakeSlack, mixpanel: FakeMixpanel, workdir: Path, port: int) -> dict[str, str]:
    """The inherited environment without any of the app's own settings, plus the benchmark's."""
    own = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in own}
    policy = workdir / "policy.yml"
    policy.write_text("rate_limit:\n  per_user_per_day: 1000\n")
    env.update(
        {
            **bot_environment(slack, mixpanel, signing_secret=SIGNING_SECRET),
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
            "LOG_LEVEL": "WARNING",
            "POLICY_FILE": str(policy),
        }
    )
    return env


def form_values(username: str) -> dict[str, Any]:
    """A valid form: keyed by block id, as tests/slack_requests.build_view_state expects."""
    expires = datetime.now(ZoneInfo(USER_TZ)).date() + timedelta(days=30)
    return {
        views.BLOCK_USERNAME: username,
        views.BLOCK_ROLE: "analyst",
        views.BLOCK_PROJECTS: [str(PROJECT_ID)],
        views.BLOCK_EXPIRY: expires.isoformat(),
    }


def _ok_view(call: SlackCall) -> dict[str, Any] | None:
    response = call.response if isinstance(call.response, dict) else {}
    return response.get("view") if response.get("ok") else None


class ServerBench:
    """One server kind: fresh fakes, the app subprocess, the warm-up flow, then every level's rounds."""

    def __init__(self, kind: ServerKind, plan: list[tuple[int, int]], workdir: Path, progress) -> None:
        self.kind = kind
        self.plan = plan  # [(people, rounds)]
        self.workdir = workdir / kind.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.result = ServerResult(kind=kind, log_path=str(self.workdir / "app.log"))

    # --- one person ----------------------------------------------------------------------------------

    @staticmethod
    def _send(request: Callable[[], SlackResult]) -> tuple[SlackResult | None, float, str | None]:
        started = time.perf_counter()
        try:
            result = request()
        except requests.RequestException as error:
            return None, time.perf_counter() - started, _describe(error)
        if result.status != 200:
            return None, result.elapsed, f"HTTP {result.status}"
        return result, result.elapsed, None

    def _flow(self, flow: Flow) -> None:
        slack, watcher, sender = self.slack, self.watcher, self.sender
        flow.response_url = slack.new_response_url()
        trigger_id = slack.issue_trigger_id()  # expires after 3 s, as Slack's do
        result, elapsed, error = self._send(
            lambda: sender.slash_command(flow.user_id, response_url=flow.response_url, trigger_id=trigger_id)
        )
        if error is not None:
            flow.command_error = flow.error = f"command: {error} after {elapsed:.2f}s"
            return
        flow.command_ack = elapsed
        opened = watcher.wait_open(trigger_id, VIEW_TIMEOUT)
        if opened is None:
            flow.error = "views.open never reached Slack"
            return
        view = _ok_view(opened)
        if view is None:
            flow.error = f"views.open failed: {(opened.response or {}).get('error')}"
            return
        if view.get("callback_id") != views.CREATE_CALLBACK_ID:
            # A cold project cache opens a loading view first and completes it with views.update.
            view_id = view["id"]
            updated = watcher.wait_update(
                view_id,
                lambda c: (_ok_view(c) or {}).get("callback_id") == views.CREATE_CALLBACK_ID,
                VIEW_TIMEOUT,
            )
            if updated is None:
                flow.error = "the loading view was never completed"
                return
            view = _ok_view(updated)
            assert view is not None
        values = form_values(flow.username)
        submitted_at = time.monotonic()
        flow.submitted = True
        result, elapsed, error = self._send(
            lambda: sender.view_submission(view, user_id=flow.user_id, values=values)
        )
        if error is not None:
            flow.submit_error = flow.error = f"submission: {error} after {elapsed:.2f}s"
            return  # the app may still act on it: the quiesce step waits for any token it delivers
        flow.submit_ack = elapsed
        body = result.json() if result is not None else None
        if not isinstance(body, dict) or body.get("response_action") != "update":
            flow.error = f"submission answered {result.text[:200] if result else ''!r}"
            return
        post = watcher.wait_post(flow.response_url, TOKEN_TIMEOUT)
        if post is None:
            flow.error = f"no message at the response_url within {TOKEN_TIMEOUT:.0f}s"
            return
        flow.token_latency = post.at - submitted_at

    def _person(self, flow: Flow, barrier: threading.Barrier | None) -> None:
        try:
            if barrier is not None:
                barrier.wait(timeout=60)
            self._flow(flow)
        except Exception as error:  # a broken person must not take the benchmark down
            flow.error = f"benchmark error: {error!r}\n{traceback.format_exc()}"

    # --- the whole run -------------------------------------------------------------------------------

    def run(self) -> ServerResult:
        result = self.result
        try:
            with (
                FakeSlack(bot_token=BOT_TOKEN) as slack,
                FakeMixpanel(
                    username=MP_USERNAME, secret=MP_SECRET, organizations={ORG_ID: "Acme"}
                ) as mixpanel,
            ):
                self.slack, self.mixpanel = slack, mixpanel
                mixpanel.latency = {"create": MIXPANEL_CREATE_LATENCY}
                slack.add_user(WARMUP_USER)
                for people, _ in self.plan:
                    for index in range(people):
                        slack.add_user(self._user_id(people, index))
                self.watcher = SlackWatcher(slack).start()
                try:
                    self._run_app(slack, mixpanel)
                finally:
                    self.watcher.stop()
                self._check(slack, mixpanel)
        except Exception as error:
            result.fatal = f"{type(error).__name__}: {error}"
        return result

    @staticmethod
    def _user_id(people: int, index: int) -> str:
        return f"UB{people:03d}X{index:03d}"

    def _run_app(self, slack: FakeSlack, mixpanel: FakeMixpanel) -> None:
        result = self.result
        port = free_port()
        env = app_environment(slack, mixpanel, self.workdir, port)
        url = f"http://127.0.0.1:{port}/slack/events"
        self.sender = SlackSender(url, SIGNING_SECRET, timeout=CLIENT_TIMEOUT)
        probe_sender = SlackSender(url, SIGNING_SECRET, timeout=2)

        def probe() -> bool:
            answer = probe_sender.slash_command(
                PROBE_USER, text="help", response_url=slack.new_response_url()
            )
            return answer.status == 200 and isinstance(answer.json(), dict) and "text" in answer.json()

        app = AppProcess(self.kind, env, Path(result.log_path))
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
                    self._level(pool, people, rounds)
            self._quiesce(mixpanel)
            result.peak_rss_mb = app.peak_rss_mb()
        finally:
            result.exit_code = app.stop()
        log = app.log_tail(400)
        tracebacks = log.count("Traceback (most recent call last)")
        errors = len(re.findall(r"^\S+ \S+ (ERROR|CRITICAL) ", log, re.MULTILINE))
        if tracebacks or errors:
            result.notes.append(
                f"app log has {errors} ERROR line(s), {tracebacks} traceback(s): {result.log_path}"
            )

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

    def _quiesce(self, mixpanel: FakeMixpanel, timeout: float = 30) -> None:
        """Let in-flight creations finish and deliver, so the checks see the final state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            creates = mixpanel.create_calls()
            issued = set(mixpanel.created_tokens())
            delivered = set()
            for flow in self.result.flows:
                for post in self.watcher.posts_to(flow.response_url):
                    delivered.update(TOKEN_RE.findall(json.dumps(post.args)))
            if all(c.status is not None for c in creates) and issued <= delivered:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # the final views.update and audit after each delivery

    # --- correctness -----------------------------------------------------------------------------------

    def _check(self, slack: FakeSlack, mixpanel: FakeMixpanel) -> None:
        result = self.result
        strict = self.kind is OURS  # the baseline may time out; it may never mix tokens up
        problems, notes = result.problems, result.notes
        issued = set(mixpanel.created_tokens())
        accounts: dict[str, list[dict[str, Any]]] = {}
        for record in [*mixpanel.accounts.values(), *mixpanel.deleted_accounts.values()]:
            accounts.setdefault(record["requested_username"], []).append(record)
        own_tokens_ok = wrong_token = undelivered = 0
        for flow in result.flows:
            found = set()
            for post in self.watcher.posts_to(flow.response_url):
                found.update(TOKEN_RE.findall(json.dumps(post.args)))
            found &= issued
            records = accounts.get(flow.username, [])
            own = {mixpanel.tokens.get(r["id"]) for r in records} - {None}
            if len(records) > 1:
                problems.append(f"{flow.username}: {len(records)} Mixpanel accounts for one submission")
            if found - own:
                wrong_token += 1
                problems.append(f"{flow.username} ({flow.user_id}) received a token that is not theirs")
            elif records and own and found == own:
                own_tokens_ok += 1
            elif records:
                undelivered += 1
                (problems if strict else notes).append(
                    f"{flow.username}: account created, token not delivered"
                )
            if flow.error and strict:
                problems.append(f"{flow.user_id} {flow.username}: {flow.error.splitlines()[0]}")
        failed_flows = [f for f in result.flows if f.error]
        if failed_flows and not strict:
            kinds: dict[str, int] = {}
            for f in failed_flows:
                key = re.sub(r"after [\d.]+s|\d+s", "…", f.error.splitlines()[0]) if f.error else "?"
                kinds[key] = kinds.get(key, 0) + 1
            notes.extend(f"{n} flow(s) failed: {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))

        # Each token is in exactly one Slack call: the message to its requester.
        seen: dict[str, list[str]] = {}
        for call in slack.calls():
            for token in set(TOKEN_RE.findall(json.dumps(call.args, default=str))) & issued:
                seen.setdefault(token, []).append(call.method)
        leaked = [t for t, methods in seen.items() if methods != ["response_url"]]
        if leaked:
            problems.append(f"{len(leaked)} token(s) appear in more than the one message to their requester")

        creates = mixpanel.create_calls()
        submitted = sum(1 for f in result.flows if f.submitted)
        if len(creates) > submitted:
            problems.append(f"{len(creates)} Mixpanel creates for {submitted} submissions")
        elif len(creates) < submitted:
            (problems if strict else notes).append(
                f"only {len(creates)} Mixpanel creates for {submitted} submissions"
            )
        bad_status = [c.status for c in creates if c.status != 201]
        if bad_status:
            (problems if strict else notes).append(
                f"{len(bad_status)} creates did not answer 201: {bad_status[:5]}"
            )
        for name, items in (
            ("fake Mixpanel schema violations", mixpanel.schema_violations),
            ("fake Mixpanel internal errors", mixpanel.internal_errors),
            ("fake Slack internal errors", slack.internal_errors),
            ("fake Slack view validation errors", slack.view_errors),
        ):
            if items:
                problems.append(f"{len(items)} {name}: {str(items[0])[:300]}")
        if strict and result.exit_code not in (0, None):
            notes.append(f"the app exited with {result.exit_code} on SIGTERM (log: {result.log_path})")
        result.counts = {
            "flows": len(result.flows),
            "submitted": submitted,
            "creates": len(creates),
            "tokens_issued": len(issued),
            "own_token_delivered": own_tokens_ok,
            "wrong_token": wrong_token,
            "undelivered": undelivered,
            "leaked": len(leaked),
            "failed_flows": len(failed_flows),
        }
