"""Approvals: approval records, one decision per approver, the messages to update; the actor of audit events.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from bot.db.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("actor_id", sa.String(32)))
    op.create_table(
        "approval_requests",
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), primary_key=True),
        sa.Column("approvals_needed", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.Column("decide_by", UTCDateTime, nullable=False),
        sa.Column("claim_by", UTCDateTime),
        sa.Column("reminded_at", UTCDateTime),
        sa.Column("decided_by", sa.String(32)),
        sa.Column("decided_at", UTCDateTime),
    )
    op.create_table(
        "approval_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), nullable=False),
        sa.Column("approver_id", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("request_id", "approver_id", name="uq_approval_decisions_request_approver"),
    )
    op.create_table(
        "approval_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
    )
    op.create_index("ix_approval_messages_request_id", "approval_messages", ["request_id"])


def downgrade() -> None:
    op.drop_table("approval_messages")
    op.drop_table("approval_decisions")
    op.drop_table("approval_requests")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("actor_id")
