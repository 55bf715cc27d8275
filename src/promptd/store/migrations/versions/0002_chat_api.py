"""The chat API: sessions, labels, tags, campaigns and attempts on messages; metric feedback, comparisons,
session outcomes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("session_id", sa.String(36)))
        batch.add_column(sa.Column("choice_index", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("labels", sa.JSON))
        batch.add_column(sa.Column("tags", sa.JSON))
        batch.add_column(sa.Column("campaign", sa.String(128)))
        batch.add_column(sa.Column("attempts", sa.JSON))
    op.create_index("ix_messages_session", "messages", ["session_id", "created_at"])
    op.create_index("ix_messages_campaign", "messages", ["project", "campaign"])
    op.create_table(
        "metric_feedback",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("completion_id", sa.String(36), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("details", sa.Text),
        sa.Column("user_id", sa.String(64)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_metric_feedback_completion", "metric_feedback", ["completion_id"])
    op.create_index("ix_metric_feedback_project_metric", "metric_feedback", ["project", "metric"])
    op.create_table(
        "comparisons",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("preferred", sa.JSON, nullable=False),
        sa.Column("other", sa.JSON, nullable=False),
        sa.Column("tied", sa.String(8)),
        sa.Column("messages", sa.JSON),
        sa.Column("user_id", sa.String(64)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_comparisons_project_metric", "comparisons", ["project", "metric"])
    op.create_table(
        "outcomes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("user_id", sa.String(64)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_outcomes_session", "outcomes", ["session_id"])


def downgrade() -> None:
    for table in ("outcomes", "comparisons", "metric_feedback"):
        op.drop_table(table)
    op.drop_index("ix_messages_campaign", "messages")
    op.drop_index("ix_messages_session", "messages")
    with op.batch_alter_table("messages") as batch:
        for column in ("attempts", "campaign", "tags", "labels", "choice_index", "session_id"):
            batch.drop_column(column)
