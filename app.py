"""mp-service-account: construct the Bolt app, register the listeners, start it.

`python app.py` runs Socket Mode when SLACK_APP_TOKEN is set, otherwise HTTP on $PORT.
"""

from __future__ import annotations

import argparse
import sys

from slack_bolt import App

from bot.runtime import Runtime, configure_logging
from bot.serve import run
from bot.settings import SettingsError, load_settings
from handlers import register_all


def create_app(runtime: Runtime) -> App:
    app = runtime.new_bolt_app()
    register_all(app, runtime)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mint Mixpanel service accounts from Slack.")
    parser.add_argument(
        "--mode",
        choices=["auto", "http", "socket"],
        default="auto",
        help="socket when SLACK_APP_TOKEN is set (auto), or force one",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print("mp-service-account cannot start; fix these settings (environment or .env):", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        run(settings, args.mode, create_app)
    except SettingsError as error:
        for problem in error.problems:
            print(f"mp-service-account cannot start: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
