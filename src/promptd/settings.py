"""Process settings: where data lives, how to reach the database, where to listen. Built once, passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_UPLOAD_LIMITS_MB", "Settings"]

#: Dify's defaults (UPLOAD_*_FILE_SIZE_LIMIT), in MB, by kind of file
DEFAULT_UPLOAD_LIMITS_MB: Mapping[str, float] = {"image": 10, "audio": 50, "video": 100, "document": 15}


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("promptd-data")
    database_url: str | None = None  # default: SQLite file in data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    ping_interval: float = 10.0  # seconds between Dify `event: ping` keep-alives
    recorder_batch: int = 256
    recorder_queue: int = 10_000
    recorder_linger: float = 0.1  # seconds the writer waits for a batch to fill
    key_cache_ttl: float = 5.0  # seconds a verified key is trusted before it is looked up again
    #: MB per kind of upload (image, audio, video, document); fractions allowed, a kind left out keeps its default
    upload_limits_mb: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_UPLOAD_LIMITS_MB))
    audio_limit_mb: float = 30  # MB accepted by /audio-to-text; fractions allowed
    remote_fetch_timeout: float = 10.0
    #: Redis for state shared by workers and replicas (limits, budgets, stop signals); none: this process only
    redis_url: str | None = None
    redis_prefix: str = "promptd:"  # prefix of every Redis key and channel (several deployments on one Redis)
    reserve_max_tokens: int = 1024  # max_tokens reserved (and sent) when a token/cost limit applies and none is set
    retention_days: float | None = None  # delete request records older than this (daily rollups stay); none: keep
    retention_interval: float = 3600.0  # seconds between retention runs
    workers: int = 1  # worker processes serving this port (`serve --workers`)
    #: where the workers share their metrics (`serve` makes one per start); none: a directory for this app alone
    metrics_dir: Path | None = None
    #: /metrics answers loopback clients; with a token, also others that send it as `Authorization: Bearer`
    metrics_token: str | None = None
    #: an OTLP/HTTP collector's base URL (traces to `<url>/v1/traces`); none: no traces, opentelemetry not loaded
    otlp_endpoint: str | None = None

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'promptd.db').resolve()}"

    def upload_limit_mb(self, kind: str) -> float:
        """The size limit, in MB, of an upload of this kind (image, audio, video or document)."""
        return self.upload_limits_mb.get(kind, DEFAULT_UPLOAD_LIMITS_MB[kind])

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"
