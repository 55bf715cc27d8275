"""Shared fixtures. Servers are real (uvicorn on loopback); databases are a real SQLite file, and PostgreSQL
when PROMPTD_TEST_POSTGRES_URL is set (CI sets it, and then an unreachable PostgreSQL fails the run)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving import RunningServer, serve_app

#: A catalog on the deterministic fake provider: it stands in for a real model where tests assert exact output.
FAKE_CATALOG: dict[str, Any] = {
    "providers": {"fake": {"kind": "fake"}},
    "models": {
        "echo": {
            "provider": "fake",
            "model": "echo",
            "price": {"input": "0.15", "output": "0.60", "unit": "1M", "currency": "USD"},
        }
    },
    "projects": {
        "demo": {
            "mode": "completion",
            "name": "Demo",
            "description": "A test app",
            "models": ["echo"],
            "prompt": "Answer briefly: {{query}}",
            "inputs": [{"type": "paragraph", "variable": "query", "label": "Query", "required": True}],
        }
    },
}


def postgres_url() -> str | None:
    url = os.environ.get("PROMPTD_TEST_POSTGRES_URL")
    if not url and os.environ.get("CI") == "true" and os.environ.get("PROMPTD_REQUIRE_SERVICES") == "1":
        pytest.fail("CI asks for PostgreSQL but PROMPTD_TEST_POSTGRES_URL is not set")
    return url


@pytest.fixture(scope="session")
def pg_server_url() -> str | None:
    """The PostgreSQL server URL (sqlalchemy form, asyncpg driver) or None when tests run without it."""
    return postgres_url()


def _fresh_pg_database(server_url: str) -> tuple[str, Any]:
    """CREATE a throw-away database on the server; returns its URL and a function that drops it."""
    import asyncpg

    plain = server_url.replace("postgresql+asyncpg://", "postgresql://")
    name = "promptd_t_" + uuid.uuid4().hex[:12]

    async def create() -> None:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except OSError as exc:
        pytest.fail(f"PostgreSQL at {server_url} is unreachable: {exc}")
    base = server_url.rsplit("/", 1)[0]
    return f"{base}/{name}", lambda: asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, pg_server_url: str | None) -> Iterator[str]:
    """Each store test runs on a real SQLite file and, when available, a real PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'promptd.db'}"
        return
    if pg_server_url is None:
        pytest.skip("PostgreSQL not configured (set PROMPTD_TEST_POSTGRES_URL; CI does)")
    url, drop = _fresh_pg_database(pg_server_url)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[RunningServer]:
    """promptd on the fake provider, SQLite in a temp dir, with a key for project `demo`."""
    with serve_app(FAKE_CATALOG, tmp_path / "data") as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    """The Redis URL, or None when tests run without Redis. With CI's PROMPTD_REQUIRE_SERVICES=1 a missing or
    unreachable Redis fails the run instead."""
    url = os.environ.get("PROMPTD_TEST_REDIS_URL")
    required = os.environ.get("PROMPTD_REQUIRE_SERVICES") == "1"
    if not url:
        if required:
            pytest.fail("CI asks for Redis but PROMPTD_TEST_REDIS_URL is not set")
        return None
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} is unreachable: {exc}")
    return url
