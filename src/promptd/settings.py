"""Process settings: where data lives, how to reach the database, where to listen. Built once, passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings"]


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
    upload_limits_mb: dict[str, int] = field(
        default_factory=lambda: {"image": 10, "audio": 50, "video": 100, "document": 15}
    )
    audio_limit_mb: int = 30
    remote_fetch_timeout: float = 10.0

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'promptd.db').resolve()}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"
