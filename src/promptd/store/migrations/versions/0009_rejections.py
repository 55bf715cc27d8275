"""Rejected requests: per minute, the requests refused before any model call (they leave no record), by
project, key, face, status and error code, kept by the recorder like usage_daily.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rejections",
        sa.Column("minute", sa.BigInteger, nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("face", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("minute", "project", "key_id", "face", "status", "code", name="pk_rejections"),
    )
    op.create_index("ix_rejections_project_minute", "rejections", ["project", "minute"])


def downgrade() -> None:
    op.drop_index("ix_rejections_project_minute", "rejections")
    op.drop_table("rejections")
