"""The database schema (SQLAlchemy Core tables). Alembic migrations own it; this module mirrors the head."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "api_keys",
    "comparisons",
    "end_users",
    "feedbacks",
    "files",
    "knowledge_datasets",
    "knowledge_documents",
    "knowledge_segments",
    "messages",
    "metadata",
    "metric_feedback",
    "outcomes",
    "rejections",
    "usage_daily",
]

metadata = MetaData()

#: Times are stored as float Unix seconds (UTC): the same in SQLite and PostgreSQL, and cheap to compare.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("name", String(128), nullable=False, server_default=""),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("role", String(16), nullable=False, server_default="app"),  # app | admin (migration 0003)
    Column("limits", JSON),  # per-key limits: {rpm, tpm, cost_per_day, cost_per_month}
    Index("ix_api_keys_project", "project"),
)

end_users = Table(
    "end_users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("external_user_id", String(255), nullable=False),
    Column("type", String(32), nullable=False, server_default="service_api"),
    Column("is_anonymous", Boolean, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("project", "external_user_id", name="uq_end_users_project_external"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("face", String(16), nullable=False),
    Column("kind", String(16), nullable=False, server_default="chat"),  # chat | embedding | speech | … (0004)
    Column("task_id", String(36)),
    Column("end_user_id", String(36)),
    Column("user", String(255)),
    Column("key_id", String(36)),
    Column("model", String(128), nullable=False),
    Column("provider", String(128), nullable=False),
    Column("upstream_model", String(255), nullable=False),
    Column("inputs", JSON),
    Column("query", Text),
    Column("prompt", JSON),  # the messages sent to the model
    Column("files", JSON),
    Column("answer", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False),  # normal | stopped | error
    Column("error", Text),
    Column("error_code", String(64)),
    Column("finish_reason", String(32)),
    Column("prompt_tokens", Integer, nullable=False, server_default="0"),
    Column("completion_tokens", Integer, nullable=False, server_default="0"),
    Column("total_tokens", Integer, nullable=False, server_default="0"),
    Column("prompt_price", String(32), nullable=False, server_default="0"),
    Column("completion_price", String(32), nullable=False, server_default="0"),
    Column("total_price", String(32), nullable=False, server_default="0"),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("latency", Float),  # seconds, request received → last token
    Column("ttft", Float),  # seconds, request received → first token
    Column("created_at", Float, nullable=False),
    # the chat API (migration 0002)
    Column("session_id", String(36)),
    Column("choice_index", Integer, nullable=False, server_default="0"),
    Column("labels", JSON),
    Column("tags", JSON),
    Column("campaign", String(128)),  # the campaign key this request was exposed to
    Column("attempts", JSON),  # every model tried: [{model, provider, status, error, ttft}]
    Column("request_id", String(128)),  # the HTTP request's X-Request-Id (migration 0005)
    Column("moderation", JSON),  # {input?, output?: {type, flagged, action?, categories?}} (migration 0005)
    Column("catalog_version", String(16)),  # the catalog that served it (promptd/reload.py, migration 0006)
    Column("retriever_resources", JSON),  # the knowledge segments the prompt was given (migration 0008)
    Index("ix_messages_project_created", "project", "created_at"),
    Index("ix_messages_session", "session_id", "created_at"),
    Index("ix_messages_campaign", "project", "campaign"),
    Index("ix_messages_key_created", "key_id", "created_at"),
    Index("ix_messages_end_user", "end_user_id"),
    Index("ix_messages_created", "created_at"),
    Index("ix_messages_request_id", "request_id"),  # retention deletes by age across projects
)

feedbacks = Table(
    "feedbacks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("rating", String(16), nullable=False),
    Column("content", Text),
    Column("from_source", String(16), nullable=False, server_default="user"),
    Column("from_end_user_id", String(36)),
    Column("from_account_id", String(36)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("message_id", "from_end_user_id", name="uq_feedbacks_message_user"),
    Index("ix_feedbacks_project_created", "project", "created_at"),
)

files = Table(
    "files",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("name", String(255), nullable=False),
    Column("size", Integer, nullable=False),
    Column("extension", String(32), nullable=False),
    Column("mime_type", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # image | audio | video | document
    Column("created_by", String(36), nullable=False),  # end user id
    Column("created_at", Float, nullable=False),
    Column("storage_key", String(255), nullable=False),
    Index("ix_files_project_created_by", "project", "created_by"),
)

metric_feedback = Table(
    "metric_feedback",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("completion_id", String(36), nullable=False),
    Column("metric", String(128), nullable=False),
    Column("value", Float, nullable=False),
    Column("reason", String(64)),
    Column("details", Text),
    Column("user_id", String(64)),
    Column("created_at", Float, nullable=False),
    Index("ix_metric_feedback_completion", "completion_id"),
    Index("ix_metric_feedback_project_metric", "project", "metric"),
)

comparisons = Table(
    "comparisons",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("metric", String(128), nullable=False),
    Column("preferred", JSON, nullable=False),  # {"completion_id"} or {"text", "model"}
    Column("other", JSON, nullable=False),
    Column("tied", String(8)),
    Column("messages", JSON),
    Column("user_id", String(64)),
    Column("created_at", Float, nullable=False),
    Index("ix_comparisons_project_metric", "project", "metric"),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("session_id", String(36), nullable=False),
    Column("metric", String(128), nullable=False),
    Column("value", Float, nullable=False),
    Column("user_id", String(64)),
    Column("created_at", Float, nullable=False),
    Index("ix_outcomes_session", "session_id"),
)

#: Daily usage per project, key and model, kept by the recorder in the same transaction as the messages it
#: writes (an upsert that adds). `day` is the UTC date (YYYY-MM-DD); `key_id` is "" for requests without a key.
#: Costs are integers in pico-units of the currency (10^-12), exact for prices of up to 12 decimals per token.
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("day", String(10), nullable=False),
    Column("project", String(128), nullable=False),
    Column("key_id", String(36), nullable=False),
    Column("model", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    Column("errors", BigInteger, nullable=False, server_default="0"),
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_pico", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("day", "project", "key_id", "model", "currency", name="pk_usage_daily"),
    Index("ix_usage_daily_project_day", "project", "day"),
    Index("ix_usage_daily_key_day", "key_id", "day"),
)

#: Requests refused before any model call (a bad key, a client mistake, a rate limit or budget, an unavailable
#: store): they leave no record in `messages`, so the recorder counts them here per UTC minute, in an upsert that
#: adds (like usage_daily; migration 0009). `project` and `key_id` are "" when the request named none that was
#: known; `face` is the API (dify | chat); `code` is promptd's error code (unauthorized, rate_limit_exceeded, …).
rejections = Table(
    "rejections",
    metadata,
    Column("minute", BigInteger, nullable=False),  # Unix seconds at the start of the minute
    Column("project", String(128), nullable=False),
    Column("key_id", String(36), nullable=False),
    Column("face", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("code", String(64), nullable=False),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("minute", "project", "key_id", "face", "status", "code", name="pk_rejections"),
    Index("ix_rejections_project_minute", "project", "minute"),
)

#: the rows that only add to counters (a `store: false` call's metering, a rejection) the database has counted,
#: by their `once` id: a replay (journal, spill file, dead letters) counts each once (store/recorder.py)
counted_rows = Table(
    "counted_rows",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("at", Float, nullable=False),  # Unix seconds: purged with the messages (retention)
    Index("ix_counted_rows_at", "at"),
)

# --- knowledge bases (migration 0007; design in docs/knowledge.md) ---------------------------------------------

knowledge_datasets = Table(
    "knowledge_datasets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("source", String(16), nullable=False),  # catalog | api
    Column("indexing_technique", String(16)),  # economy (full text only) | high_quality (embeddings too)
    Column("retrieval", JSON, nullable=False),  # {mode, top_k, score_threshold, embedding_model, rerank_model}
    Column("chunking", JSON, nullable=False),  # {size, overlap, separator}
    Column("revision", BigInteger, nullable=False, server_default="0"),  # bumped by every segment change
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

knowledge_documents = Table(
    "knowledge_documents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("dataset_id", String(36), ForeignKey("knowledge_datasets.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("data_source_type", String(32), nullable=False, server_default="upload_file"),
    Column("created_from", String(16), nullable=False),  # api | catalog
    Column("batch", String(64), nullable=False),
    Column("path", Text, nullable=False),  # the source file: in the catalog's folders or under data_dir
    Column("content_hash", String(64), nullable=False),
    Column("chunking", JSON),  # the document's own process rule; none: the dataset's
    Column("indexing_status", String(16), nullable=False),  # waiting parsing splitting indexing completed error
    Column("error", Text),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("word_count", Integer, nullable=False, server_default="0"),
    Column("tokens", Integer, nullable=False, server_default="0"),
    Column("total_segments", Integer, nullable=False, server_default="0"),
    Column("completed_segments", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("processing_started_at", Float),
    Column("parsing_completed_at", Float),
    Column("cleaning_completed_at", Float),
    Column("splitting_completed_at", Float),
    Column("completed_at", Float),
    Index("ix_knowledge_documents_dataset", "dataset_id", "position"),
    Index("ix_knowledge_documents_batch", "dataset_id", "batch"),
)

#: SQLite: the FTS5 table `knowledge_segments_fts` (rowid = `seq`) is kept by triggers; PostgreSQL: a generated
#: `tsv` tsvector column with a GIN index. Both are made by migration 0007 and are not mirrored here.
knowledge_segments = Table(
    "knowledge_segments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),  # the full-text index's row id (random, 62 bits)
    Column("dataset_id", String(36), ForeignKey("knowledge_datasets.id", ondelete="CASCADE"), nullable=False),
    Column("document_id", String(36), ForeignKey("knowledge_documents.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("answer", Text),
    Column("keywords", JSON),
    Column("word_count", Integer, nullable=False),
    Column("tokens", Integer, nullable=False, server_default="0"),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("hit_count", Integer, nullable=False, server_default="0"),
    Column("index_node_hash", String(64)),
    Column("embedding", LargeBinary),  # float32 little-endian, unit length; none without an embedding model
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_knowledge_segments_document", "document_id", "position"),
    Index("ix_knowledge_segments_dataset", "dataset_id"),
)
