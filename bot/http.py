"""HTTP mode: Bolt behind waitress, a production WSGI server that serves requests concurrently.

Bolt's own `app.start()` handles one request at a time; under load, Slack's 3 s deadline would be missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress import create_server

SLACK_EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def wsgi_app(app: App) -> Callable[[dict[str, Any], Callable], Iterable[bytes]]:
    slack = SlackRequestHandler(app, path=SLACK_EVENTS_PATH)

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return application


def stop_http_server(server) -> None:
    """Stop accepting, from any thread: the close runs inside waitress's own loop, which then exits."""
    from waitress import wasyncore

    try:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
    except OSError:
        # The loop has already ended (its trigger is closed): nothing is listening any more.
        wasyncore.close_all(server._map, ignore_all=True)
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=10)


def create_http_server(app: App, *, host: str, port: int, threads: int):
    """A waitress server, not yet running: call `.run()` (blocking) and `.close()`."""
    return create_server(
        wsgi_app(app),
        host=host,
        port=port,
        threads=threads,
        ident="mp-service-account",
        # Slack retries a request after 3 s; queueing longer than that only produces duplicates.
        channel_timeout=30,
        connection_limit=1000,
        backlog=1024,
    )
