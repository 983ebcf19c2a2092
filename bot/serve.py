"""Starting and stopping: HTTP mode (gunicorn workers) or Socket Mode (one process, or forked ones each
with its own connection), with clean shutdowns.

Every start-up problem surfaces as a SettingsError naming the setting, before anything serves.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk.errors import SlackClientError
from sqlalchemy.exc import SQLAlchemyError

from bot.policy.file import PolicyError
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings, SettingsError

log = logging.getLogger("mp_service_account")

AppFactory = Callable[[Runtime], App]
# A Socket Mode child's exit code for "a setting is wrong" (e.g. SLACK_APP_TOKEN revoked since the start):
# restarting it cannot help, so the supervisor stops the whole app with the same code as a bad start.
CANNOT_START = 2
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _stop_on_signals() -> threading.Event:
    """Installed before anything starts, so that SIGTERM during start-up still means a clean stop."""
    stopping = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("Received %s; shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def _start_runtime(
    settings: Settings, create_app: AppFactory, *, background_tasks: bool = True
) -> tuple[Runtime, App]:
    """Everything that can be wrong at start-up surfaces here as a SettingsError naming the setting."""
    try:
        runtime = build_runtime(settings, background_tasks=background_tasks)
    except PolicyError as error:
        raise SettingsError(str(error).splitlines()) from None
    except SQLAlchemyError as error:
        raise SettingsError([f"DATABASE_URL: cannot use the database ({type(error).__name__})"]) from None
    try:
        return runtime, create_app(runtime)
    except BoltError as error:
        runtime.close(grace=0)
        raise SettingsError([f"SLACK_BOT_TOKEN: Slack did not accept it ({_short(error)})"]) from None
    except (SlackClientError, OSError) as error:
        runtime.close(grace=0)
        where = "SLACK_API_URL" if settings.slack_api_url else "the network"
        raise SettingsError(
            [f"{where}: could not reach Slack to check SLACK_BOT_TOKEN ({_short(error)})"]
        ) from None


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200]


def run(settings: Settings, mode: str, create_app: AppFactory) -> None:
    """Serve until SIGTERM or SIGINT; `mode` is auto, http or socket."""
    stopping = _stop_on_signals()
    if mode == "auto":
        mode = "socket" if settings.slack_app_token else "http"
    if mode == "socket" and settings.slack_app_token is None:
        raise SettingsError(["SLACK_APP_TOKEN: missing (required for Socket Mode)"])
    if mode == "http":
        _serve_http(settings, stopping, create_app)
        return
    if settings.socket_mode_processes == 1:
        _serve_socket_mode(settings, stopping, create_app)
        return
    _supervise_socket_mode(settings, stopping, create_app)


def _serve_socket_mode(settings: Settings, stopping: threading.Event, create_app: AppFactory) -> None:
    """One process, one runtime, one Socket Mode connection, until `stopping`."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    runtime, app = _start_runtime(settings, create_app)
    handler = SocketModeHandler(
        app, settings.slack_app_token.get_secret_value(), concurrency=settings.socket_mode_concurrency
    )
    log.info("Connecting to Slack in Socket Mode")
    try:
        handler.connect()
    except (SlackClientError, OSError) as error:
        runtime.close(grace=0)
        raise _app_token_problem(error) from None
    stopping.wait()
    handler.close()
    # New events are refused from here on; in-flight creations get the grace period to finish.
    finished = runtime.close()
    log.info("Stopped%s", "" if finished else " with creations still running (see above)")


def _app_token_problem(error: Exception) -> SettingsError:
    return SettingsError([f"SLACK_APP_TOKEN: could not open a Socket Mode connection ({_short(error)})"])


def _supervise_socket_mode(settings: Settings, stopping: threading.Event, create_app: AppFactory) -> None:
    """SOCKET_MODE_PROCESSES processes, each with its own runtime and connection (Slack hands each envelope
    to one of an app's connections), like HTTP mode's workers; the database coordinates them."""
    # Check everything once, before forking, so that a bad setting is named instead of crash-looping
    # children; the clients built for the check are closed, and each child builds its own after the fork.
    runtime, app = _start_runtime(settings, create_app, background_tasks=False)
    try:
        app.client.apps_connections_open(app_token=settings.slack_app_token.get_secret_value())
    except (SlackClientError, OSError) as error:
        raise _app_token_problem(error) from None
    finally:
        runtime.close(grace=0)
    if stopping.is_set():
        return
    log.info("Serving Slack in Socket Mode with %d processes", settings.socket_mode_processes)
    _Supervisor(lambda: _socket_mode_child(settings, stopping, create_app)).run(
        settings.socket_mode_processes, stopping, stop_timeout=settings.shutdown_grace_seconds + 5
    )


