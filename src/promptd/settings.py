"""Process settings: where data lives, how to reach the database, where to listen. Built once, passed down."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_UPLOAD_LIMITS_MB", "Settings", "normalise_database_url"]

#: Dify's defaults (UPLOAD_*_FILE_SIZE_LIMIT), in MB, by kind of file
DEFAULT_UPLOAD_LIMITS_MB: Mapping[str, float] = {"image": 10, "audio": 50, "video": 100, "document": 15}


#: URL schemes that name PostgreSQL or SQLite without the async driver promptd uses, and what they mean
_ASYNC_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def normalise_database_url(url: str) -> str:
    """`postgres://…` and `postgresql://…` (as hosting services hand them out) mean PostgreSQL through asyncpg."""
    scheme, sep, rest = url.partition("://")
    return _ASYNC_DRIVERS.get(scheme, scheme) + sep + rest if sep else url


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("promptd-data")
    database_url: str | None = None  # default: SQLite file in data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    ping_interval: float = 10.0  # seconds between Dify `event: ping` keep-alives
    #: seconds a chat stream holds its response head waiting for the first token: an error before then gets
    #: its real HTTP status; past it the head leaves with the next keep-alive comment and the stream is committed
    stream_commit_wait: float = 10.0
    recorder_batch: int = 256
    recorder_queue: int = 10_000
    recorder_linger: float = 0.1  # seconds the writer waits for a batch to fill
    recorder_journal: bool = True  # append each record to data_dir/recorder-journal first (SIGKILL loses none)
    key_cache_ttl: float = 5.0  # seconds a verified key is trusted before it is looked up again
    #: MB per kind of upload (image, audio, video, document); fractions allowed, a kind left out keeps its default
    upload_limits_mb: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_UPLOAD_LIMITS_MB))
    audio_limit_mb: float = 30  # MB accepted by /audio-to-text; fractions allowed
    remote_fetch_timeout: float = 10.0
    #: networks (CIDR) that remote files may be fetched from although they are not public (the SSRF guard
    #: refuses loopback, private and link-local addresses otherwise), e.g. ("10.1.0.0/16",) for an intranet
    fetch_allow_networks: tuple[str, ...] = ()
    #: fetch remote images (chat `image_url` parts, Dify `remote_url` image files) under the SSRF guard and send
    #: them to the model inline (data URLs); off: the http(s) URL is passed on and the model's provider fetches it
    inline_remote_images: bool = False
    #: Redis for state shared by workers and replicas (limits, budgets, stop signals); none: this process only
    redis_url: str | None = None
    redis_prefix: str = "promptd:"  # prefix of every Redis key and channel (several deployments on one Redis)
    reserve_max_tokens: int = 1024  # max_tokens reserved (and sent) when a token/cost limit applies and none is set
    limit_slice_idle: float = 0.5  # seconds a process keeps an unused slice of a limit before giving it back
    retention_days: float | None = None  # delete request records older than this (daily rollups stay); none: keep
    retention_interval: float = 3600.0  # seconds between retention runs
    workers: int = 1  # worker processes serving this port (`serve --workers`)
    header_timeout: float = 10.0  # seconds to send a request's head (and that a new connection may stay silent)
    body_timeout: float = 60.0  # seconds to send a request's body, once its head is in
    keepalive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 1000  # open connections per process; past it a new one gets a 503 (0: no limit)
    max_header_kb: float = 32  # a request's head (request line and headers); larger: 431
    max_body_mb: float = 10  # a request's body (JSON and everything but multipart uploads); larger: 413
    max_upload_mb: float | None = None  # a multipart upload's body; none: the largest upload limit + 1 MB
    #: browser origins allowed to call every API (CORS); a project's catalog `cors_origins` add to these
    cors_origins: tuple[str, ...] = ()
    #: the catalog file the server was started with (reloads read it again); none: the built-in catalog
    catalog_path: Path | None = None
    #: where the workers share their metrics (`serve` makes one per start); none: a directory for this app alone
    metrics_dir: Path | None = None
    #: /metrics answers loopback clients; with a token, also others that send it as `Authorization: Bearer`
    metrics_token: str | None = None
    #: an OTLP/HTTP collector's base URL (traces to `<url>/v1/traces`); none: no traces, opentelemetry not loaded
    otlp_endpoint: str | None = None

    @property
    def db_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'promptd.db').resolve()}"

    def upload_limit_mb(self, kind: str) -> float:
        """The size limit, in MB, of an upload of this kind (image, audio, video or document)."""
        return self.upload_limits_mb.get(kind, DEFAULT_UPLOAD_LIMITS_MB[kind])

    @property
    def fetch_allow(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.fetch_allow_networks)

    @property
    def upload_body_limit_mb(self) -> float:
        """The body size of a multipart upload: `max_upload_mb`, or room for the largest file one may carry."""
        if self.max_upload_mb is not None:
            return self.max_upload_mb
        return max([*self.upload_limits_mb.values(), *DEFAULT_UPLOAD_LIMITS_MB.values(), self.audio_limit_mb]) + 1

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"
