"""An in-process HTTP server for the tests: waitress in a thread, so a test can hold the runtime.

Production HTTP mode runs gunicorn (bot/web/server.py), which forks; the subprocess tests cover that.
"""

from __future__ import annotations

from waitress import create_server, wasyncore

from bot.web.server import wsgi_app


def create_http_server(app, *, signing_secret: str, host: str, port: int, threads: int):
    return create_server(
        wsgi_app(app, signing_secret=signing_secret),
        host=host,
        port=port,
        threads=threads,
        channel_timeout=30,
        backlog=1024,
    )


def stop_http_server(server) -> None:
    """Stop accepting, from any thread: the close runs inside waitress's own loop, which then exits."""
    try:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
    except OSError:
        # The loop has already ended (its trigger is closed): nothing is listening any more.
        wasyncore.close_all(server._map, ignore_all=True)
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=10)
