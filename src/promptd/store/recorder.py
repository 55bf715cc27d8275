"""The recorder: rows are written off the request path, in batches, by one writer task; none is lost.

`submit()` never blocks the request: it appends to an in-memory queue. When the queue holds `maxsize` rows,
`submit` still accepts the row but the writer is behind: callers that can wait use `await put()` instead,
which applies back-pressure. A batch that fails is retried row by row; a row the database refuses for good
(a constraint, a value it cannot store) or keeps refusing (5 attempts) is appended to `dead-letter.jsonl` in
the data dir with the error, and logged: never dropped silently.
`drain()` waits until everything submitted so far is written; `close()` drains and stops (graceful shutdown).
With `linger` > 0 the writer waits up to that long for a batch to fill before inserting (drain and close
cut the wait short).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptd.domain.limits import to_pico
from promptd.store.tables import messages, usage_daily

__all__ = ["Recorder", "Row"]

log = logging.getLogger("promptd.recorder")


@dataclass(frozen=True, slots=True)
class Row:
    table: Table
    values: Mapping[str, Any]
    upsert_ignore: bool = False  # INSERT … ON CONFLICT DO NOTHING (end users seen before)


def _permanent(exc: Exception) -> bool:
    """Whether trying again cannot help: the row itself is refused (unlike a database that is down or busy)."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)  # refused before reaching it


def _rollup(rows: list[Row]) -> list[dict[str, Any]]:
    """The usage_daily increments of these rows' messages, summed per (day, project, key, model, currency) and
    sorted, so that replicas upserting the same rollup rows lock them in the same order (no deadlock)."""
    sums: dict[tuple[str, str, str, str, str], list[int]] = {}
    for r in rows:
        if r.table is not messages:
            continue
        v = r.values
        day = time.strftime("%Y-%m-%d", time.gmtime(v["created_at"]))
        group = (day, v["project"], v.get("key_id") or "", v["model"], v.get("currency") or "USD")
        s = sums.setdefault(group, [0, 0, 0, 0, 0])
        s[0] += 1
        s[1] += v.get("status") == "error"
        s[2] += v.get("prompt_tokens") or 0
        s[3] += v.get("completion_tokens") or 0
        s[4] += to_pico(Decimal(v.get("total_price") or "0"))
    return [
        dict(zip(ROLLUP_KEYS + ROLLUP_SUMS, (*group, *values), strict=True)) for group, values in sorted(sums.items())
    ]


ROLLUP_KEYS = ("day", "project", "key_id", "model", "currency")
ROLLUP_SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_pico")


async def write_rows(conn: AsyncConnection, rows: list[Row]) -> None:
    """Insert rows grouped by (table, mode, columns), one executemany per group, and add the messages among
    them to the daily usage rollups in the same transaction (a rollup never counts a message that is not
    stored, nor misses one that is).

    The columns are part of the group: an executemany takes its columns from the first row, so a later row
    with other keys would lose its values silently."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    groups: dict[tuple[str, bool, frozenset[str]], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.table.name, r.upsert_ignore, frozenset(r.values)), []).append(r)
    for (_, ignore, _), group in groups.items():
        table = group[0].table
        values = [dict(r.values) for r in group]
        if ignore:
            await conn.execute(insert(table).on_conflict_do_nothing(), values)
        else:
            await conn.execute(table.insert(), values)
    rollup = _rollup(rows)
    if rollup:
        stmt = insert(usage_daily)
        adds = {c: usage_daily.c[c] + stmt.excluded[c] for c in ROLLUP_SUMS}
        await conn.execute(stmt.on_conflict_do_update(index_elements=list(ROLLUP_KEYS), set_=adds), rollup)


class Recorder:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        dead_letter: Path,
        batch: int = 256,
        maxsize: int = 10_000,
        on_written: Callable[[str, int], None] | None = None,
        linger: float = 0.0,
    ) -> None:
        self.engine = engine
        self._on_written = on_written or (lambda outcome, n: None)
        self.dead_letter = dead_letter
        self.batch = batch
        self.maxsize = maxsize
        self._queue: deque[Row] = deque()
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self.linger = linger
        self._progress = asyncio.Condition()
        self._submitted = 0
        self._written = 0
        self._wanted = 0  # drain() waits for the rows up to here: the writer does not linger before them
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failed_rows = 0  # rows sent to the dead letter file

    # --- producer side ------------------------------------------------------------------------------------------

    def submit(self, *rows: Row) -> None:
        if self._closing and self._task is None:
            raise RuntimeError("recorder is closed")
        self._queue.extend(rows)
        self._submitted += len(rows)
        self._wakeup.set()
        if len(self._queue) >= self.batch:
            self._full.set()

    async def put(self, *rows: Row) -> None:
        """Like submit, but waits while the queue is over `maxsize` (back-pressure)."""
        if len(self._queue) >= self.maxsize:
            async with self._progress:
                await self._progress.wait_for(lambda: len(self._queue) < self.maxsize)
        self.submit(*rows)

    @property
    def pending(self) -> int:
        return self._submitted - self._written

    async def drain(self) -> None:
        """Wait until every row submitted before this call is in the database (or the dead-letter file)."""
        target = self._submitted
        self._wanted = max(self._wanted, target)
        self._full.set()  # a reader is waiting: write now
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target)

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="promptd-recorder")

    async def close(self) -> None:
        """Write everything still queued, then stop. Rows submitted afterwards are refused."""
        self._closing = True
        self._wakeup.set()
        self._full.set()
        if self._task is not None:
            await self._task
            self._task = None
        elif self._queue:  # never started: write what was queued here
            await self._run()

    # --- writer side --------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.linger and len(self._queue) < self.batch and not self._closing and self._wanted <= self._written:
                # gather a batch: one insert of many rows costs about what one row alone does (a submit that
                # fills the batch, drain and close all set _full)
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.linger)
            rows = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            await self._write(rows)
            async with self._progress:
                self._written += len(rows)
                self._progress.notify_all()

    async def _write(self, rows: list[Row]) -> None:
        attempts = 5
        for attempt in range(attempts):
            try:
                async with self.engine.begin() as conn:
                    await write_rows(conn, rows)
                self._on_written("written", len(rows))
                return
            except Exception as exc:  # the database is down, locked, or one row is bad
                log.warning("recorder: writing %d row(s) failed (attempt %d): %s", len(rows), attempt + 1, exc)
                if len(rows) > 1:
                    break  # find the bad row(s) one by one
                if _permanent(exc):
                    self._dead(rows[0], f"{type(exc).__name__}: {exc}")
                    return
                if attempt == attempts - 1:
                    self._dead(rows[0], f"gave up after {attempts} attempts: {type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        for row in rows:
            await self._write([row])

    def _dead(self, row: Row, why: str) -> None:
        self.failed_rows += 1
        self._on_written("dead_letter", 1)
        entry = json.dumps(
            {"table": row.table.name, "values": dict(row.values), "error": why, "at": time.time()}, default=str
        )
        log.error("recorder: row for %s written to %s: %s", row.table.name, self.dead_letter, why)
        try:
            self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
            with self.dead_letter.open("a", encoding="utf-8") as f:
                f.write(entry + "\n")
        except OSError as exc:  # the writer must go on: the row is kept in the log instead
            log.critical("recorder: cannot append to %s (%s); the row: %s", self.dead_letter, exc, entry)
