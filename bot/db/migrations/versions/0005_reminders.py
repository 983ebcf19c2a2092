"""Expiry reminders sent (each once, ever) and named leases for periodic jobs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from bot.db.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reminders_sent",
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), primary_key=True),
        # The primary key is the "once, ever": a second instance or a rerun cannot insert it again.
        sa.Column("days_before", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    op.drop_table("reminders_sent")
