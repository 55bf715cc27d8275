"""The recorder: rows are written off the request path, in batches, by one writer task; none is lost.

`submit()` never blocks the request: it appends to an in-memory queue of at most `maxsize` rows. When the
queue is full (the database is slower than the traffic), the rows of a submit go to a spill file on disk
(`spill_dir/spill-<pid>.jsonl`, one JSON line a row; one file per process, as workers share the data dir)
instead, counted by `on_written("spilled", n)`; once the writer has caught up (its queue is empty) it replays
the spilled rows into the database in batches, oldest first. Spill files of a process that is gone are
claimed (renamed, so only one process takes each) and replayed when the next one starts; a replay remembers
how far it got (`<file>.offset`), so a crash during the replay repeats at most one batch (whose rows the
database then refuses as duplicates: they go to the dead-letter file). Only when the spill file cannot be written either
does a row stay in memory past `maxsize` (logged). Callers that can wait use `await put()`, which applies
back-pressure instead.
A batch that fails is retried row by row; a row the database refuses for good (a constraint, a value it
cannot store) or keeps refusing (5 attempts) is appended to `dead-letter.jsonl` in the data dir with the
error, and logged: never dropped silently.
`drain()` waits until everything submitted so far is written (spilled rows included); `close()` drains and
stops (graceful shutdown). With `linger` > 0 the writer waits up to that long for a batch to fill before
inserting (drain and close cut the wait short).

Journal (SIGKILL loses nothing): with a `journal_dir`, `submit()` also appends its rows to
`journal_dir/journal-<pid>.jsonl` with one write(2) (no fsync: the bytes are in the kernel's page cache, so
they survive the process being killed, not the machine losing power). The journal is emptied whenever the
writer has caught up (everything submitted is in the database or a spill file), so it holds only the rows
that are not stored yet. A journal whose process is gone (or this process's own pid left by an earlier run,
as in a container where the server is always pid 1) is claimed at start and replayed like a spill file.
Every replay (journal, spill file, dead letters) skips the rows whose record is already stored, by primary
key, in the same transaction as it writes the others: a row both journaled and written is written once. A row
that only adds to counters (metering alone, a rejection) has a `once` id instead, stored in `counted_rows` in
the transaction that counts it: a replay skips it when its id is there.

Database outage: when a write fails and the database does not answer a `SELECT 1` either, the writer keeps
the batch and tries again with a back-off (at most 2 s) until the database is back; the queue fills, then
spills to disk, and nothing goes to the dead-letter file for the outage. One line is logged when the outage
starts and one when it ends. A `close()` during an outage leaves the rows on disk (spill file and journal)
for the next start instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import msgspec
from sqlalchemy import Table, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptd.domain.limits import to_pico
from promptd.store.tables import counted_rows, messages, rejections, usage_daily

__all__ = ["Recorder", "Row", "replay_dead_letters"]

log = logging.getLogger("promptd.recorder")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


#: how long a counted row's id is kept (a replay after that, of a journal left by a process stopped longer,
#: could count the row again); purged every PURGE_EVERY seconds, PURGE_BATCH ids a transaction
COUNTED_KEEP = 7 * 86400
PURGE_EVERY = 600.0
PURGE_BATCH = 5000


def _owner_gone(name: str) -> bool:
    """Whether the process that wrote spill file `name` (spill-<pid>.jsonl, replay-<pid>-<n>.jsonl) is gone."""
    try:
        pid = int(name.split("-")[1].split(".")[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (and is not ours to signal)
        return False
    return False


@dataclass(frozen=True, slots=True)
class Row:
    table: Table
    values: Mapping[str, Any]
    upsert_ignore: bool = False  # INSERT … ON CONFLICT DO NOTHING (end users seen before)
    #: a message's metering alone (a `store: false` call): it reaches the usage rollups, and no table
    meter_only: bool = False
    #: a row that only adds to counters (metering alone, a rejection) has no record a replay could find: its
    #: unique id goes in `counted_rows` in the transaction that counts it, and a replay skips it when it is there
    once: str | None = None


def _line(row: Row) -> bytes:
    """A row as one line of a spill or journal file."""
    entry: dict[str, Any] = {"table": str(row.table.name), "values": row.values, "upsert_ignore": row.upsert_ignore}
    if row.meter_only:
        entry["meter_only"] = True
    if row.once is not None:
        entry["once"] = row.once
    return _encode(entry) + b"\n"


def _row(tables: Mapping[str, Table], entry: Mapping[str, Any]) -> Row:
    """A row from its line in a spill, journal or dead-letter file."""
    return Row(
        tables[entry["table"]],
        entry["values"],
        bool(entry.get("upsert_ignore")),
        meter_only=bool(entry.get("meter_only")),
        once=entry.get("once"),
    )


async def _unwritten(conn: AsyncConnection, rows: list[Row]) -> list[Row]:
    """The rows whose primary key is not in the database yet (a replay may repeat rows that were written:
    a journal is emptied only after its rows are), and the counter-only rows not counted yet (their `once` id
    is not in `counted_rows`). Other rows with no single-column key, and upserts, are kept."""
    once = {r.once for r in rows if r.once is not None}
    if once:
        done = set((await conn.execute(select(counted_rows.c.id).where(counted_rows.c.id.in_(once)))).scalars())
        if done:
            rows = [r for r in rows if r.once not in done]
    keys: dict[str, tuple[Table, set[Any]]] = {}
    for r in rows:
        if r.once is not None or r.meter_only:
            continue
        pk = list(r.table.primary_key)
        if len(pk) == 1 and not r.upsert_ignore and pk[0].name in r.values:
            keys.setdefault(r.table.name, (r.table, set()))[1].add(r.values[pk[0].name])
    found: set[tuple[str, Any]] = set()
    for name, (table, wanted) in keys.items():
        column = next(iter(table.primary_key))
        for (value,) in await conn.execute(select(column).where(column.in_(wanted))):
            found.add((name, value))
    if not found:
        return rows
    return [
        r
        for r in rows
        if len(r.table.primary_key) != 1
        or r.upsert_ignore
        or r.once is not None
        or r.meter_only
        or (r.table.name, r.values.get(next(iter(r.table.primary_key)).name)) not in found
    ]


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

#: Tables whose rows are increments of counters (their primary key names the counter, every other column is
#: added): a batch's rows are summed per key and upserted, never inserted as they are.
ADDITIVE: dict[str, Table] = {rejections.name: rejections}


def _increments(rows: list[Row], table: Table) -> list[dict[str, Any]]:
    """The rows of additive `table` summed per primary key, sorted (replicas lock the rows in the same order)."""
    keys = [c.name for c in table.primary_key]
    counters = [c.name for c in table.columns if not c.primary_key]
    sums: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        if r.table is table:
            s = sums.setdefault(tuple(r.values[k] for k in keys), [0] * len(counters))
            for i, name in enumerate(counters):
                s[i] += int(r.values.get(name) or 0)
    return [dict(zip(keys + counters, (*group, *values), strict=True)) for group, values in sorted(sums.items())]


Processor = Callable[[Any], Any] | None
#: per (dialect, table, kind, columns): the statement as the driver takes it and each parameter's bind processor
_DRIVER_SQL: dict[tuple[str, str, str, tuple[str, ...]], tuple[str, list[tuple[str, Processor]]] | None] = {}


def _statement(dialect_name: str, table: Table, kind: str) -> Any:
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    if kind == "ignore":
        return insert(table).on_conflict_do_nothing()
    if kind == "rollup":  # add to the counters of the row with the same primary key
        stmt = insert(table)
        adds = {c.name: c + stmt.excluded[c.name] for c in table.columns if not c.primary_key}
        return stmt.on_conflict_do_update(index_elements=[c.name for c in table.primary_key], set_=adds)
    return table.insert()


def _driver_sql(conn: AsyncConnection, table: Table, kind: str, columns: tuple[str, ...]) -> Any:
    """The statement compiled once, for the driver: SQLAlchemy's executemany builds every row's parameters
    in Python (`construct_params`), which cost more than the database's own work for a batch of records."""
    dialect = conn.dialect
    key = (f"{dialect.name}+{dialect.driver}", table.name, kind, columns)
    if key not in _DRIVER_SQL:
        compiled = _statement(dialect.name, table, kind).compile(dialect=dialect, column_keys=list(columns))
        order = compiled.positiontup
        plan = None
        if order is not None and sorted(order) == sorted(columns):  # else (defaults, odd names): SQLAlchemy's way
            procs = [(name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in order]
            plan = (str(compiled), procs)
        _DRIVER_SQL[key] = plan
    return _DRIVER_SQL[key]


async def _insert(conn: AsyncConnection, table: Table, kind: str, values: list[dict[str, Any]]) -> None:
    columns = tuple(sorted(values[0]))
    plan = _driver_sql(conn, table, kind, columns)
    if plan is None:
        await conn.execute(_statement(conn.dialect.name, table, kind), values)
        return
    sql, procs = plan
    try:
        params = [tuple(v[name] if p is None else p(v[name]) for name, p in procs) for v in values]
    except Exception as exc:  # a value the column cannot take: refused for good, as SQLAlchemy would say
        raise StatementError(f"{type(exc).__name__}: {exc}", sql, None, exc) from exc
    await conn.exec_driver_sql(sql, params)


async def write_rows(conn: AsyncConnection, rows: list[Row]) -> None:
    """Insert rows grouped by (table, mode, columns), one executemany per group, and add the messages among
    them to the daily usage rollups in the same transaction (a rollup never counts a message that is not
    stored, nor misses one that is). Rows of an ADDITIVE table are summed and added to its counters.

    The columns are part of the group: an executemany takes its columns from the first row, so a later row
    with other keys would lose its values silently."""
    groups: dict[tuple[str, bool, frozenset[str]], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.table.name if not r.meter_only else "", r.upsert_ignore, frozenset(r.values)), []).append(
            r
        )
    additive: set[str] = set()
    for (_, ignore, _), group in groups.items():
        if group[0].meter_only:
            continue
        if group[0].table.name in ADDITIVE:
            additive.add(group[0].table.name)
            continue
        table = group[0].table
        key = [c.name for c in table.primary_key]
        if ignore and key and all(k in group[0].values for k in key):
            # the same end user, say, in many rows of a batch: the database need only see it once
            group = list({tuple(r.values[k] for k in key): r for r in reversed(group)}.values())[::-1]
        await _insert(conn, table, "ignore" if ignore else "insert", [dict(r.values) for r in group])
    once = [{"id": r.once, "at": time.time()} for r in rows if r.once is not None]
    if once:  # in the transaction that counts them: a replay finds them counted, or not counted at all
        await _insert(conn, counted_rows, "insert", once)
    rollup = _rollup(rows)
    if rollup:
        await _insert(conn, usage_daily, "rollup", rollup)
    for name in sorted(additive):
        await _insert(conn, ADDITIVE[name], "rollup", _increments(rows, ADDITIVE[name]))


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
        spill_dir: Path | None = None,
        tables: Mapping[str, Table] | None = None,
        journal_dir: Path | None = None,
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
        self.spill_dir = spill_dir if spill_dir is not None else dead_letter.parent / "recorder-spill"
        if tables is None:
            from promptd.store.tables import metadata

            tables = metadata.tables
        self._tables = tables
        self._spill_file: IO[bytes] | None = None
        self._spilled = 0  # rows put on disk (by this process, or left by an earlier one), in order
        self._replayed = 0  # of those, rows read back and written (or dead-lettered)
        self._spill_broken = False
        self.journal_dir = journal_dir
        self._journal: int | None = None  # the journal's file descriptor (O_APPEND)
        self._journal_bytes = 0  # written to it since it was last emptied
        self._outage_since: float | None = None  # monotonic time the database became unreachable
        self._next_purge = time.monotonic() + PURGE_EVERY  # of old counted-row ids (_purge_counted)
        self._scan_leftovers()
        if journal_dir is not None:
            self._open_journal(journal_dir)

    # --- producer side ------------------------------------------------------------------------------------------

    def submit(self, *rows: Row) -> None:
        if self._closing and self._task is None:
            raise RuntimeError("recorder is closed")
        self._submitted += len(rows)
        self._wakeup.set()
        if self._journal is not None:
            self._journal_append(rows)
        if len(self._queue) >= self.maxsize and self._spill(rows):
            return
        self._queue.extend(rows)
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

    @property
    def spilled_pending(self) -> int:
        """Rows waiting in spill files on disk."""
        return self._spilled - self._replayed

    async def drain(self) -> None:
        """Wait until every row submitted before this call is in the database (or the dead-letter file)."""
        target, spilled = self._submitted, self._spilled
        self._wanted = max(self._wanted, target)
        self._full.set()  # a reader is waiting: write now
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target and self._replayed >= spilled)

    # --- spilling to disk ---------------------------------------------------------------------------------------

    def _spill(self, rows: tuple[Row, ...]) -> bool:
        """Append rows to the spill file; False (the caller keeps them in memory) if that cannot be done."""
        try:
            data = b"".join(map(_line, rows))
            if self._spill_file is None:
                self.spill_dir.mkdir(parents=True, exist_ok=True)
                self._spill_file = (self.spill_dir / f"spill-{os.getpid()}.jsonl").open("ab")
            self._spill_file.write(data)
            self._spill_file.flush()  # in the OS's hands: survives this process dying
        except (OSError, TypeError, ValueError) as exc:
            if not self._spill_broken:
                log.critical(
                    "recorder: queue full and cannot spill to %s (%s); keeping rows in memory", self.spill_dir, exc
                )
            self._spill_broken = True
            return False
        self._spill_broken = False
        self._spilled += len(rows)
        self._on_written("spilled", len(rows))
        return True

    # --- the journal ----------------------------------------------------------------------------------------------

    def _open_journal(self, journal_dir: Path) -> None:
        try:
            journal_dir.mkdir(parents=True, exist_ok=True)
            path = journal_dir / f"journal-{os.getpid()}.jsonl"
            self._journal = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        except OSError as exc:
            log.critical("recorder: cannot open the journal in %s (%s): a killed process loses its last records",
                         journal_dir, exc)  # fmt: skip

    def _journal_append(self, rows: tuple[Row, ...]) -> None:
        """One write(2) of the rows' lines: cheap enough for every record (docs/operations.md has the figure)."""
        assert self._journal is not None
        try:
            data = b"".join(map(_line, rows))
            os.write(self._journal, data)
        except (OSError, TypeError, ValueError) as exc:  # the row still goes to the queue (and the database)
            log.critical("recorder: cannot append to the journal (%s); journaling is off for this process", exc)
            os.close(self._journal)
            self._journal = None
            return
        self._journal_bytes += len(data)

    def _journal_caught_up(self) -> None:
        """Everything submitted is stored (or on disk in a spill file): the journal starts over, empty."""
        if self._journal is not None and self._journal_bytes and not self._queue:
            try:
                os.ftruncate(self._journal, 0)
                self._journal_bytes = 0
            except OSError as exc:
                log.warning("recorder: cannot empty the journal (%s); it is replayed, without duplicates", exc)

    def _close_journal(self) -> None:
        if self._spill_file is not None:  # rows left on disk at shutdown (the database was unreachable)
            self._spill_file.close()
            self._spill_file = None
        if self._journal is None or self.journal_dir is None:
            return
        os.close(self._journal)
        self._journal = None
        if not self._queue and not self.spilled_pending:  # all stored: nothing for the next start
            with contextlib.suppress(OSError):
                (self.journal_dir / f"journal-{os.getpid()}.jsonl").unlink()

    def _replay_files(self) -> list[Path]:
        """This process's spill files to replay, oldest first; the live one is closed and renamed to join them."""
        if self._spill_file is not None:
            self._spill_file.close()
            self._spill_file = None
        pid = os.getpid()
        try:
            live = self.spill_dir / f"spill-{pid}.jsonl"
            if live.exists():
                os.replace(live, self.spill_dir / f"replay-{pid}-{time.time_ns():020d}.jsonl")
            return sorted(self.spill_dir.glob(f"replay-{pid}-*.jsonl"))
        except OSError:
            return []

    def _claim_leftovers(self) -> None:
        """Take over the spill files of processes that are gone (another worker may race for them: the rename
        decides; the loser finds the file gone and skips it)."""
        try:
            found = sorted([*self.spill_dir.glob("spill-*.jsonl"), *self.spill_dir.glob("replay-*.jsonl")])
        except OSError:
            found = []
        own_journal = None
        if self.journal_dir is not None:
            with contextlib.suppress(OSError):
                found += sorted(self.journal_dir.glob("journal-*.jsonl"))
            # not opened yet: a journal with this process's pid was left by an earlier run (pid 1 in a container)
            own_journal = self.journal_dir / f"journal-{os.getpid()}.jsonl"
        for n, path in enumerate(found):
            if path != own_journal and not _owner_gone(path.name):
                continue
            try:
                self.spill_dir.mkdir(parents=True, exist_ok=True)
            except OSError:
                return
            mine = self.spill_dir / f"replay-{os.getpid()}-{time.time_ns():020d}{n:04d}.jsonl"
            try:
                offset = path.with_suffix(".offset")
                os.replace(path, mine)
                if offset.exists():
                    os.replace(offset, mine.with_suffix(".offset"))
            except OSError:
                continue

    def _scan_leftovers(self) -> None:
        """Count the rows an earlier process left on disk: they are submitted, and replayed by the writer."""
        self._claim_leftovers()
        left = 0
        for path in self._replay_files():
            try:
                with path.open("rb") as f:
                    f.seek(_offset(path))
                    left += sum(1 for line in f if line.strip())
            except OSError:
                continue
        if left:
            log.warning(
                "recorder: %d row(s) left on disk in %s by an earlier run: replaying them", left, self.spill_dir
            )
        self._spilled += left
        self._submitted += left

    async def _replay(self) -> None:
        """Write every spilled row, file by file, batch by batch, remembering the progress after each batch."""
        for path in self._replay_files():
            offset = _offset(path)
            try:
                f = path.open("rb")
            except OSError as exc:
                log.error("recorder: cannot read spill file %s: %s", path, exc)
                continue
            with f:
                f.seek(offset)
                while True:
                    lines = [line for line in (f.readline() for _ in range(self.batch)) if line]
                    if not lines:
                        break
                    rows: list[Row] = []
                    for line in lines:
                        if not line.strip():
                            continue
                        row = self._parse(line)
                        if row is not None:
                            rows.append(row)
                    if rows and not await self._write(rows, replay=True):
                        return  # the database is unreachable and the recorder is closing: the rest stays on disk
                    offset = f.tell()
                    with contextlib.suppress(OSError):
                        path.with_suffix(".offset").write_text(str(offset))
                    done = sum(1 for line in lines if line.strip())
                    async with self._progress:
                        self._replayed += done
                        self._written += done
                        self._progress.notify_all()
            with contextlib.suppress(OSError):
                path.unlink()
                path.with_suffix(".offset").unlink(missing_ok=True)

    def _parse(self, line: bytes) -> Row | None:
        try:
            return _row(self._tables, _decode(line))
        except Exception as exc:  # a torn line (the disk filled up mid-write): kept, with the reason
            why = f"unreadable spilled row: {type(exc).__name__}: {exc}"
            log.error("recorder: %s", why)
            raw = line.decode("utf-8", "replace").strip()
            self._dead_raw(json.dumps({"table": None, "raw": raw, "error": why, "at": time.time()}), why)
            return None

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
        elif self._queue or self.spilled_pending:  # never started: write what was queued here
            await self._run()
        self._close_journal()

    # --- writer side --------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self.spilled_pending:  # caught up: now the rows that went to disk meanwhile
                    before = self._replayed
                    await self._replay()
                    if self._replayed == before:  # the spill directory cannot be read now: they stay on disk
                        if self._closing:
                            log.error("recorder: %d spilled row(s) stay in %s for the next start",
                                      self.spilled_pending, self.spill_dir)  # fmt: skip
                            return
                        await asyncio.sleep(1)
                    continue
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
            if not await self._write(rows):  # closing during an outage: what is left goes to disk
                self._queue.extendleft(reversed(rows))
                left = tuple(self._queue)
                if self._spill(left):
                    self._queue.clear()
                log.error("recorder: the database is unreachable at shutdown: %d record row(s) stay on disk in %s "
                          "for the next start", len(left), self.spill_dir)  # fmt: skip
                return
            async with self._progress:
                self._written += len(rows)
                self._progress.notify_all()
            self._journal_caught_up()
            if time.monotonic() >= self._next_purge:
                await self._purge_counted()

    async def _write(self, rows: list[Row], *, replay: bool = False) -> bool:
        """Write rows (a replay skips those already stored); a refused row goes to the dead-letter file. While
        the database is unreachable, wait for it; False when the recorder closes meanwhile (nothing written)."""
        attempts = 5
        attempt = 0
        while True:
            try:
                async with self.engine.begin() as conn:
                    todo = await _unwritten(conn, rows) if replay else rows
                    if todo:
                        await write_rows(conn, todo)
                self._database_back()
                self._on_written("written", len(todo))
                return True
            except Exception as exc:  # the database is down, locked, or one row is bad
                if not _permanent(exc) and not await self._reachable():
                    self._database_down(exc)
                    if self._closing:
                        return False
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                    attempt = min(attempt + 1, 8)
                    continue
                log.warning("recorder: writing %d row(s) failed (attempt %d): %s", len(rows), attempt + 1, exc)
                if len(rows) > 1:
                    break  # find the bad row(s) one by one
                if _permanent(exc):
                    self._dead(rows[0], f"{type(exc).__name__}: {exc}")
                    return True
                attempt += 1
                if attempt >= attempts:
                    self._dead(rows[0], f"gave up after {attempts} attempts: {type(exc).__name__}: {exc}")
                    return True
                await asyncio.sleep(min(0.1 * 2 ** (attempt - 1), 2.0))
        for row in rows:
            if not await self._write([row], replay=replay):
                return False
        return True

    async def _purge_counted(self) -> None:
        """Forget the `counted_rows` ids older than COUNTED_KEEP (a journal or spill file is replayed at the next
        start, long before), a batch per transaction, at most every PURGE_EVERY seconds, in the writer's turn."""
        self._next_purge = time.monotonic() + PURGE_EVERY
        old = select(counted_rows.c.id).where(counted_rows.c.at < time.time() - COUNTED_KEEP).limit(PURGE_BATCH)
        try:
            while True:
                async with self.engine.begin() as conn:
                    gone = (await conn.execute(delete(counted_rows).where(counted_rows.c.id.in_(old)))).rowcount
                if gone < PURGE_BATCH:
                    return
                await asyncio.sleep(0)  # the queue's batches go between
        except Exception as exc:  # a statistic's bookkeeping: tried again at the next turn
            log.warning("recorder: old counted-row ids could not be purged: %s", exc)

    async def _reachable(self) -> bool:
        """Whether the database answers at all (a failed write is then the rows' fault, not an outage)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def _database_down(self, exc: Exception) -> None:
        if self._outage_since is None:  # one line per outage, not one per batch
            self._outage_since = time.monotonic()
            log.error("recorder: the database is unreachable (%s: %s); records wait in memory and on disk "
                      "until it is back", type(exc).__name__, exc)  # fmt: skip

    def _database_back(self) -> None:
        if self._outage_since is not None:
            log.warning("recorder: the database is back after %.1f s; writing the records that waited",
                        time.monotonic() - self._outage_since)  # fmt: skip
            self._outage_since = None

    def _dead(self, row: Row, why: str) -> None:
        entry = json.dumps(
            {"table": row.table.name, "values": dict(row.values), "error": why, "at": time.time()}
            | ({"meter_only": True} if row.meter_only else {})
            | ({"once": row.once} if row.once is not None else {}),
            default=str,
        )
        log.error("recorder: row for %s written to %s: %s", row.table.name, self.dead_letter, why)
        self._dead_raw(entry, why)

    def _dead_raw(self, entry: str, why: str) -> None:
        self.failed_rows += 1
        self._on_written("dead_letter", 1)
        try:
            self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
            with self.dead_letter.open("a", encoding="utf-8") as f:
                f.write(entry + "\n")
        except OSError as exc:  # the writer must go on: the row is kept in the log instead
            log.critical("recorder: cannot append to %s (%s); the row: %s", self.dead_letter, exc, entry)


def _offset(path: Path) -> int:
    """How far an earlier replay of this spill file got (bytes), 0 if it never started."""
    try:
        return int(path.with_suffix(".offset").read_text() or 0)
    except (OSError, ValueError):
        return 0


async def replay_dead_letters(
    engine: AsyncEngine, dead_letter: Path, tables: Mapping[str, Table] | None = None
) -> tuple[int, int]:
    """Write the rows of the dead-letter file that the database takes now (rows that only met an outage, or a
    value since fixed); (written, kept). Rows already stored are skipped; the rows refused again, and lines
    that are not rows, go back to the file with the new reason. The file is claimed by renaming it first, so
    two processes starting together never replay it twice."""
    if tables is None:
        from promptd.store.tables import metadata

        tables = metadata.tables
    claimed = dead_letter.with_name(f"{dead_letter.stem}.replaying-{os.getpid()}{dead_letter.suffix}")
    try:
        os.replace(dead_letter, claimed)
    except FileNotFoundError:
        return 0, 0
    written, kept = 0, []
    with claimed.open(encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    for line in lines:
        try:
            entry = json.loads(line)
            row = _row(tables, entry)
        except Exception:  # a torn line, or a raw one kept from an unreadable spill: stays as it is
            kept.append(line.rstrip("\n"))
            continue
        try:
            async with engine.begin() as conn:
                todo = await _unwritten(conn, [row])
                if todo:
                    await write_rows(conn, todo)
            written += 1
        except Exception as exc:
            entry.update(error=f"{type(exc).__name__}: {exc}", at=time.time())
            kept.append(json.dumps(entry, default=str))
    if kept:
        with dead_letter.open("a", encoding="utf-8") as out:
            out.write("".join(k + "\n" for k in kept))
    claimed.unlink()
    if written or kept:
        log.warning(
            "recorder: dead letters replayed from %s: %d row(s) written, %d kept", dead_letter, written, len(kept)
        )
    return written, len(kept)
