"""Segments' hit counts (knowledge/hits.py): counted in memory, written in one statement per distinct count, and
kept when a write is cancelled at shutdown (the last flush writes them). `Store` stands for the knowledge store:
it keeps what it is asked to add, and can be made to hang mid-write."""

from __future__ import annotations

import asyncio
from collections import Counter

from promptd.knowledge.hits import HitCounter


class Store:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.hang = False

    async def add_hits(self, counts: dict[str, int]) -> None:
        if self.hang:
            await asyncio.Event().wait()  # never set: a write still under way when the shutdown comes
        self.hits.update(counts)


async def test_hits_are_summed_and_written_at_each_flush() -> None:
    store = Store()
    hits = HitCounter(store)  # type: ignore[arg-type]
    hits.add(["a", "b"])
    hits.add(["a"])
    await hits.flush()
    await hits.flush()  # nothing pending: nothing written twice
    assert store.hits == Counter({"a": 2, "b": 1})


async def test_a_write_cancelled_at_shutdown_keeps_its_counts_for_the_last_flush() -> None:
    store = Store()
    hits = HitCounter(store)  # type: ignore[arg-type]
    hits.add(["a", "a", "b"])
    store.hang = True
    writing = asyncio.create_task(hits.flush())
    await asyncio.sleep(0.01)
    writing.cancel()
    await asyncio.gather(writing, return_exceptions=True)
    store.hang = False
    await hits.aclose()
    assert store.hits == Counter({"a": 2, "b": 1})
