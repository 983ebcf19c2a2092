"""Starting and stopping: HTTP mode (gunicorn workers) or Socket Mode, with clean shutdowns.

Every start-up problem surfaces as a SettingsError naming the setting, before anything serves.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk.errors import SlackClientError
from sqlalchemy.exc import SQLAlchemyError

from bot.policy_file import PolicyError
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings, SettingsError

log = logging.getLogger("mp_service_account")

AppFactory = Callable[[Runtime], App]


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
        raise SettingsError(
            [f"SLACK_APP_TOKEN: could not open a Socket Mode connection ({_short(error)})"]
        ) from None
    stopping.wait()
    handler.close()
    # New events are refused from here on; in-flight creations get the grace period to finish.
    finished = runtime.close()
    log.info("Stopped%s", "" if finished else " with creations still running (see above)")


def _serve_http(settings: Settings, stopping: threading.Event, create_app: AppFactory) -> None:
    from bot.http import HttpServer, wsgi_app

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
