"""Migrations, the recorder and the repository, each on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from promptd.domain.ids import end_user_id
from promptd.store.db import create_engine, migrate
from promptd.store.recorder import Recorder, Row
from promptd.store.repository import Repository, end_user_row
from promptd.store.tables import end_users, messages, metadata


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


def message_row(**overrides: Any) -> Row:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "project": "demo",
        "face": "dify",
        "model": "m",
        "provider": "p",
        "upstream_model": "u",
        "answer": "hi",
        "status": "normal",
        "created_at": time.time(),
    }
    values.update(overrides)
    return Row(messages, values)


async def count(db: AsyncEngine, table: Any = messages) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_migrations_create_the_declared_schema_and_run_twice(db: AsyncEngine) -> None:
    await migrate(db)  # idempotent

    def columns(sync_conn: Any) -> dict[str, set[str]]:
        insp = inspect(sync_conn)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names() if t != "alembic_version"}

    async with db.connect() as conn:
        actual = await conn.run_sync(columns)
    assert actual == {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}


async def test_the_recorder_writes_everything_and_drain_waits_for_it(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = Recorder(db, dead_letter=tmp_path / "dead.jsonl", batch=50)
    recorder.start()
    recorder.submit(*(message_row() for _ in range(120)))
    await recorder.drain()
    assert await count(db) == 120 and recorder.pending == 0
    await recorder.close()


async def test_close_flushes_what_is_still_queued(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = Recorder(db, dead_letter=tmp_path / "dead.jsonl", batch=64)
    recorder.start()
    recorder.submit(*(message_row() for _ in range(500)))
    await recorder.close()
    assert await count(db) == 500


async def test_a_refused_row_goes_to_the_dead_letter_file_and_its_batch_is_kept(
    db: AsyncEngine, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    recorder = Recorder(db, dead_letter=dead, batch=100)
    recorder.start()
    dup = message_row()
    recorder.submit(dup)
    await recorder.drain()
    good = [message_row() for _ in range(5)]
    recorder.submit(good[0], good[1], dup, *good[2:])  # the same primary key again
    await recorder.drain()
    await recorder.close()
    assert await count(db) == 6
    [entry] = [json.loads(line) for line in dead.read_text().splitlines()]
    assert entry["table"] == "messages" and entry["values"]["id"] == dup.values["id"] and entry["error"]
    assert recorder.failed_rows == 1


async def test_put_applies_back_pressure_when_the_queue_is_full(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = Recorder(db, dead_letter=tmp_path / "dead.jsonl", batch=10, maxsize=20)
    recorder.submit(*(message_row() for _ in range(20)))  # full, and the writer is not running yet
    waiting = asyncio.create_task(recorder.put(message_row()))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # held back while the queue is full
    recorder.start()
    await asyncio.wait_for(waiting, 30)
    await recorder.close()
    assert await count(db) == 21


async def test_end_users_are_inserted_once(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = Recorder(db, dead_letter=tmp_path / "dead.jsonl")
    recorder.start()
    uid = end_user_id("demo", "alice")
    for _ in range(3):
        recorder.submit(end_user_row(uid, "demo", "alice", time.time()))
        await recorder.drain()
    await recorder.close()
    assert await count(db, end_users) == 1 and not (tmp_path / "dead.jsonl").exists()


async def test_keys_are_created_found_listed_and_revoked(db: AsyncEngine) -> None:
    repo = Repository(db)
    key, info = await repo.create_key("demo", name="ci")
    other, _ = await repo.create_key("shop", expires_at=time.time() - 1)
    found = await repo.find_key(key)
    assert found is not None and found.project == "demo" and found.usable(time.time())
    assert info.prefix == key[:12]
    expired = await repo.find_key(other)
    assert expired is not None and not expired.usable(time.time())
    assert [k.project for k in await repo.list_keys()] == ["demo", "shop"]
    assert await repo.find_key(key + "x") is None
    revoked = await repo.revoke_key(key)  # by the key itself
    assert revoked is not None and revoked.id == info.id
    again = await repo.find_key(key)
    assert again is not None and not again.usable(time.time())
    assert await repo.revoke_key(str(uuid.uuid4())) is None


async def test_feedback_is_set_updated_and_revoked(db: AsyncEngine) -> None:
    repo = Repository(db)
    mid, uid = str(uuid.uuid4()), end_user_id("demo", "a")
    assert await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating="like", content="x")
    assert await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating="dislike", content=None)
    [fb] = await repo.list_feedbacks("demo", page=1, limit=10)
    assert fb["rating"] == "dislike" and fb["content"] is None
    assert await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating=None, content=None)
    assert not await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating=None, content=None)
    assert await repo.list_feedbacks("demo", page=1, limit=10) == []
