"""HTTP mode: Bolt behind gunicorn, pre-forked worker processes each serving requests on threads.

Bolt's own `app.start()` handles one request at a time; under load, Slack's 3 s deadline would be missed.
A Python process uses one core at a time, so HTTP mode runs `WEB_CONCURRENCY` processes, each with its own
runtime (clients, caches, background creations); the database coordinates them.

Before Bolt, `bot.web.gate.SlackGate` refuses whatever Slack did not sign; before a request thread, the worker
(`bot.web.worker.BufferingThreadWorker`) waits for the whole request, so slow clients hold no thread; see
the README ("In front of HTTP mode") for its limits and what a deployment should put in front.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.web.gate import SLACK_EVENTS_PATH, SlackGate
from bot.web.worker import WORKER_CONNECTIONS, BufferingThreadWorker, require_supported_gunicorn

__all__ = ["HEALTH_PATH", "SLACK_EVENTS_PATH", "HttpServer", "wsgi_app"]
HEALTH_PATH = "/healthz"

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable], Iterable[bytes]]


def wsgi_app(app: App, *, signing_secret: str) -> WSGIApp:
    slack = SlackGate(
        SlackRequestHandler(app, path=SLACK_EVENTS_PATH), signing_secret, path=SLACK_EVENTS_PATH
    )

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return application


class HttpServer(BaseApplication):
    """gunicorn, configured in code: `build_worker` runs in each worker after the fork and returns the
    WSGI app plus a `close(grace)` that lets in-flight creations finish when the worker stops."""

    def __init__(
        self,
        build_worker: Callable[[], tuple[WSGIApp, Callable[[], object]]],
        *,
        port: int,
        workers: int,
        threads: int,
        shutdown_grace: float,
        log_level: str,
    ):
        require_supported_gunicorn()
        self._build_worker = build_worker
        self._close_worker: Callable[[], object] | None = None
        self._options = {
            "bind": f"0.0.0.0:{port}",
            "workers": workers,
            # gthread, reading requests off-thread; plain HTTP/1.1 only (TLS ends at the platform's router).
            "worker_class": BufferingThreadWorker,
            "threads": threads,
            # Idle and arriving connections cost a socket and a buffer, not a thread (see bot/web/worker.py).
            "worker_connections": WORKER_CONNECTIONS,
            # Slack retries after 3 s; a request queued for longer only produces a duplicate.
            "backlog": 1024,
            "keepalive": 5,
            "timeout": 60,
            # Workers first finish their requests, then their creations (see worker_exit).
            "graceful_timeout": math.ceil(shutdown_grace) + 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": log_level.lower(),
            "proc_name": "mp-service-account",
            "worker_exit": self._on_worker_exit,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        application, self._close_worker = self._build_worker()
        return application

    def _on_worker_exit(self, _server, _worker) -> None:
        if self._close_worker is not None:
            self._close_worker()
