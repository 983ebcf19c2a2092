"""The baseline: the same app served by Bolt's built-in development server, as a tutorial-built bot does.

    python -m bench.baseline_server      (settings from the environment, like app.py)

Bolt's ``app.start()`` wraps ``http.server.HTTPServer``: one request at a time, a listen backlog of 5.
"""

from __future__ import annotations

import sys

from app import create_app
from bot.runtime import build_runtime, configure_logging
from bot.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        for problem in error.problems:
            print(f"baseline_server cannot start: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings)
    runtime = build_runtime(settings)
    app = create_app(runtime)
    app.start(port=settings.port, path="/slack/events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
