"""Destinations: where a request's credentials go (a policy destination and the entry's name there), the
version the write became, and when the write began (GitHub keeps no mark of its own: this is it). No
column is named like a secret: tests/test_storage.py keeps it so, as a guard against storing one.

Revision ID: 0008
Revises: 0006 (the integrator re-chains it after 0007)
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from bot.db.schema import UTCDateTime

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account_requests") as batch:
        batch.add_column(sa.Column("destination", sa.String(64)))
        batch.add_column(sa.Column("destination_entry", sa.String(64)))
        batch.add_column(sa.Column("destination_version", sa.String(128)))
        batch.add_column(sa.Column("store_started_at", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("account_requests") as batch:
        batch.drop_column("store_started_at")
        batch.drop_column("destination_version")
        batch.drop_column("destination_entry")
        batch.drop_column("destination")
