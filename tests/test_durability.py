"""Durability: a database outage survived (cached keys serve, unknown keys get a 503, records wait and are
written when it is back, one log line per outage), a SIGKILLed server loses no answered record, and the
dead letters are replayed. The outage runs on the real PostgreSQL, reached through a TCP relay the test
pauses (the machine's PostgreSQL itself is never stopped)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from promptd.cli import main
from promptd.store.db import create_engine, migrate
from promptd.store.tables import messages
from tests.conftest import FAKE_CATALOG, _fresh_pg_database
from tests.faces.chat.helpers import CHAT_CATALOG
from tests.serving import free_port, serve_app


class Relay:
    """A real TCP relay (its own event loop in a thread) from a local port to PostgreSQL. `cut()` closes the
    listener and aborts every relayed connection: the database is unreachable (connections refused) until
    `restore()` listens on the same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.restore()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def restore(self) -> None:
        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

        self.server = self._call(start())

    def cut(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()

        self._call(stop())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def relayed_pg(pg_server_url: str | None) -> Iterator[tuple[str, Relay]]:
    """A fresh PostgreSQL database, and its URL through a relay the test can cut."""
    if pg_server_url is None:
        pytest.skip("PostgreSQL not configured (set PROMPTD_TEST_POSTGRES_URL; CI does)")
    url, drop = _fresh_pg_database(pg_server_url)
    hostport = url.split("@", 1)[1].split("/", 1)[0]
    host, _, port = hostport.partition(":")
    relay = Relay((host, int(port or 5432)))
    try:
        yield url.replace(f"@{hostport}/", f"@127.0.0.1:{relay.port}/"), relay
    finally:
        relay.close()
        drop()


def _stored_ids(url: str) -> set[str]:
    async def go() -> set[str]:
        db = create_engine(url)
        try:
            async with db.connect() as conn:
                return {r.id for r in await conn.execute(select(messages.c.id))}
        finally:
            await db.dispose()

    return asyncio.run(go())


SPILLED = "promptd_recorder_spilled_rows_total"


def test_a_database_outage_keeps_cached_keys_serving_and_loses_no_record(
    relayed_pg: tuple[str, Relay], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, relay = relayed_pg
    direct = url.replace(f"127.0.0.1:{relay.port}", relay.target[0] + ":" + str(relay.target[1]))
    caplog.set_level(logging.INFO)
    # a tiny queue: during the outage the records go on to the spill file on disk
    with serve_app(
        CHAT_CATALOG, tmp_path / "data", database_url=url, key_cache_ttl=0.2, recorder_queue=5, recorder_linger=0
    ) as server:
        dify = {"inputs": {"query": "hello"}, "user": "u1", "response_mode": "blocking"}
        chat = {
            "model": "demo/echo",
            "messages": [{"role": "user", "content": "hi"}],
            "system_prompt_args": {"name": "Ann"},
        }
        headers = server.headers()
        answered: list[str] = []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            r = client.post("/v1/completion-messages", json=dify, headers=headers)
            assert r.status_code == 200, r.text
            answered.append(r.json()["message_id"])
            relay.cut()
            end = time.monotonic() + 10  # the outage: 10 s, many key re-checks (ttl 0.2 s) long
            while time.monotonic() < end:
                r = client.post("/v1/completion-messages", json=dify, headers=headers)
                assert r.status_code == 200, r.text
                answered.append(r.json()["message_id"])
                r = client.post("/api/v1/chat/completions", json=chat, headers=headers)
                assert r.status_code == 200, r.text
                answered.append(r.json()["choices"][0]["message"]["id"])
                time.sleep(0.05)
            unknown = {"Authorization": "Bearer app-never-seen-before"}
            r = client.post("/v1/completion-messages", json=dify, headers=unknown)
            assert r.status_code == 503 and set(r.json()) == {"code", "message", "status"}, r.text
            assert r.json()["status"] == 503
            r = client.post("/api/v1/chat/completions", json=chat, headers=unknown)
            assert r.status_code == 503 and set(r.json()) == {"error"}, r.text
            r = client.post("/v1/chat/completions", json=chat, headers=unknown)
            assert r.status_code == 503 and r.json()["error"]["type"] == "server_error", r.text
            r = client.get("/admin/v1/keys", headers=unknown)
            assert r.status_code == 503 and r.json()["error"]["status"] == 503, r.text
            assert len(answered) > 50
            assert _stored_ids(direct).isdisjoint(answered[1:])  # nothing could be written meanwhile
            spilled = [line for line in client.get("/metrics").text.splitlines() if line.startswith(SPILLED)]
            assert spilled and float(spilled[0].split()[-1]) > 0  # past the queue's 5 rows, they went to disk
            relay.restore()
            server.settle()  # drains the recorder: the rows that waited in memory and on disk are written
        assert set(answered) <= _stored_ids(direct)
    assert not (tmp_path / "data" / "dead-letter.jsonl").exists()
    logged = [r for r in caplog.records if r.name.startswith("promptd")]
    assert sum("database is unreachable" in r.getMessage() for r in logged if r.name == "promptd.recorder") == 1
    assert sum("database does not answer" in r.getMessage() for r in logged if r.name == "promptd.keys") == 1
    assert not [r for r in caplog.records if r.exc_info], "no traceback during an outage"
    assert sum("database is back" in r.getMessage() for r in logged) == 1


# --- SIGKILL -------------------------------------------------------------------------------------------------


def _rows(db: Path) -> set[str]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute(f"SELECT id FROM {messages.name}")}
    finally:
        con.close()


def _drain(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ValueError, OSError):  # the test closes the pipe when it is done
        for _ in proc.stdout or ():
            pass


def _start(config: Path, data: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptd", "serve", "-c", str(config), "--data-dir", str(data), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output = ""
    while "Application startup complete" not in output:
        line = proc.stdout.readline()
        assert line, output
        output += line
    # the server goes on logging (an access line per request): keep reading, or a full pipe would block it
    threading.Thread(target=_drain, args=(proc,), daemon=True).start()
    return proc, output


def test_sigkill_under_load_loses_no_answered_record(tmp_path: Path) -> None:
    config = tmp_path / "catalog.yaml"
    config.write_text(yaml.safe_dump(FAKE_CATALOG))
    data, port = tmp_path / "data", free_port()
    proc, output = _start(config, data, port)
    key = next(w for w in output.split() if w.startswith("app-"))
    answered: list[str] = []
    stop = threading.Event()

    def load(i: int) -> None:
        body = {"inputs": {"query": f"question {i}"}, "user": f"u{i}", "response_mode": "blocking"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post("/v1/completion-messages", json=body, headers={"Authorization": f"Bearer {key}"})
                except httpx.HTTPError:
                    return  # the server is gone
                assert r.status_code == 200, r.text
                answered.append(r.json()["message_id"])  # the client has the answer

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(load, i) for i in range(8)]
        while len(answered) < 400:
            time.sleep(0.01)
            assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)  # under load: no shutdown, no flush
        assert proc.wait(30) == -signal.SIGKILL
        stop.set()
        for f in futures:
            f.result(60)
    assert proc.stdout is not None
    proc.stdout.close()
    journals = list((data / "recorder-journal").glob("journal-*.jsonl"))
    assert journals and any(j.stat().st_size for j in journals)  # the killed process left records there

    second, _ = _start(config, data, free_port())
    try:
        settle = httpx.get(
            f"http://127.0.0.1:{second.args[-1]}/v1/end-users/settle", headers={"Authorization": f"Bearer {key}"}
        )
        assert settle.status_code == 404  # no such end user; it drained the recorder first
        stored = _rows(data / "promptd.db")
        missing = set(answered) - stored
        assert not missing, f"{len(missing)} of {len(answered)} answered records lost"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
        assert second.stdout is not None
        second.stdout.close()
    assert not (data / "dead-letter.jsonl").exists()  # replayed without duplicates: none refused


# --- dead letters --------------------------------------------------------------------------------------------


def test_promptd_replay_writes_the_dead_letters_the_database_now_takes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db_url = f"sqlite+aiosqlite:///{data / 'promptd.db'}"
    asyncio.run(_migrate(db_url))
    good = {"id": str(uuid.uuid4()), "project": "demo", "face": "dify", "model": "m", "provider": "p",
            "upstream_model": "u", "answer": "hi", "status": "normal", "created_at": time.time()}  # fmt: skip
    bad = {**good, "id": str(uuid.uuid4()), "project": None}  # NOT NULL: refused again
    lines = [
        json.dumps({"table": "messages", "values": good, "error": "gave up after 5 attempts: OSError", "at": 1}),
        json.dumps({"table": "messages", "values": bad, "error": "IntegrityError", "at": 1}),
        json.dumps({"table": None, "raw": '{"table": "messa', "error": "unreadable spilled row", "at": 1}),
    ]
    (data / "dead-letter.jsonl").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["replay", "--data-dir", str(data)])
    assert result.exit_code == 1 and "1 row(s) written, 2 kept" in result.output, result.output
    assert _rows(data / "promptd.db") == {good["id"]}
    kept = [json.loads(line) for line in (data / "dead-letter.jsonl").read_text().splitlines()]
    assert [k.get("values", {}).get("id") for k in kept] == [bad["id"], None]
    # a second replay: the written row is not written twice, the others stay
    result = CliRunner().invoke(main, ["replay", "--data-dir", str(data)])
    assert "0 row(s) written, 2 kept" in result.output, result.output


async def _migrate(url: str) -> None:
    db = create_engine(url)
    try:
        await migrate(db)
    finally:
        await db.dispose()


def test_dead_letters_are_replayed_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{data / 'promptd.db'}"))
    row = {"id": str(uuid.uuid4()), "project": "demo", "face": "chat", "model": "m", "provider": "p",
           "upstream_model": "u", "answer": "hi", "status": "normal", "created_at": time.time()}  # fmt: skip
    (data / "dead-letter.jsonl").write_text(json.dumps({"table": "messages", "values": row, "error": "x"}) + "\n")
    with serve_app(FAKE_CATALOG, data) as server:
        deadline = time.monotonic() + 30
        while row["id"] not in _rows(data / "promptd.db"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.settle()
    assert not (data / "dead-letter.jsonl").exists()
