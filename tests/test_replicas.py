"""Several processes on one PostgreSQL and one Redis, as in production: `serve --workers N`, replicas on
their own ports, SIGTERM under load, and a replica killed with SIGKILL while another keeps serving.

Every server here is a real `promptd serve` subprocess. The fake provider stands for a model that takes a
moment per answer (so requests overlap); PostgreSQL and Redis are the machine's own (CI sets their URLs)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from promptd.store.tables import messages
from tests.conftest import FAKE_CATALOG, _fresh_pg_database
from tests.serving import free_port

BODY = {"inputs": {"query": "x"}, "user": "alice"}


@pytest.fixture
def services(pg_server_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database and the Redis URL."""
    if pg_server_url is None or redis_url is None:
        pytest.skip("PostgreSQL and Redis not configured (PROMPTD_TEST_POSTGRES_URL, PROMPTD_TEST_REDIS_URL)")
    url, drop = _fresh_pg_database(pg_server_url)
    try:
        yield url, redis_url
    finally:
        drop()


class Server:
    def __init__(self, proc: subprocess.Popen[str], port: int, output: str) -> None:
        self.proc, self.port, self.output = proc, port, output
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []  # the server's log after start-up, as it is read


@contextmanager
def serve(tmp_path: Path, catalog: dict[str, Any], env: dict[str, str], *args: str) -> Iterator[Server]:
    config = tmp_path / f"catalog-{uuid.uuid4().hex[:6]}.yaml"
    config.write_text(yaml.safe_dump(catalog))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptd", "serve", "-c", str(config), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    output = ""
    while "Uvicorn running on" not in output:  # logged once the socket is bound
        line = proc.stdout.readline()
        assert line, output
        output += line
    server = Server(proc, port, output)

    def drain() -> None:  # keep reading the server's log, so that a full pipe never blocks it
        assert proc.stdout is not None
        for line in proc.stdout:
            server.lines.append(line)
        proc.stdout.close()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60  # with --workers the supervisor binds first; the workers start after it
    while True:
        try:
            httpx.get(server.url + "/health", timeout=5).raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and proc.poll() is None, "the server did not come up"
            time.sleep(0.1)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        reader.join(30)


def pg_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "PROMPTD_DATABASE_URL": database_url,
        "PROMPTD_REDIS_URL": redis_url,
        "PROMPTD_REDIS_PREFIX": f"promptd-test:{uuid.uuid4().hex}:",
        "PROMPTD_DATA_DIR": str(tmp_path / "data"),
    }


def make_key(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "promptd", "keys", "create", "--project", "demo", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def stored_ids(database_url: str) -> set[str]:
    """The ids of every stored message (read with asyncpg: the driver promptd itself uses)."""
    import asyncpg

    async def read() -> set[str]:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return {r["id"] for r in await conn.fetch(f"SELECT id FROM {messages.name}")}
        finally:
            await conn.close()

    return asyncio.run(read())


def slow_catalog(first_token_ms: int = 200, **limits: Any) -> dict[str, Any]:
    catalog = json.loads(json.dumps(FAKE_CATALOG))
    catalog["providers"]["fake"] = {"kind": "fake", "first_token_ms": first_token_ms}
    if limits:
        catalog["projects"]["demo"]["limits"] = limits
    return catalog


def complete(url: str, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        url + "/v1/completion-messages", json={**BODY, **body}, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def test_two_workers_share_one_port_and_their_limits_through_redis(tmp_path: Path, services: tuple[str, str]) -> None:
    env = pg_env(*services, tmp_path)
    with serve(tmp_path, slow_catalog(rpm=10), env, "--workers", "2") as server:
        assert "per worker" not in server.output  # Redis is configured: no warning
        key = make_key(env)
        pids: set[int] = set()
        statuses: list[int] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            r = complete(server.url, key, user=f"u{i}")
            health = httpx.get(server.url + "/health").json()
            with lock:
                statuses.append(r.status_code)
                pids.add(health["pid"])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # the project allows 10 per minute, whichever worker answers: the counter is in Redis
        assert statuses.count(200) == 10 and statuses.count(429) == 14
        assert server.proc.pid not in pids and len(pids) >= 1  # workers answer, not the supervisor


def test_several_workers_without_redis_say_that_limits_are_per_worker(tmp_path: Path) -> None:
    env = {"PROMPTD_DATA_DIR": str(tmp_path / "data")}
    with serve(tmp_path, slow_catalog(0), env, "--workers", "2") as server:
        assert "2 workers without Redis: rate limits, budgets and stop requests are per worker" in server.output
        assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_sigterm_under_load_loses_no_answered_request(tmp_path: Path, services: tuple[str, str]) -> None:
    env = pg_env(*services, tmp_path)
    with serve(tmp_path, slow_catalog(100), env, "--workers", "2") as server:
        key = make_key(env)
        answered: list[str] = []
        stop_sending = threading.Event()
        lock = threading.Lock()

        def load() -> None:
            while not stop_sending.is_set():
                try:
                    r = complete(server.url, key)
                except httpx.HTTPError:
                    return  # the server stopped accepting
                if r.status_code == 200:
                    with lock:
                        answered.append(r.json()["message_id"])

        threads = [threading.Thread(target=load) for _ in range(16)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)  # mid-load: requests are in flight in both workers
        assert server.proc.wait(90) in (0, -signal.SIGTERM)
        stop_sending.set()
        for t in threads:
            t.join(60)
        assert len(answered) >= 40
        missing = set(answered) - stored_ids(services[0])
        assert not missing, f"{len(missing)} answered request(s) not in the store"


def test_a_replica_killed_with_sigkill_leaves_the_other_serving(tmp_path: Path, services: tuple[str, str]) -> None:
    env = pg_env(*services, tmp_path)
    catalog = slow_catalog(50)
    with serve(tmp_path, catalog, env) as a, serve(tmp_path, catalog, env) as b:
        key = make_key(env)
        replicas = [a, b]
        served: dict[str, int] = {a.url: 0, b.url: 0}
        failed_over = 0

        def balanced(i: int) -> httpx.Response:
            """What a load balancer does: round robin, and the next replica when one refuses connections."""
            nonlocal failed_over
            for j in range(len(replicas)):
                replica = replicas[(i + j) % len(replicas)]
                try:
                    r = complete(replica.url, key)
                except httpx.TransportError:
                    failed_over += 1
                    continue
                served[replica.url] += 1
                return r
            raise AssertionError("no replica answered")

        for i in range(10):
            assert balanced(i).status_code == 200
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(30)
        after = [balanced(i) for i in range(10, 40)]
        assert all(r.status_code == 200 for r in after)
        assert failed_over >= 1 and served[b.url] >= 30
        answered_by_b = {r.json()["message_id"] for r in after}
        b.proc.send_signal(signal.SIGTERM)  # flush b's recorder, then check
        b.proc.wait(60)
        assert answered_by_b <= stored_ids(services[0])
