"""PostgreSQL at scale: usage queries and retention on a million request records.

    .venv/bin/python bench/usage_queries.py [--rows 1000000] [--postgres postgresql://postgres@127.0.0.1:5432/test]

Creates a throw-away database with promptd's migrations, fills `messages` with --rows records spread over 90
days, 20 projects and 200 keys (COPY), and `usage_daily` with their rollups (what the recorder keeps live).
Then times, each query run 5 times (median): a key's and a project's usage over 30 days from the rollups and
from the raw records, a project's latest records; and a retention run deleting the oldest 30 days in batches
while a writer keeps inserting, reporting the writer's worst insert latency. Figures,
never test assertions. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from typing import Any

import asyncpg

from promptd.store.db import create_engine, migrate
from promptd.store.repository import Repository

DAY = 86_400


async def timed(conn: asyncpg.Connection, sql: str, *args: Any, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await conn.fetch(sql, *args)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


async def fill(conn: asyncpg.Connection, rows: int, now: float) -> None:
    rng = random.Random(7)
    projects = [f"p{i}" for i in range(20)]
    keys = [str(uuid.UUID(int=i)) for i in range(200)]
    batch: list[tuple[Any, ...]] = []
    columns = [
        "id", "project", "face", "key_id", "model", "provider", "upstream_model", "answer", "status",
        "prompt_tokens", "completion_tokens", "total_tokens", "total_price", "created_at",
    ]  # fmt: skip
    for i in range(rows):
        key = rng.randrange(200)
        batch.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128))),
                projects[key % 20],
                "dify",
                keys[key],
                "m",
                "mock",
                "bench",
                "an answer",
                "normal",
                20,
                40,
                60,
                "0.0000270",
                now - rng.random() * 90 * DAY,
            )
        )
        if len(batch) == 50_000 or i == rows - 1:
            await conn.copy_records_to_table("messages", records=batch, columns=columns)
            batch = []
    await conn.execute(
        """
        INSERT INTO usage_daily (day, project, key_id, model, currency, requests, errors, prompt_tokens,
                                 completion_tokens, cost_pico)
        SELECT to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), project, key_id, model, 'USD',
               count(*), 0, sum(prompt_tokens), sum(completion_tokens), count(*) * 27000000
        FROM messages GROUP BY 1, 2, 3, 4
        """
    )
    await conn.execute("ANALYZE")


async def writer(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
    conn = await asyncpg.connect(url)
    try:
        while not stop.is_set():
            start = time.perf_counter()
            await conn.execute(
                "INSERT INTO messages (id, project, face, model, provider, upstream_model, answer, status, created_at)"
                " VALUES ($1, 'p0', 'dify', 'm', 'mock', 'bench', 'x', 'normal', $2)",
                str(uuid.uuid4()),
                time.time(),
            )
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def run(server: str, rows: int) -> None:
    name = "promptd_usage_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + "/" + name
    try:
        engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
        await migrate(engine)
        conn = await asyncpg.connect(url)
        now = time.time()
        start = time.perf_counter()
        await fill(conn, rows, now)
        print(f"filled {rows:,} records in {time.perf_counter() - start:.1f} s")
        since = time.strftime("%Y-%m-%d", time.gmtime(now - 30 * DAY))
        key = str(uuid.UUID(int=7))
        figures = {
            "a key's usage, 30 days, from usage_daily": await timed(
                conn,
                "SELECT sum(requests), sum(cost_pico) FROM usage_daily WHERE key_id = $1 AND day >= $2",
                key,
                since,
            ),
            "the same from messages (index on key_id, created_at)": await timed(
                conn,
                "SELECT count(*), sum(total_tokens) FROM messages WHERE key_id = $1 AND created_at >= $2",
                key,
                now - 30 * DAY,
            ),
            "a project's usage per day and model, 30 days, from usage_daily": await timed(
                conn,
                "SELECT day, model, sum(requests), sum(cost_pico) FROM usage_daily WHERE project = $1 AND day >= $2 "
                "GROUP BY day, model",
                "p3",
                since,
            ),
            "the same from messages (index on project, created_at)": await timed(
                conn,
                "SELECT to_char(to_timestamp(created_at), 'YYYY-MM-DD'), model, count(*) FROM messages "
                "WHERE project = $1 AND created_at >= $2 GROUP BY 1, 2",
                "p3",
                now - 30 * DAY,
            ),
            "a project's latest 50 records": await timed(
                conn, "SELECT * FROM messages WHERE project = $1 ORDER BY created_at DESC LIMIT 50", "p3"
            ),
        }
        stop = asyncio.Event()
        latencies: list[float] = []
        write = asyncio.create_task(writer(url, stop, latencies))
        await asyncio.sleep(0.5)
        start = time.perf_counter()
        deleted = await Repository(engine).purge_messages(now - 60 * DAY)  # as the retention task runs it
        total = time.perf_counter() - start
        stop.set()
        await write
        await engine.dispose()
        print()
        print(f"| query on {rows:,} records | median ms |")
        print("|---|---|")
        for label, ms in figures.items():
            print(f"| {label} | {ms:.2f} |")
        print()
        print(
            f"Retention: deleted {deleted:,} records older than 60 days in {total:.1f} s (batches of 5,000); "
            f"a concurrent writer inserted {len(latencies)} rows, worst insert {max(latencies) * 1000:.1f} ms, "
            f"p99 {sorted(latencies)[int(0.99 * len(latencies))] * 1000:.1f} ms."
        )
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = p.parse_args()
    asyncio.run(run(args.postgres, args.rows))


if __name__ == "__main__":
    main()
