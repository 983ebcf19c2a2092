"""The database connection: building the engine (SQLite or PostgreSQL), migrating it, and the queue that
lets SQLite writers take turns across threads and processes."""

from __future__ import annotations

import fcntl
import hashlib
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
READ_ONLY = "mpsa_read_only"


def build_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record) -> None:
            # Let SQLAlchemy's BEGIN below own transactions, so they can take the write lock up front.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:
            # Writers take the lock up front, so count-then-insert is race-free across threads and
            # processes; readers (WAL) never wait for a writer.
            read_only = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(database_url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision; safe when several instances start at once."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("migrations")})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class SQLiteWriterQueue:
    """One writer at a time, across the threads and the worker processes that share a SQLite file.

    SQLite's own busy handler makes a waiting writer sleep up to 100 ms between tries; under a burst that
    convoy dominates latency. Waiters here block in the kernel and start the moment the previous writer
    has committed. The lock file sits beside the database.
    """

    def __init__(self, database: str | None):
        self._threads = threading.Lock()
        in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
        self._path = None if in_memory else Path(database).with_name(Path(database).name + ".writer.lock")
        self._file: Any = None

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._path is not None:
                if self._file is None:  # opened lazily: after a fork each process needs its own
                    self._file = self._path.open("a")
                fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._threads.release()
