"""The initial schema: keys, end users, messages, feedback, files.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False, server_default=""),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_api_keys_project", "api_keys", ["project"])
    op.create_table(
        "end_users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("external_user_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(32), nullable=False, server_default="service_api"),
        sa.Column("is_anonymous", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("project", "external_user_id", name="uq_end_users_project_external"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("face", sa.String(16), nullable=False),
        sa.Column("task_id", sa.String(36)),
        sa.Column("end_user_id", sa.String(36)),
        sa.Column("user", sa.String(255)),
        sa.Column("key_id", sa.String(36)),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("upstream_model", sa.String(255), nullable=False),
        sa.Column("inputs", sa.JSON),
        sa.Column("query", sa.Text),
        sa.Column("prompt", sa.JSON),
        sa.Column("files", sa.JSON),
        sa.Column("answer", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_code", sa.String(64)),
        sa.Column("finish_reason", sa.String(32)),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prompt_price", sa.String(32), nullable=False, server_default="0"),
        sa.Column("completion_price", sa.String(32), nullable=False, server_default="0"),
        sa.Column("total_price", sa.String(32), nullable=False, server_default="0"),
        sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
        sa.Column("latency", sa.Float),
        sa.Column("ttft", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_messages_project_created", "messages", ["project", "created_at"])
    op.create_index("ix_messages_key_created", "messages", ["key_id", "created_at"])
    op.create_index("ix_messages_end_user", "messages", ["end_user_id"])
    op.create_table(
        "feedbacks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("rating", sa.String(16), nullable=False),
        sa.Column("content", sa.Text),
        sa.Column("from_source", sa.String(16), nullable=False, server_default="user"),
        sa.Column("from_end_user_id", sa.String(36)),
        sa.Column("from_account_id", sa.String(36)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("message_id", "from_end_user_id", name="uq_feedbacks_message_user"),
    )
    op.create_index("ix_feedbacks_project_created", "feedbacks", ["project", "created_at"])
    op.create_table(
        "files",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("extension", sa.String(32), nullable=False),
        sa.Column("mime_type", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("storage_key", sa.String(255), nullable=False),
    )
    op.create_index("ix_files_project_created_by", "files", ["project", "created_by"])


def downgrade() -> None:
    for table in ("files", "feedbacks", "messages", "end_users", "api_keys"):
        op.drop_table(table)
