"""Refusal notices: which refusals the audit channel was told about, and a per-person index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before this revision stay NULL: "not applicable", so they are never counted as untold.
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("announced", sa.Boolean))
    op.create_index("ix_audit_events_requester_at", "audit_events", ["requester_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_requester_at", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("announced")
