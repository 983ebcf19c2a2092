"""PostgreSQL fixtures for tests that need a real server.

Use them from a conftest::

    from tests.postgres import fresh_postgres_url, postgres_url  # noqa: F401

and mark such tests ``@pytest.mark.postgres``.

``postgres_url`` (session): TEST_POSTGRES_URL if set (it must connect), else a throwaway server
started with ``scripts/postgres-test-server`` for this session and stopped at its end. Without
a server the tests that use it are skipped -- unless CI=true or REQUIRE_POSTGRES=1, where they
fail, so that CI never silently skips them.

``fresh_postgres_url`` (function): a new, uniquely named, empty database on that server for
one test, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = REPO_ROOT / "scripts" / "postgres-test-server"
STATE_ROOT = REPO_ROOT / ".pytest-postgres"
NO_BINARIES_EXIT_CODE = 2
START_TIMEOUT_S = 120
CONNECT_TIMEOUT_S = 5

__all__ = ["fresh_postgres_url", "postgres_required", "postgres_url"]


def postgres_required() -> bool:
    """True where PostgreSQL tests must run rather than skip (CI, or REQUIRE_POSTGRES=1)."""
    if os.environ.get("CI", "").strip().lower() == "true":
        return True
    return os.environ.get("REQUIRE_POSTGRES", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> NoReturn:
    if postgres_required():
        pytest.fail(
            f"PostgreSQL is required here (CI=true or REQUIRE_POSTGRES=1) but unavailable: {reason}",
            pytrace=False,
        )
    pytest.skip(f"no PostgreSQL server: {reason}")


def _engine(url: str | URL, **kwargs: object) -> sa.Engine:
    return sa.create_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}, **kwargs
    )


def _connect_error(url: str) -> str | None:
    """None if ``url`` accepts a connection, else why not."""
    try:
        engine = _engine(url)
    except Exception as exc:  # a malformed URL or a missing driver
        return f"{type(exc).__name__}: {exc}"
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def _run_server_script(command: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash") or "/bin/bash"
    env = {**os.environ, "MPSA_PG_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [bash, str(SERVER_SCRIPT), command],
        capture_output=True,
        text=True,
        env=env,
        timeout=START_TIMEOUT_S,
        check=False,
    )


def _stop_quietly(state_dir: Path) -> None:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        _run_server_script("stop", state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL (postgresql+psycopg://...) of a reachable PostgreSQL server."""
    configured = os.environ.get("TEST_POSTGRES_URL", "").strip()
    if configured:
        error = _connect_error(configured)
        if error is not None:
            # Set explicitly but broken: a configuration error, never a silent skip.
            pytest.fail(
                f"TEST_POSTGRES_URL={_redacted(configured)} does not accept connections: {error}",
                pytrace=False,
            )
        yield configured
        return

    if not SERVER_SCRIPT.is_file():
        _unavailable(f"TEST_POSTGRES_URL is not set and {SERVER_SCRIPT} is missing")

    # A state dir of this session's own: a server someone else started is never reused nor stopped.
    state_dir = STATE_ROOT / f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        result = _run_server_script("start", state_dir)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _stop_quietly(state_dir)
        _unavailable(f"scripts/postgres-test-server start: {exc}")
    if result.returncode == NO_BINARIES_EXIT_CODE:
        shutil.rmtree(state_dir, ignore_errors=True)
        _unavailable(
            "TEST_POSTGRES_URL is not set and no PostgreSQL server binaries (initdb, pg_ctl) were found; "
            "install PostgreSQL (Debian: apt-get install postgresql) or point TEST_POSTGRES_URL at a server"
        )
    match = re.search(r"^export TEST_POSTGRES_URL=(\S+)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        _stop_quietly(state_dir)
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        _unavailable(f"scripts/postgres-test-server start exited {result.returncode}:\n{tail}")

    url = match.group(1)
    try:
        error = _connect_error(url)
        if error is not None:
            _unavailable(f"the throwaway server at {_redacted(url)} does not accept connections: {error}")
        yield url
    finally:
        _stop_quietly(state_dir)


def _drop_database(engine: sa.Engine, name: str) -> None:
    with engine.connect() as conn:
        try:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except sa.exc.ProgrammingError:  # PostgreSQL < 13 has no WITH (FORCE)
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A URL of a new, empty database made for this test alone and dropped after it."""
    base = make_url(postgres_url)
    name = f"mpsa_t_{uuid.uuid4().hex[:16]}"  # lowercase hex: a safe identifier, no quoting issues
    # CREATE/DROP DATABASE cannot run in a transaction: an autocommit connection to the maintenance
    # database, or to the configured one where `postgres` is not there to connect to.
    admin = None
    errors = []
    for maintenance_db in dict.fromkeys(("postgres", base.database)):
        engine = _engine(base.set(database=maintenance_db), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.DBAPIError as exc:
            errors.append(f"{maintenance_db}: {str(exc).strip().splitlines()[0]}")
            engine.dispose()
            continue
        admin = engine
        break
    if admin is None:
        pytest.fail(f"could not create a test database on {_redacted(postgres_url)}: {errors}", pytrace=False)

    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            _drop_database(admin, name)
        finally:
            admin.dispose()
