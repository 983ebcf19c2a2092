"""Alembic environment: always run with a connection handed in by `bot.db.engine.migrate`."""

from alembic import context

from bot.create.orphans import OrphanAccount  # noqa: F401 - registers its table on Base.metadata
from bot.db.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the bot never runs Alembic without a connection
    raise RuntimeError("run migrations through bot.db.engine.migrate()")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
