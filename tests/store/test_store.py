"""Migrations, the recorder and the repository, each on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from promptd.domain.ids import end_user_id, hash_key
from promptd.domain.limits import Limits
from promptd.store.db import alembic_config, create_engine, migrate
from promptd.store.recorder import Recorder, Row
from promptd.store.repository import ADMIN_PROJECT, Repository, end_user_row
from promptd.store.tables import (
    api_keys,
    counted_rows,
    end_users,
    feedbacks,
    messages,
    metadata,
    rejections,
    usage_daily,
)

#: Hang guard for awaits that must finish: far above anything a passing run takes, it only turns a hang into
#: a failure. No assertion is about time.
HANG = 60


@pytest.fixture
async def empty_db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(empty_db: AsyncEngine) -> AsyncEngine:
    await migrate(empty_db)
    return empty_db


def message_values(**overrides: Any) -> dict[str, Any]:
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
    return values


def message_row(**overrides: Any) -> Row:
    return Row(messages, message_values(**overrides))


async def count(db: AsyncEngine, table: Any = messages) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def message_ids(db: AsyncEngine) -> set[str]:
    async with db.connect() as conn:
        return {r.id for r in await conn.execute(select(messages.c.id))}


def recorder_for(db: AsyncEngine, tmp_path: Path, **options: Any) -> Recorder:
    return Recorder(db, dead_letter=tmp_path / "dead-letter.jsonl", **options)


# --- migrations ----------------------------------------------------------------------------------------------


#: the knowledge full-text index, made by migration 0007 for one dialect and not mirrored in tables.py: SQLite's
#: FTS5 table (and its shadow tables), PostgreSQL's generated tsvector column and its GIN index
FULL_TEXT_TABLE = "knowledge_segments_fts"
FULL_TEXT_COLUMN = ("knowledge_segments", "tsv")
FULL_TEXT_INDEX = "ix_knowledge_segments_tsv"


def _columns(sync_conn: Connection) -> dict[str, set[str]]:
    insp = inspect(sync_conn)
    return {
        t: {c["name"] for c in insp.get_columns(t) if (t, c["name"]) != FULL_TEXT_COLUMN}
        for t in insp.get_table_names()
        if t != "alembic_version" and not t.startswith(FULL_TEXT_TABLE)
    }


def _full_text(diff: Any) -> bool:
    kind, *rest = diff
    if kind == "remove_table":
        return str(rest[0].name).startswith(FULL_TEXT_TABLE)
    if kind == "remove_column":
        return (rest[1], rest[2].name) == FULL_TEXT_COLUMN
    if kind == "remove_index":
        return bool(rest[0].name == FULL_TEXT_INDEX)
    return False


def _schema_diff(sync_conn: Connection) -> list[Any]:
    # server defaults are left out: SQLite reflects '' defaults in a form alembic cannot compare
    diff = compare_metadata(MigrationContext.configure(sync_conn, opts={"compare_type": True}), metadata)
    return [d for d in diff if not (isinstance(d, tuple) and _full_text(d))]


def _revision(sync_conn: Connection) -> str | None:
    return MigrationContext.configure(sync_conn).get_current_revision()


async def test_migrations_build_the_schema_of_tables_py_from_an_empty_database(empty_db: AsyncEngine) -> None:
    async with empty_db.connect() as conn:
        assert await conn.run_sync(_columns) == {}
    await migrate(empty_db)
    async with empty_db.connect() as conn:
        actual = await conn.run_sync(_columns)
        diff = await conn.run_sync(_schema_diff)
        revision = await conn.run_sync(_revision)
    assert actual == {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
    assert diff == []  # types, nullability, indexes and unique constraints match too
    assert revision == "0010"


async def test_migrations_run_twice_without_harm(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(messages.insert().values(**message_values(id="kept")))
    await migrate(db)
    await migrate(db)
    async with db.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []
        assert await conn.run_sync(_revision) == "0010"
    assert await message_ids(db) == {"kept"}


async def test_migrations_go_down_to_nothing_and_up_again(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
    async with db.connect() as conn:
        assert await conn.run_sync(_columns) == {}
    await migrate(db)
    async with db.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def test_server_defaults_fill_the_columns_a_row_leaves_out(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO messages (id, project, face, model, provider, upstream_model, status, created_at) "
                "VALUES ('m1', 'demo', 'dify', 'm', 'p', 'u', 'normal', 1.0)"
            )
        )
        row = (await conn.execute(select(messages).where(messages.c.id == "m1"))).one()
    assert (row.answer, row.prompt_tokens, row.total_price, row.currency, row.choice_index) == ("", 0, "0", "USD", 0)


# --- the recorder --------------------------------------------------------------------------------------------


async def test_the_recorder_writes_in_batches(db: AsyncEngine, tmp_path: Path) -> None:
    written: list[tuple[str, int]] = []
    recorder = recorder_for(db, tmp_path, batch=50, on_written=lambda outcome, n: written.append((outcome, n)))
    recorder.start()
    rows = [message_row() for _ in range(120)]
    recorder.submit(*rows)
    await asyncio.wait_for(recorder.drain(), HANG)
    await recorder.close()
    assert await message_ids(db) == {r.values["id"] for r in rows}
    assert all(outcome == "written" and 0 < n <= 50 for outcome, n in written)
    assert sum(n for _, n in written) == 120 and len(written) >= 3


async def test_drain_waits_for_everything_submitted(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path, batch=7)
    recorder.start()
    for _ in range(3):
        recorder.submit(*(message_row() for _ in range(10)))
        assert recorder.pending > 0
        await asyncio.wait_for(recorder.drain(), HANG)
        assert recorder.pending == 0
    assert await count(db) == 30
    await recorder.close()


async def test_drain_with_nothing_submitted_returns(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    await asyncio.wait_for(recorder.drain(), HANG)
    await recorder.close()
    assert recorder.pending == 0 and await count(db) == 0


async def test_drain_does_not_wait_out_the_linger(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path, batch=10, linger=3600)
    recorder.start()
    recorder.submit(*(message_row() for _ in range(3)))
    for _ in range(10):
        await asyncio.sleep(0)  # the writer is now waiting for a full batch
    recorder.submit(*(message_row() for _ in range(9)))  # a full batch, and 2 rows over
    await asyncio.wait_for(recorder.drain(), HANG)
    assert await count(db) == 12
    await recorder.close()


async def test_close_flushes_what_is_still_queued(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path, batch=64)
    recorder.start()
    recorder.submit(*(message_row() for _ in range(500)))
    await asyncio.wait_for(recorder.close(), HANG)
    assert await count(db) == 500 and recorder.pending == 0


async def test_close_flushes_even_a_recorder_that_never_started(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path, batch=64)
    recorder.submit(*(message_row() for _ in range(100)))
    await asyncio.wait_for(recorder.close(), HANG)
    assert await count(db) == 100


async def test_a_closed_recorder_refuses_rows(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    await recorder.close()
    with pytest.raises(RuntimeError, match="closed"):
        recorder.submit(message_row())
    assert await count(db) == 0


async def test_rows_with_different_columns_keep_all_their_values(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    plain_row = message_row()
    rich_row = message_row(campaign="ab", answer="long answer", prompt_tokens=5)
    recorder.submit(plain_row, rich_row)
    await recorder.close()
    async with db.connect() as conn:
        got = {r.id: r for r in await conn.execute(select(messages))}
    assert (got[rich_row.values["id"]].campaign, got[rich_row.values["id"]].answer) == ("ab", "long answer")
    assert got[rich_row.values["id"]].prompt_tokens == 5
    assert (got[plain_row.values["id"]].campaign, got[plain_row.values["id"]].answer) == (None, "hi")


async def test_a_refused_row_goes_to_the_dead_letter_file_and_the_rest_of_its_batch_is_written(
    db: AsyncEngine, tmp_path: Path
) -> None:
    outcomes: list[tuple[str, int]] = []
    recorder = recorder_for(db, tmp_path, batch=100, on_written=lambda outcome, n: outcomes.append((outcome, n)))
    recorder.start()
    dup = message_row(answer="first")
    recorder.submit(dup)
    await asyncio.wait_for(recorder.drain(), HANG)
    good = [message_row() for _ in range(5)]
    again = Row(messages, {**dup.values, "answer": "second"})  # the same primary key
    recorder.submit(good[0], good[1], again, *good[2:])
    await asyncio.wait_for(recorder.drain(), HANG)
    await recorder.close()
    assert await message_ids(db) == {dup.values["id"], *(r.values["id"] for r in good)}
    [entry] = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert entry["table"] == "messages"
    assert entry["values"] == json.loads(json.dumps(again.values))
    assert "IntegrityError" in entry["error"]  # the database's own reason
    assert recorder.failed_rows == 1 and ("dead_letter", 1) in outcomes
    assert sum(n for outcome, n in outcomes if outcome == "written") == 6


async def test_a_row_the_database_cannot_take_is_dead_lettered_with_its_reason(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    bad = Row(messages, message_values(status=None))  # NOT NULL
    recorder.submit(message_row(), bad, message_row())
    await asyncio.wait_for(recorder.close(), HANG)
    assert await count(db) == 2
    [entry] = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert entry["values"]["id"] == bad.values["id"] and "IntegrityError" in entry["error"]


async def test_a_value_that_cannot_be_encoded_is_dead_lettered_at_once(db: AsyncEngine, tmp_path: Path) -> None:
    """Refused before the database sees it (a JSON column given an object JSON has no form for): permanent, so
    neither retried nor allowed to hold up the rows around it."""
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    bad = Row(messages, message_values(labels={"when": object()}))
    began = time.monotonic()
    recorder.submit(message_row(), bad, message_row())
    await asyncio.wait_for(recorder.close(), HANG)
    assert time.monotonic() - began < 1.5  # not five attempts with back-off (0.1 + 0.2 + 0.4 + 0.8 s)
    assert await count(db) == 2
    [entry] = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert entry["values"]["id"] == bad.values["id"] and "Encoding objects of type object" in entry["error"]


async def test_when_the_dead_letter_file_cannot_be_written_the_row_is_logged_and_writing_goes_on(
    db: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    recorder = Recorder(db, dead_letter=tmp_path / "not-a-dir" / "dead-letter.jsonl")
    recorder.start()
    first = message_row()
    recorder.submit(first)
    await asyncio.wait_for(recorder.drain(), HANG)
    with caplog.at_level(logging.ERROR, logger="promptd.recorder"):
        recorder.submit(Row(messages, dict(first.values)))
        await asyncio.wait_for(recorder.drain(), HANG)
    later = message_row()
    recorder.submit(later)
    await asyncio.wait_for(recorder.drain(), HANG)
    await recorder.close()
    assert await message_ids(db) == {first.values["id"], later.values["id"]}
    assert recorder.failed_rows == 1
    assert any(first.values["id"] in r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL)


async def test_put_applies_back_pressure_when_the_queue_is_full(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path, batch=10, maxsize=20)
    recorder.submit(*(message_row() for _ in range(20)))  # full, and the writer is not running yet
    waiting = asyncio.create_task(recorder.put(message_row()))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done() and recorder.pending == 20  # held back while the queue is full
    recorder.start()
    await asyncio.wait_for(waiting, HANG)
    await asyncio.wait_for(recorder.close(), HANG)
    assert await count(db) == 21


async def test_put_does_not_wait_below_maxsize(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path, maxsize=20)
    await asyncio.wait_for(recorder.put(*(message_row() for _ in range(5))), HANG)  # no writer is running
    assert recorder.pending == 5
    recorder.start()
    await asyncio.wait_for(recorder.close(), HANG)
    assert await count(db) == 5


async def test_rows_past_a_full_queue_spill_to_disk_and_are_replayed_in_full(db: AsyncEngine, tmp_path: Path) -> None:
    outcomes: list[tuple[str, int]] = []
    recorder = recorder_for(db, tmp_path, batch=8, maxsize=20, on_written=lambda o, n: outcomes.append((o, n)))
    rows = [message_row(answer=f"a{i}", inputs={"q": i}) for i in range(50)]
    for row in rows:
        recorder.submit(row)  # the writer is not running: the queue fills, then the disk takes the rest
    assert recorder.pending == 50 and recorder.spilled_pending == 30
    assert sum(n for o, n in outcomes if o == "spilled") == 30
    assert len((tmp_path / "recorder-spill" / f"spill-{os.getpid()}.jsonl").read_text().splitlines()) == 30
    recorder.start()
    await asyncio.wait_for(recorder.drain(), HANG)
    assert recorder.pending == 0 and recorder.spilled_pending == 0
    assert await message_ids(db) == {r.values["id"] for r in rows}
    async with db.connect() as conn:
        got = {r.id: (r.answer, r.inputs) for r in await conn.execute(select(messages))}
    assert all(got[r.values["id"]] == (r.values["answer"], r.values["inputs"]) for r in rows)  # values intact
    await recorder.close()
    assert list((tmp_path / "recorder-spill").iterdir()) == []  # replayed files are removed
    assert sum(n for o, n in outcomes if o == "written") == 50


DEAD_PID = 999_999_999  # above Linux's pid_max: no process has it

DYING_PROCESS = """
import json, os, sys
from pathlib import Path
from promptd.store.db import create_engine
from promptd.store.recorder import Recorder, Row
from promptd.store.tables import messages
dead_letter = Path(sys.argv[1]) / "dead-letter.jsonl"
recorder = Recorder(create_engine("sqlite+aiosqlite://"), dead_letter=dead_letter, maxsize=5)
rows = [Row(messages, values) for values in json.loads(sys.argv[2])]
recorder.submit(*rows[:5])
recorder.submit(*rows[5:])  # the queue is full: these go to disk
assert recorder.spilled_pending == 7
os._exit(0)  # dies: no close, no drain; the 5 rows in memory are lost with it, the 7 on disk are not
"""


async def test_spilled_rows_left_by_a_process_that_died_are_replayed_at_the_next_start(
    db: AsyncEngine, tmp_path: Path
) -> None:
    rows = [message_values() for _ in range(12)]
    dying = await asyncio.create_subprocess_exec(sys.executable, "-c", DYING_PROCESS, str(tmp_path), json.dumps(rows))
    assert await asyncio.wait_for(dying.wait(), HANG) == 0
    second = recorder_for(db, tmp_path)
    assert second.pending == 7 and second.spilled_pending == 7
    second.start()
    await asyncio.wait_for(second.close(), HANG)
    assert await message_ids(db) == {r["id"] for r in rows[5:]}


async def test_a_replay_interrupted_after_a_batch_goes_on_from_where_it_stopped(
    db: AsyncEngine, tmp_path: Path
) -> None:
    rows = [message_row() for _ in range(10)]
    lines = [json.dumps({"table": "messages", "values": r.values, "upsert_ignore": False}) + "\n" for r in rows]
    spill = tmp_path / "recorder-spill"
    spill.mkdir()
    replay = spill / f"replay-{DEAD_PID}-00000000000000000001.jsonl"  # a process that is gone
    replay.write_text("".join(lines))
    # an earlier replay wrote the first 4 rows and noted how far it got, then its process died
    async with db.begin() as conn:
        await conn.execute(messages.insert(), [dict(r.values) for r in rows[:4]])
    replay.with_suffix(".offset").write_text(str(sum(len(line.encode()) for line in lines[:4])))
    recorder = recorder_for(db, tmp_path, batch=4)
    assert recorder.spilled_pending == 6
    recorder.start()
    await asyncio.wait_for(recorder.close(), HANG)
    assert await count(db) == 10 and not (tmp_path / "dead-letter.jsonl").exists()
    assert list(spill.iterdir()) == []


async def test_a_torn_spilled_line_goes_to_the_dead_letter_file(db: AsyncEngine, tmp_path: Path) -> None:
    spill = tmp_path / "recorder-spill"
    spill.mkdir()
    good = message_row()
    entry = {"table": "messages", "values": good.values, "upsert_ignore": False}
    (spill / f"spill-{DEAD_PID}.jsonl").write_text(
        json.dumps(entry) + "\n" + '{"table": "messa\n'
    )  # the disk filled up
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    await asyncio.wait_for(recorder.close(), HANG)
    assert await message_ids(db) == {good.values["id"]}
    [dead] = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert dead["raw"] == '{"table": "messa' and "unreadable spilled row" in dead["error"]
    assert recorder.failed_rows == 1


async def test_when_the_disk_refuses_the_spill_rows_stay_in_memory(db: AsyncEngine, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    recorder = recorder_for(db, tmp_path, maxsize=2, spill_dir=tmp_path / "a-file" / "spill")
    recorder.submit(*(message_row() for _ in range(6)))
    recorder.submit(*(message_row() for _ in range(6)))
    assert recorder.pending == 12 and recorder.spilled_pending == 0
    recorder.start()
    await asyncio.wait_for(recorder.close(), HANG)
    assert await count(db) == 12


# --- end users -----------------------------------------------------------------------------------------------


async def test_an_end_user_seen_again_is_not_inserted_again(db: AsyncEngine, tmp_path: Path) -> None:
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    uid = end_user_id("demo", "alice")
    for _ in range(3):
        recorder.submit(end_user_row(uid, "demo", "alice", time.time()), message_row(end_user_id=uid))
        await asyncio.wait_for(recorder.drain(), HANG)
    recorder.submit(*(end_user_row(uid, "demo", "alice", time.time()) for _ in range(3)))  # in one batch
    await recorder.close()
    assert await count(db, end_users) == 1 and await count(db) == 3
    assert not (tmp_path / "dead-letter.jsonl").exists()


async def test_an_end_user_upsert_also_yields_to_the_project_and_user_unique_key(db: AsyncEngine) -> None:
    repo = Repository(db)
    await repo.ensure_end_user(end_user_id("demo", "alice"), "demo", "alice")
    await repo.ensure_end_user(str(uuid.uuid4()), "demo", "alice")  # another id, same (project, user)
    assert await count(db, end_users) == 1


async def test_end_users_are_kept_per_project(db: AsyncEngine) -> None:
    repo = Repository(db)
    for project in ("demo", "shop"):
        for _ in range(2):
            await repo.ensure_end_user(end_user_id(project, "alice"), project, "alice")
    await repo.ensure_end_user(end_user_id("demo", "DEFAULT-USER"), "demo", "DEFAULT-USER")
    alice = await repo.get_end_user(end_user_id("demo", "alice"), "demo")
    anonymous = await repo.get_end_user(end_user_id("demo", "DEFAULT-USER"), "demo")
    assert alice is not None and alice["external_user_id"] == "alice" and alice["type"] == "service_api"
    assert alice["is_anonymous"] is False
    assert anonymous is not None and anonymous["is_anonymous"] is True
    assert await repo.get_end_user(end_user_id("demo", "alice"), "shop") is None  # not another project's
    assert await count(db, end_users) == 3


# --- keys ----------------------------------------------------------------------------------------------------


async def test_a_created_key_is_stored_only_as_its_hash(db: AsyncEngine) -> None:
    repo = Repository(db)
    key, info = await repo.create_key("demo", name="ci")
    assert key.startswith("app-") and info.prefix == key[:12] and info.project == "demo" and info.name == "ci"
    async with db.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == info.id))).one()
    assert row.key_hash == hash_key(key)
    assert key not in {str(v) for v in row._mapping.values()}


async def test_a_key_is_found_by_the_key_itself_and_only_by_it(db: AsyncEngine) -> None:
    repo = Repository(db)
    key, info = await repo.create_key("demo")
    found = await repo.find_key(key)
    assert found == info and found.usable(time.time())
    assert await repo.find_key(key + "x") is None
    assert await repo.find_key(key[:-1]) is None
    assert await repo.find_key(info.prefix) is None


async def test_an_expired_key_is_found_but_not_usable(db: AsyncEngine) -> None:
    repo = Repository(db)
    now = time.time()
    expired, _ = await repo.create_key("demo", expires_at=now - 1)
    later, _ = await repo.create_key("demo", expires_at=now + 3600)
    old = await repo.find_key(expired)
    fresh = await repo.find_key(later)
    assert old is not None and not old.usable(now)
    assert fresh is not None and fresh.usable(now) and not fresh.usable(now + 7200)


async def test_keys_are_listed_oldest_first_and_per_project(db: AsyncEngine) -> None:
    repo = Repository(db)
    made = [await repo.create_key(project) for project in ("demo", "shop", "demo")]
    listed = await repo.list_keys()
    assert [k.id for k in listed] == [info.id for _, info in made]
    assert [k.id for k in await repo.list_keys("demo")] == [made[0][1].id, made[2][1].id]
    assert await repo.list_keys("nobody") == []
    assert await repo.count_keys() == 3


async def test_a_key_is_revoked_by_its_id(db: AsyncEngine) -> None:
    repo = Repository(db)
    key, info = await repo.create_key("demo")
    other, _ = await repo.create_key("demo")
    revoked = await repo.revoke_key(info.id)
    assert revoked is not None and revoked.id == info.id and revoked.revoked_at is not None
    found = await repo.find_key(key)
    assert found is not None and found.revoked_at == revoked.revoked_at and not found.usable(time.time())
    still = await repo.find_key(other)
    assert still is not None and still.usable(time.time())


async def test_a_key_is_revoked_by_the_full_key(db: AsyncEngine) -> None:
    repo = Repository(db)
    key, info = await repo.create_key("demo")
    other, _ = await repo.create_key("demo")
    revoked = await repo.revoke_key(key)
    assert revoked is not None and revoked.id == info.id
    found = await repo.find_key(key)
    assert found is not None and not found.usable(time.time())
    still = await repo.find_key(other)
    assert still is not None and still.usable(time.time())


async def test_revoking_an_unknown_key_changes_nothing(db: AsyncEngine) -> None:
    repo = Repository(db)
    key, _ = await repo.create_key("demo")
    assert await repo.revoke_key(str(uuid.uuid4())) is None
    assert await repo.revoke_key("app-" + "x" * 32) is None
    found = await repo.find_key(key)
    assert found is not None and found.usable(time.time())


# --- feedback ------------------------------------------------------------------------------------------------


async def test_feedback_is_set_updated_and_revoked(db: AsyncEngine) -> None:
    repo = Repository(db)
    mid, uid = str(uuid.uuid4()), end_user_id("demo", "a")
    assert await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating="like", content="x")
    [first] = await repo.list_feedbacks("demo", page=1, limit=10)
    assert (first["rating"], first["content"], first["message_id"]) == ("like", "x", mid)
    assert first["from_end_user_id"] == uid and first["from_source"] == "user"

    assert await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating="dislike", content=None)
    [updated] = await repo.list_feedbacks("demo", page=1, limit=10)
    assert (updated["id"], updated["rating"], updated["content"]) == (first["id"], "dislike", None)
    assert updated["created_at"] == first["created_at"] and updated["updated_at"] >= first["updated_at"]

    assert await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating=None, content=None)
    assert await repo.list_feedbacks("demo", page=1, limit=10) == []
    assert not await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating=None, content=None)


async def test_each_user_has_their_own_feedback_on_a_message(db: AsyncEngine) -> None:
    repo = Repository(db)
    mid = str(uuid.uuid4())
    a, b = end_user_id("demo", "a"), end_user_id("demo", "b")
    await repo.set_feedback(project="demo", message_id=mid, end_user_id=a, rating="like", content=None)
    await repo.set_feedback(project="demo", message_id=mid, end_user_id=b, rating="dislike", content=None)
    await repo.set_feedback(project="demo", message_id=mid, end_user_id=a, rating=None, content=None)
    [left] = await repo.list_feedbacks("demo", page=1, limit=10)
    assert (left["from_end_user_id"], left["rating"]) == (b, "dislike")
    assert await count(db, feedbacks) == 1


async def test_concurrent_feedback_for_one_message_and_user_is_one_row(db: AsyncEngine) -> None:
    repo = Repository(db)
    mid, uid = str(uuid.uuid4()), end_user_id("demo", "a")
    results = await asyncio.gather(
        *(
            repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating="like", content=str(i))
            for i in range(8)
        )
    )
    assert all(results) and await count(db, feedbacks) == 1


async def test_feedback_is_listed_per_project_newest_first_by_page(db: AsyncEngine) -> None:
    repo = Repository(db)
    uid = end_user_id("demo", "a")
    mids = [str(uuid.uuid4()) for _ in range(5)]
    for mid in mids:
        await repo.set_feedback(project="demo", message_id=mid, end_user_id=uid, rating="like", content=None)
        await asyncio.sleep(0.001)  # distinct created_at, so the order is defined
    await repo.set_feedback(project="shop", message_id=str(uuid.uuid4()), end_user_id=uid, rating="like", content=None)
    page1 = await repo.list_feedbacks("demo", page=1, limit=2)
    page3 = await repo.list_feedbacks("demo", page=3, limit=2)
    everything = await repo.list_feedbacks("demo", page=1, limit=100)
    assert [f["message_id"] for f in page1] == [mids[4], mids[3]]
    assert [f["message_id"] for f in page3] == [mids[0]]
    assert [f["message_id"] for f in everything] == mids[::-1]


async def test_a_mistyped_key_never_revokes_another_by_its_prefix(db: AsyncEngine) -> None:
    repo = Repository(db)
    key, info = await repo.create_key("demo")
    assert await repo.revoke_key(key[:12] + "X" * 20) is None  # same shown prefix, wrong key
    still = await repo.find_key(key)
    assert still is not None and still.usable(time.time())
    first = await repo.revoke_key(key[:8])  # a short prefix of one key is enough
    assert first is not None and first.id == info.id
    again = await repo.revoke_key(info.id)
    assert again is not None and again.revoked_at == first.revoked_at  # the first revocation time is kept


async def test_an_admin_key_has_its_own_prefix_and_no_project(db: AsyncEngine) -> None:
    repo = Repository(db)
    key, info = await repo.create_key("demo", role="admin")
    assert key.startswith("adm-") and info.admin and info.project == ADMIN_PROJECT
    found = await repo.find_key(key)
    assert found is not None and found.role == "admin" and found.project == ADMIN_PROJECT


async def test_per_key_limits_are_kept_exactly(db: AsyncEngine) -> None:
    repo = Repository(db)
    limits = Limits(rpm=60, tpm=10_000, cost_per_day=Decimal("1.25"), cost_per_month=Decimal("0.0000001"))
    key, info = await repo.create_key("demo", limits=limits)
    found = await repo.find_key(key)
    assert found is not None and found.limits == limits == info.limits
    plain_key, _ = await repo.create_key("demo")
    unlimited = await repo.find_key(plain_key)
    assert unlimited is not None and unlimited.limits.empty


# --- usage rollups and retention -----------------------------------------------------------------------------


async def test_the_recorder_keeps_daily_rollups_per_project_key_and_model(db: AsyncEngine, tmp_path: Path) -> None:
    day1 = 1_764_547_200.0  # 2025-12-01 00:00 UTC
    day2 = day1 + 86_400
    rows = [
        message_row(created_at=day1 + 10, key_id="k1", prompt_tokens=3, completion_tokens=5, total_price="0.0000015"),
        message_row(created_at=day1 + 20, key_id="k1", prompt_tokens=1, completion_tokens=1, total_price="0.25"),
        message_row(created_at=day1 + 30, key_id="k1", status="error", total_price="0"),
        message_row(created_at=day1 + 40, key_id=None, model="other"),
        message_row(created_at=day2 + 1, key_id="k1", total_price="1"),
    ]
    recorder = recorder_for(db, tmp_path, batch=2)  # several batches add to the same rollup row
    recorder.start()
    recorder.submit(*rows)
    await asyncio.wait_for(recorder.close(), HANG)
    usage = await Repository(db).usage(since="2025-12-01", until="2025-12-02", project="demo")
    by = {(u["day"], u["key_id"], u["model"]): u for u in usage}
    first = by[("2025-12-01", "k1", "m")]
    assert (first["requests"], first["errors"], first["prompt_tokens"], first["completion_tokens"]) == (3, 1, 4, 6)
    assert first["cost_pico"] == 1_500_000 + 250_000_000_000
    assert by[("2025-12-01", "", "other")]["requests"] == 1  # no key: key_id ""
    assert by[("2025-12-02", "k1", "m")]["cost_pico"] == 10**12
    repo = Repository(db)
    assert await repo.spent("key", "k1", "day", "2025-12-01") == 250_001_500_000
    assert await repo.spent("key", "k1", "month", "2025-12") == 1_250_001_500_000
    assert await repo.spent("project", "demo", "day", "2025-12-02") == 10**12
    assert await repo.spent("project", "nobody", "month", "2025-12") == 0


async def test_a_dead_lettered_message_is_not_counted_in_the_rollups(db: AsyncEngine, tmp_path: Path) -> None:
    good = message_row(key_id="k", total_price="0.5")
    bad = message_row(key_id="k", total_price="0.5", answer=None)  # NOT NULL: refused for good
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    recorder.submit(good, bad)
    await asyncio.wait_for(recorder.close(), HANG)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert await Repository(db).spent("key", "k", "day", today) == 5 * 10**11  # the stored one only


async def test_retention_deletes_old_messages_in_batches_and_keeps_the_rollups(db: AsyncEngine, tmp_path: Path) -> None:
    now = time.time()
    old = [message_row(created_at=now - 40 * 86400 + i) for i in range(25)]
    new = [message_row(created_at=now - 86400)]
    recorder = recorder_for(db, tmp_path)
    recorder.start()
    recorder.submit(*old, *new)
    await asyncio.wait_for(recorder.close(), HANG)
    repo = Repository(db)
    await repo.set_feedback(
        project="demo", message_id=old[0].values["id"], end_user_id="u", rating="like", content=None
    )
    deleted = await repo.purge_messages(now - 30 * 86400, batch=10, pause=0)
    assert deleted == 25
    assert await message_ids(db) == {new[0].values["id"]}
    assert await count(db, feedbacks) == 0  # the feedback went with its message
    usage = await repo.usage(since="0000-00-00", until="9999-99-99")
    assert sum(u["requests"] for u in usage) == 26  # rollups keep the history
    assert await repo.purge_messages(now - 30 * 86400) == 0


async def test_a_replayed_journal_counts_rows_with_a_once_id_once_and_stores_records_once(
    db: AsyncEngine, tmp_path: Path
) -> None:
    """The crash window of the journal: rows written to the database, then the process killed before the journal
    was emptied. The next start replays the journal: a stored record is found by its id, and the rows that only
    add to counters and carry a `once` id (a `store: false` call's metering; here also an additive row given
    one) by that id in `counted_rows`."""
    journal = tmp_path / "journal"
    metering = Row(
        messages,
        {k: v for k, v in message_values(project="quiet").items() if k not in ("id", "answer")},
        meter_only=True,
        once=str(uuid.uuid4()),
    )
    refused = {"minute": 60 * int(time.time() // 60), "project": "demo", "key_id": "k", "face": "chat",
               "status": 429, "code": "rate_limit_exceeded", "requests": 1}  # fmt: skip
    rows = [message_row(project="loud"), metering, Row(rejections, refused, once=str(uuid.uuid4()))]
    first = recorder_for(db, tmp_path, journal_dir=journal)
    first.start()
    first.submit(*rows)
    left = (journal / f"journal-{os.getpid()}.jsonl").read_bytes()  # what a SIGKILL now would leave
    assert left.count(b"\n") == 3
    await first.close()
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()  # a pid whose process is gone: its journal is claimed and replayed at the next start
    (journal / f"journal-{gone.pid}.jsonl").write_bytes(left)

    second = recorder_for(db, tmp_path, journal_dir=journal)
    second.start()
    await second.drain()
    await second.close()
    async with db.connect() as conn:
        usage = {r.project: r.requests for r in await conn.execute(select(usage_daily))}
        refusals = (await conn.execute(select(rejections.c.requests))).scalars().all()
        counted = (await conn.execute(select(func.count()).select_from(counted_rows))).scalar_one()
    assert usage == {"loud": 1, "quiet": 1}  # not 2: each counted once
    assert refusals == [1] and counted == 2
    assert await count(db) == 1
    assert not list(journal.glob("journal-*.jsonl"))
    assert not (tmp_path / "dead-letter.jsonl").exists()  # skipped as counted, not refused as a duplicate


async def test_the_recorder_forgets_counted_row_ids_after_a_week_in_batches(db: AsyncEngine, tmp_path: Path) -> None:
    from promptd.store import recorder as recorder_module

    now = time.time()
    old = [{"id": str(uuid.uuid4()), "at": now - 8 * 86400} for _ in range(7)]
    young = [{"id": str(uuid.uuid4()), "at": now - 86400} for _ in range(3)]
    async with db.begin() as conn:
        await conn.execute(counted_rows.insert(), old + young)
    recorder = recorder_for(db, tmp_path)
    batch = recorder_module.PURGE_BATCH
    recorder_module.PURGE_BATCH = 2  # several transactions
    try:
        await recorder._purge_counted()
    finally:
        recorder_module.PURGE_BATCH = batch
    async with db.connect() as conn:
        left = set((await conn.execute(select(counted_rows.c.id))).scalars())
    assert left == {r["id"] for r in young}
