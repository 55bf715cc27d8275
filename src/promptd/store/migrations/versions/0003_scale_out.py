"""Scale-out: admin keys and per-key limits, daily usage rollups, an index for retention.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="app"))
        batch.add_column(sa.Column("limits", sa.JSON))
    op.create_index("ix_messages_created", "messages", ["created_at"])
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("errors", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_pico", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("day", "project", "key_id", "model", "currency", name="pk_usage_daily"),
    )
    op.create_index("ix_usage_daily_project_day", "usage_daily", ["project", "day"])
    op.create_index("ix_usage_daily_key_day", "usage_daily", ["key_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_usage_daily_key_day", "usage_daily")
    op.drop_index("ix_usage_daily_project_day", "usage_daily")
    op.drop_table("usage_daily")
    op.drop_index("ix_messages_created", "messages")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("limits")
        batch.drop_column("role")
