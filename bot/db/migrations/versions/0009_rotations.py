"""Rotations: one record per rotated account (keyed by the old account's request), its state, its
successor, the secret's new version, the overlap and the claim of the run working it (bot/rotate/store.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from bot.db.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rotations",
        # The primary key is "one rotation per account": two runs cannot both start one.
        sa.Column("request_id", sa.String(32), sa.ForeignKey("account_requests.id"), primary_key=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("successor_request_id", sa.String(32), sa.ForeignKey("account_requests.id")),
        sa.Column("successor_account_id", sa.BigInteger),
        sa.Column("successor_username", sa.String(255)),
        sa.Column("destination_version", sa.String(128)),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("written_at", UTCDateTime),
        sa.Column("verified_at", UTCDateTime),
        sa.Column("kept_until", UTCDateTime),
        sa.Column("cap_warned_at", UTCDateTime),
        sa.Column("failure", sa.Text),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_rotations_state", "rotations", ["state"])


def downgrade() -> None:
    op.drop_index("ix_rotations_state", table_name="rotations")
    op.drop_table("rotations")
