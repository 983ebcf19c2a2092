"""Checks on what the deployment holds itself: its settings, its database, its policy file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, make_url
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from bot.db.engine import MIGRATIONS_DIR
from bot.doctor.report import CheckResult, failed, passed
from bot.policy.file import Policy, PolicyError, load_policy
from bot.settings import Settings, SettingsError, load_settings

DATABASE_CONNECT_TIMEOUT = 5
STARTING_MIGRATES = "start the bot once: it brings the database to the newest migration at every start"


def check_settings() -> tuple[CheckResult, Settings | None]:
    try:
        settings = load_settings()
    except SettingsError as error:
        return failed("settings", "; ".join(error.problems), "set these in the environment or .env"), None
    mode = (
        "Socket Mode (SLACK_APP_TOKEN set)" if settings.slack_app_token else "HTTP mode (no SLACK_APP_TOKEN)"
    )
    return passed("settings", f"valid; {mode}, Mixpanel region {settings.mixpanel_region}"), settings


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def database_password(database_url: str) -> str | None:
    try:
        return make_url(database_url).password
    except SQLAlchemyError:
        return None


def check_database(database_url: str) -> CheckResult:
    """Reachable, and at the newest migration; read-only: doctor never creates nor migrates a database."""
    try:
        url = make_url(database_url)
    except SQLAlchemyError:
        return failed(
            "database", "DATABASE_URL is not a database URL", "set DATABASE_URL to a SQLAlchemy URL"
        )
    shown = safe_url(url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if not url.database or url.database == ":memory:" or not path.is_file():
            return failed(
                "database",
                f"no database file at {shown}",
                f"check DATABASE_URL; if it is right, {STARTING_MIGRATES}",
            )
    try:
        engine = read_only_engine(url)
    except (SQLAlchemyError, ImportError) as error:  # ImportError: no driver for that database
        return failed("database", f"cannot use {shown} ({type(error).__name__})", "check DATABASE_URL")
    from alembic.runtime.migration import MigrationContext  # only here: a third of doctor's start-up

    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except (SQLAlchemyError, OSError) as error:
        return failed(
            "database",
            f"cannot reach {shown} ({_first_line(error)})",
            "check DATABASE_URL and that the server runs",
        )
    finally:
        engine.dispose()
    return _migration_state(shown, current)


def read_only_engine(url: URL) -> Engine:
    """An engine that cannot change the database (SQLite: opened read-only), one connection at a time."""
    if url.get_backend_name() == "sqlite":
        read_only = Path(url.database or "").resolve().as_uri() + "?mode=ro"
        return create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(read_only, uri=True), poolclass=NullPool
        )
    connect_args = (
        {"connect_timeout": DATABASE_CONNECT_TIMEOUT} if url.get_backend_name() == "postgresql" else {}
    )
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def _migration_state(shown: str, current: set[str]) -> CheckResult:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(config)
    heads = set(scripts.get_heads())
    at = ", ".join(sorted(current))
    if current == heads:
        return passed("database", f"{shown} reachable; migrations at head ({at})")
    if not current:
        return failed("database", f"{shown} reachable, but no migration was ever applied", STARTING_MIGRATES)
    known = {revision.revision for revision in scripts.walk_revisions()}
    if current <= known:
        return failed(
            "database",
            f"{shown} is at migration {at}, behind this code's {', '.join(sorted(heads))}",
            STARTING_MIGRATES,
        )
    return failed(
        "database",
        f"{shown} is at migration {at}, which this code does not know (migrated by a newer version?)",
        "run the version of the bot that migrated it, or check DATABASE_URL",
    )


def _first_line(error: BaseException) -> str:
    detail = getattr(error, "orig", None) or error
    text = str(detail).strip().splitlines()
    return f"{type(detail).__name__}: {text[0][:200]}" if text else type(detail).__name__


def check_policy_file(path: Path | None) -> tuple[CheckResult, Policy | None]:
    try:
        policy = load_policy(path)
    except PolicyError as error:
        return failed("policy-file", f"{path}: {'; '.join(error.problems)}", f"correct {path}"), None
    if path is None:
        return passed("policy-file", "no policy file: the conservative defaults apply"), policy
    users = {user for _, selector in policy.selectors() for user in selector.users}
    groups = {group for _, selector in policy.selectors() for group in selector.usergroups}
    counts = f"{len(users)} user(s), {len(groups)} user group(s) and {len(policy.channels())} channel(s)"
    return passed("policy-file", f"{path} is valid; it names {counts}"), policy
