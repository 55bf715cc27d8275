"""Segments' `hit_count`: how many prompts each segment was retrieved for. Counted in memory as searches happen and
written in one statement per distinct count every `every` seconds, off the request path (and at shutdown), so a
search never waits for a write. A count that cannot be written is logged and dropped (it is a statistic)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable

from promptd.knowledge.store import KnowledgeStore

__all__ = ["HitCounter"]

log = logging.getLogger("promptd.knowledge")


class HitCounter:
    def __init__(self, store: KnowledgeStore, *, every: float = 1.0) -> None:
        self.store = store
        self.every = every
        self._pending: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    def add(self, segment_ids: Iterable[str]) -> None:
        self._pending.update(segment_ids)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="promptd-knowledge-hits")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        counts, self._pending = dict(self._pending), Counter()
        try:
            await self.store.add_hits(counts)
        except asyncio.CancelledError:  # shutting down mid-write: the last flush (aclose) writes them
            self._pending.update(counts)
            raise
        except Exception as exc:
            log.warning("knowledge: %d segment hit count(s) could not be written: %s", len(counts), exc)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
