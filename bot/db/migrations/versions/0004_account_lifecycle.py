"""The lifecycle of delivered accounts: closing a record, linking a replacement, deletions claimed once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from bot.db.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account_requests") as table:
        table.add_column(sa.Column("closed_at", UTCDateTime))
        table.add_column(sa.Column("closed_by", sa.String(32)))
        table.add_column(sa.Column("replaces_request_id", sa.String(32)))
    op.create_index("ix_account_requests_account", "account_requests", ["mixpanel_account_id"])
    op.create_table(
        "account_deletions",
        # One row per Mixpanel account: inserting it is the compare-and-set that lets one click delete.
        sa.Column("mixpanel_account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id")),
        sa.Column("actor_id", sa.String(32), nullable=False),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("account_deletions")
    op.drop_index("ix_account_requests_account", "account_requests")
    with op.batch_alter_table("account_requests") as table:
        table.drop_column("replaces_request_id")
        table.drop_column("closed_by")
        table.drop_column("closed_at")
