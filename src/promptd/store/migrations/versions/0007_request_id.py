"""Request ids: each record keeps the X-Request-Id of the HTTP request that produced it (searchable).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"  # asked for as 0005 after 0003; main's 0004 and 0005 (moderation) landed first
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("request_id", sa.String(128)))
    op.create_index("ix_messages_request_id", "messages", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_request_id", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("request_id")
