"""Counted rows: the ids of rows that only add to counters (a `store: false` call's metering, a rejection), so
that a replay of the journal, a spill file or the dead letters counts each of them once.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counted_rows",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_counted_rows_at", "counted_rows", ["at"])


def downgrade() -> None:
    op.drop_index("ix_counted_rows_at", "counted_rows")
    op.drop_table("counted_rows")
