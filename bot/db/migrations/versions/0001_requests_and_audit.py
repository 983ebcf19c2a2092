"""Requests with explicit states, and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from bot.db.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("submission_key", sa.String(64), nullable=False, unique=True),
        sa.Column("requester_id", sa.String(32), nullable=False),
        sa.Column("team_id", sa.String(32)),
        sa.Column("channel_id", sa.String(32)),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("project_ids", sa.JSON, nullable=False),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("mixpanel_account_id", sa.BigInteger),
        sa.Column("mixpanel_username", sa.String(255)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_account_requests_requester_created", "account_requests", ["requester_id", "created_at"]
    )
    op.create_index("ix_account_requests_state", "account_requests", ["state"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id")),
        sa.Column("requester_id", sa.String(32), nullable=False),
        sa.Column("username", sa.String(128)),
        sa.Column("role", sa.String(16)),
        sa.Column("project_ids", sa.JSON),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("mixpanel_account_id", sa.BigInteger),
        sa.Column("mixpanel_username", sa.String(255)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("account_requests")
