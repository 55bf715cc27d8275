"""Knowledge bases: datasets, documents, segments with a full-text index, and the record's retriever resources.

SQLite gets an FTS5 table kept in step by triggers; PostgreSQL a generated tsvector column with a GIN index
(no extension needed). Design: docs/knowledge.md.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE knowledge_segments_fts USING fts5(content, tokenize = 'porter unicode61')",
    """CREATE TRIGGER knowledge_segments_fts_insert AFTER INSERT ON knowledge_segments BEGIN
        INSERT INTO knowledge_segments_fts(rowid, content) VALUES (new.seq, new.content);
    END""",
    """CREATE TRIGGER knowledge_segments_fts_delete AFTER DELETE ON knowledge_segments BEGIN
        DELETE FROM knowledge_segments_fts WHERE rowid = old.seq;
    END""",
    """CREATE TRIGGER knowledge_segments_fts_update AFTER UPDATE OF content ON knowledge_segments BEGIN
        UPDATE knowledge_segments_fts SET content = new.content WHERE rowid = new.seq;
    END""",
]

POSTGRES_FTS = [
    "ALTER TABLE knowledge_segments ADD COLUMN tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED",
    "CREATE INDEX ix_knowledge_segments_tsv ON knowledge_segments USING gin (tsv)",
]


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("retriever_resources", sa.JSON))
    op.create_table(
        "knowledge_datasets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("indexing_technique", sa.String(16)),
        sa.Column("retrieval", sa.JSON, nullable=False),
        sa.Column("chunking", sa.JSON, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "knowledge_documents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "dataset_id", sa.String(36), sa.ForeignKey("knowledge_datasets.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("data_source_type", sa.String(32), nullable=False, server_default="upload_file"),
        sa.Column("created_from", sa.String(16), nullable=False),
        sa.Column("batch", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("chunking", sa.JSON),
        sa.Column("indexing_status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("word_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_segments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completed_segments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("processing_started_at", sa.Float),
        sa.Column("parsing_completed_at", sa.Float),
        sa.Column("cleaning_completed_at", sa.Float),
        sa.Column("splitting_completed_at", sa.Float),
        sa.Column("completed_at", sa.Float),
    )
    op.create_index("ix_knowledge_documents_dataset", "knowledge_documents", ["dataset_id", "position"])
    op.create_index("ix_knowledge_documents_batch", "knowledge_documents", ["dataset_id", "batch"])
    op.create_table(
        "knowledge_segments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column(
            "dataset_id", sa.String(36), sa.ForeignKey("knowledge_datasets.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "document_id", sa.String(36), sa.ForeignKey("knowledge_documents.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("answer", sa.Text),
        sa.Column("keywords", sa.JSON),
        sa.Column("word_count", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("hit_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("index_node_hash", sa.String(64)),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_knowledge_segments_document", "knowledge_segments", ["document_id", "position"])
    op.create_index("ix_knowledge_segments_dataset", "knowledge_segments", ["dataset_id"])
    for statement in POSTGRES_FTS if op.get_bind().dialect.name == "postgresql" else SQLITE_FTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE knowledge_segments_fts")  # its triggers go with knowledge_segments
    op.drop_table("knowledge_segments")
    op.drop_table("knowledge_documents")
    op.drop_table("knowledge_datasets")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("retriever_resources")
