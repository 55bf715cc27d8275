"""Liveness and readiness through a real server: /livez, /readyz (database, Redis when configured, the embedded
model when the catalog uses it) and /health. PostgreSQL and Redis are the machine's own, reached through a TCP
proxy (tests/tcp_proxy.py) that the test cuts to make them unreachable for this server only."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import FAKE_CATALOG, _fresh_pg_database
from tests.serving import RunningServer, serve_app
from tests.tcp_proxy import tcp_proxy


def test_livez_readyz_and_health_answer_on_a_healthy_server(fake_server: RunningServer) -> None:
    live = httpx.get(fake_server.url + "/livez")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = httpx.get(fake_server.url + "/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert body["checks"] == {"database": {"ok": True}}  # no Redis configured, no embedded model in the catalog
    assert len(body["catalog"]) == 12  # the catalog version
    assert httpx.get(fake_server.url + "/health").json()["status"] == "ok"


def test_readyz_fails_with_503_when_redis_becomes_unreachable(tmp_path: Path, redis_url: str | None) -> None:
    if redis_url is None:
        pytest.skip("Redis not configured (PROMPTD_TEST_REDIS_URL)")
    where = urlsplit(redis_url)
    with tcp_proxy(where.hostname or "127.0.0.1", where.port or 6379) as proxy:
        proxied = f"redis://127.0.0.1:{proxy.port}{where.path}"
        prefix = f"promptd-test:{uuid.uuid4().hex}:"
        with serve_app(FAKE_CATALOG, tmp_path / "data", redis_url=proxied, redis_prefix=prefix) as server:
            ready = httpx.get(server.url + "/readyz", timeout=30)
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["redis"] == {"ok": True}
            proxy.cut()
            down = httpx.get(server.url + "/readyz", timeout=30)
            assert down.status_code == 503, down.text
            body = down.json()
            assert body["status"] == "fail" and body["failed"] == ["redis"]
            assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
            assert body["checks"]["database"] == {"ok": True}
            assert httpx.get(server.url + "/livez").status_code == 200  # alive: a restart would not bring Redis


@pytest.fixture
def fresh_pg(pg_server_url: str | None) -> Iterator[str]:
    if pg_server_url is None:
        pytest.skip("PostgreSQL not configured (set PROMPTD_TEST_POSTGRES_URL; CI does)")
    url, drop = _fresh_pg_database(pg_server_url)
    try:
        yield url
    finally:
        drop()


def test_readyz_fails_with_503_when_postgresql_becomes_unreachable(tmp_path: Path, fresh_pg: str) -> None:
    where = urlsplit(fresh_pg)
    with tcp_proxy(where.hostname or "127.0.0.1", where.port or 5432) as proxy:
        proxied = fresh_pg.replace(where.netloc, f"{where.username}@127.0.0.1:{proxy.port}")
        with serve_app(FAKE_CATALOG, tmp_path / "data", database_url=proxied) as server:
            assert httpx.get(server.url + "/readyz", timeout=30).status_code == 200
            proxy.cut()
            down = httpx.get(server.url + "/readyz", timeout=30)
            assert down.status_code == 503, down.text
            assert down.json()["failed"] == ["database"]
            assert down.json()["checks"]["database"]["error"]


def test_readyz_names_an_embedded_model_that_cannot_be_loaded(tmp_path: Path) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["providers"]["local"] = {"kind": "local", "model_path": str(tmp_path / "missing.gguf")}
    catalog["models"]["smol"] = {"provider": "local", "model": "smol"}
    catalog["projects"]["demo"]["models"] = ["echo", "smol"]
    with serve_app(catalog, tmp_path / "data") as server:
        down = httpx.get(server.url + "/readyz", timeout=30)
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["failed"] == ["model:local"]
        assert "missing.gguf" in body["checks"]["model:local"]["error"]