def _socket_mode_child(settings: Settings, stopping: threading.Event, create_app: AppFactory) -> int:
    """The body of a forked child: the inherited signal handlers set this process's copy of `stopping`."""
    try:
        _serve_socket_mode(settings, stopping, create_app)
    except SettingsError as error:
        for problem in error.problems:
            log.error("Socket Mode process cannot start: %s", problem)
        return CANNOT_START
    except Exception:
        log.exception("Socket Mode process failed")
        return 1
    return 0


def _stop_when_parent_dies(parent: int) -> None:
    """Linux: SIGTERM (a clean stop) for a child whose supervisor was killed, not an orphan serving on."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        signal.raise_signal(signal.SIGTERM)


class _Supervisor:
    """Forks `count` children running `child` (its return value is the exit code), restarts one that dies
    while serving, and on `stopping` forwards SIGTERM and waits `stop_timeout` before SIGKILL. A child
    that exits with CANNOT_START stops them all: `run` raises SettingsError (the child logged why)."""

    POLL_SECONDS = 0.1
    RESTART_DELAY = 1.0  # between a child's death and its replacement: no hot loop if every start fails

    def __init__(self, child: Callable[[], int]) -> None:
        self._child = child
        self._children: dict[int, int] = {}  # pid -> slot

    def run(self, count: int, stopping: threading.Event, *, stop_timeout: float) -> None:
        restarts: dict[int, float] = {}  # slot -> when to start its replacement
        for slot in range(count):
            self._spawn(slot)
        while not stopping.is_set():
            for pid, slot, status in self._reap():
                if status == f"exit code {CANNOT_START}":
                    self._stop(stop_timeout)
                    raise SettingsError(
                        [
                            f"Socket Mode process {pid} could not start (a setting, e.g. SLACK_APP_TOKEN, is "
                            "no longer accepted; its reason is logged above), so the app stops"
                        ]
                    )
                log.warning("Socket Mode process %d exited unexpectedly (%s); starting another", pid, status)
                restarts[slot] = time.monotonic() + self.RESTART_DELAY
            for slot, due in list(restarts.items()):
                if due <= time.monotonic() and not stopping.is_set():
                    del restarts[slot]
                    self._spawn(slot)
            stopping.wait(self.POLL_SECONDS)
        self._stop(stop_timeout)

    def _spawn(self, slot: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            code = 1
            try:
                _stop_when_parent_dies(parent)
                code = self._child()
            finally:
                logging.shutdown()
                os._exit(code)
        self._children[pid] = slot

    def _reap(self) -> list[tuple[int, int, str]]:
        """Children that have exited: (pid, slot, how)."""
        dead = []
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = self._children.pop(pid, None)
            if slot is not None:
                code = os.waitstatus_to_exitcode(status)
                dead.append((pid, slot, f"signal {-code}" if code < 0 else f"exit code {code}"))
        return dead

    def _stop(self, timeout: float) -> None:
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._children and time.monotonic() < deadline:
            for pid, _, how in self._reap():
                if how != "exit code 0":
                    log.warning("Socket Mode process %d stopped with %s", pid, how)
            time.sleep(self.POLL_SECONDS)
        for pid in list(self._children):
            log.warning("Socket Mode process %d did not stop within %.0f s; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._children.clear()
        log.info("Stopped")


def _serve_http(settings: Settings, stopping: threading.Event, create_app: AppFactory) -> None:
    from bot.web.server import HttpServer, wsgi_app

    # Check everything once, before forking, so that a bad setting is named instead of crash-looping workers.
    runtime, _ = _start_runtime(settings, create_app, background_tasks=False)
    runtime.close(grace=0)
    if stopping.is_set():
        return

    def build_worker():
        worker_runtime, app = _start_runtime(settings, create_app)
        secret = settings.slack_signing_secret.get_secret_value()
        return wsgi_app(app, signing_secret=secret), worker_runtime.close

    log.info(
        "Serving Slack requests at http://0.0.0.0:%s/slack/events with %d worker process(es)",
        settings.port,
        settings.web_concurrency,
    )
    HttpServer(
        build_worker,
        port=settings.port,
        workers=settings.web_concurrency,
        threads=settings.http_threads,
        shutdown_grace=settings.shutdown_grace_seconds,
        log_level=settings.log_level,
    ).run()
