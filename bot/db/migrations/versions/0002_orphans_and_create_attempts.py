"""Cleanup after ambiguous creates: when the last create call was made, and each orphan's own outcome.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from bot.db.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account_requests") as batch:
        batch.add_column(sa.Column("last_create_attempt_at", UTCDateTime))
    # Requests stored before this revision made their create call right after being stored.
    op.execute("UPDATE account_requests SET last_create_attempt_at = created_at")
    op.create_table(
        "orphan_accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), nullable=False),
        sa.Column("mixpanel_account_id", sa.BigInteger, nullable=False, unique=True),
        sa.Column("mixpanel_username", sa.String(255)),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("found_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_orphan_accounts_request", "orphan_accounts", ["request_id"])
    # An undeletable account recorded before this revision becomes an orphan the sweeper retries.
    op.execute(
        "INSERT INTO orphan_accounts "
        "(request_id, mixpanel_account_id, mixpanel_username, outcome, found_at, updated_at) "
        "SELECT id, mixpanel_account_id, mixpanel_username, 'delete_failed', updated_at, updated_at "
        "FROM account_requests WHERE state = 'delete_failed' AND mixpanel_account_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("orphan_accounts")
    with op.batch_alter_table("account_requests") as batch:
        batch.drop_column("last_create_attempt_at")
