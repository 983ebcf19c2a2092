"""Governance: an account's current owner, notices sent once per period, keep-reasons, open ownerships,
adopted and unmanaged accounts, review rounds and answers, and posture snapshots for the trend.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from bot.db.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the requester owns it (every account made before this migration).
    op.add_column("account_requests", sa.Column("owner_id", sa.String(32)))
    op.create_table(
        "governance_notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("mixpanel_account_id", sa.BigInteger, nullable=False),
        sa.Column("period", sa.String(40), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=False),
        # The "once per period, across instances": a second run or instance cannot insert it again.
        sa.UniqueConstraint("kind", "mixpanel_account_id", "period", name="uq_governance_notices_once"),
    )
    op.create_table(
        "idle_keeps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("mixpanel_account_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id")),
        sa.Column("actor_id", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("kept_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "open_ownerships",
        sa.Column("mixpanel_account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), nullable=False),
        sa.Column("former_owner", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("resolved_by", sa.String(32)),
        sa.Column("resolved_at", UTCDateTime),
    )
    op.create_table(
        "adopted_accounts",
        sa.Column("mixpanel_account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), nullable=False),
        sa.Column("mixpanel_creator", sa.BigInteger),
        sa.Column("adopted_by", sa.String(32), nullable=False),
        sa.Column("adopted_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "unmanaged_accounts",
        sa.Column("mixpanel_account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("mixpanel_creator", sa.BigInteger),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "review_rounds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.String(32), nullable=False),
        sa.Column("period", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("owner_id", "period", name="uq_review_rounds_owner_period"),
    )
    op.create_table(
        "review_answers",
        sa.Column("round_id", sa.String(32), sa.ForeignKey("review_rounds.id"), primary_key=True),
        sa.Column("mixpanel_account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("answer", sa.String(16)),
        sa.Column("answered_by", sa.String(32)),
        sa.Column("answered_at", UTCDateTime),
    )
    op.create_table(
        "posture_snapshots",
        sa.Column("period", sa.String(16), primary_key=True),
        sa.Column("taken_at", UTCDateTime, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "posture_snapshots",
        "review_answers",
        "review_rounds",
        "unmanaged_accounts",
        "adopted_accounts",
        "open_ownerships",
        "idle_keeps",
        "governance_notices",
    ):
        op.drop_table(table)
    with op.batch_alter_table("account_requests") as batch:
        batch.drop_column("owner_id")
