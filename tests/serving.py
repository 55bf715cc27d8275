"""Run a real promptd (uvicorn, real sockets) in a background thread, for tests that speak HTTP to it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from promptd.app import create_app
from promptd.catalog.load import parse_catalog
from promptd.catalog.schema import Catalog
from promptd.providers.base import Provider
from promptd.serving import CoalescingProtocol, ServerConfig, serving_limits
from promptd.settings import Settings
from promptd.store.db import create_engine, migrate
from promptd.store.repository import Repository

__all__ = ["RunningServer", "free_port", "serve_app", "serve_in_thread"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(
    app: Any,
    *,
    port: int | None = None,
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    tls: tuple[Path, Path] | None = None,
) -> Iterator[str]:
    """Serve an ASGI app on `host` in a thread, with the connection limits and keep-alive of `settings` as
    `promptd serve` applies them, over TLS with `tls` (certificate file, key file); yields its base URL; stops
    it gracefully afterwards."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port or 0))
    settings = settings or Settings()
    config = ServerConfig(
        app,
        limits=serving_limits(settings),
        log_level="warning",
        timeout_graceful_shutdown=5,
        lifespan="on",
        http=CoalescingProtocol,
        timeout_keep_alive=settings.keepalive_timeout,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@dataclass
class RunningServer:
    url: str
    key: str
    settings: Settings
    catalog: Catalog

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def settle(self) -> None:
        """Wait until the server's recorder has written everything answered so far (GET /v1/end-users drains
        the recorder before it reads)."""
        import httpx

        httpx.get(f"{self.v1}/end-users/settle", headers=self.headers(), timeout=30)

    def repo_call(self, fn: Any) -> Any:
        """Run `await fn(repo)` against this server's database (from the test's thread)."""

        async def go() -> Any:
            db = create_engine(self.settings.db_url)
            try:
                return await fn(Repository(db))
            finally:
                await db.dispose()

        return asyncio.run(go())

    def new_key(self, project: str) -> str:
        async def make(repo: Repository) -> str:
            key, _ = await repo.create_key(project)
            return key

        return str(self.repo_call(make))


@contextmanager
def serve_app(
    catalog: Mapping[str, Any],
    data_dir: Path,
    *,
    providers: Mapping[str, Provider] | None = None,
    database_url: str | None = None,
    project: str = "demo",
    **settings: Any,
) -> Iterator[RunningServer]:
    """A promptd built from a catalog dict, with a fresh key for `project`."""
    parsed = parse_catalog(dict(catalog), {}, source="<test catalog>")
    cfg = Settings(data_dir=data_dir, database_url=database_url, **settings)

    async def prepare() -> str:
        data_dir.mkdir(parents=True, exist_ok=True)
        db = create_engine(cfg.db_url)
        try:
            await migrate(db)
            key, _ = await Repository(db).create_key(project)
            return key
        finally:
            await db.dispose()

    key = asyncio.run(prepare())
    with serve_in_thread(create_app(cfg, parsed, providers), settings=cfg) as url:
        yield RunningServer(url, key, cfg, parsed)
