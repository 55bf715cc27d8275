"""Counters and stop signals in this process: exact for one process, per worker when there are several."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from promptd.coord.base import Refusal, StopSignal, Take

__all__ = ["MemoryCoordinator"]


class MemoryCoordinator:
    shared = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires at)
        self._on_stop: Callable[[StopSignal], None] = lambda signal: None

    async def start(self, on_stop: Callable[[StopSignal], None]) -> None:
        self._on_stop = on_stop

    def _get(self, key: str, now: float) -> int | None:
        hit = self._counters.get(key)
        if hit is None:
            return None
        if hit[1] <= now:
            del self._counters[key]
            return None
        return hit[0]

    def _add(self, key: str, delta: int, ttl: int, now: float) -> None:
        self._counters[key] = ((self._get(key, now) or 0) + delta, now + ttl)
        if len(self._counters) > 100_000:  # expired buckets are dropped when read; sweep now and then
            for k in [k for k, (_, exp) in self._counters.items() if exp <= now]:
                del self._counters[k]

    async def reserve(self, takes: Sequence[Take]) -> Refusal | None:
        now = self._clock()
        # no await below: the event loop makes this check-and-add atomic within the process
        for i, take in enumerate(takes):
            current = self._get(take.key, now)
            if current is None and take.seeded:
                return Refusal(i, needs_seed=True)
            used: float = current or 0  # an int unless a previous minute is weighted in
            if take.prev is not None and take.prev_weight > 0:
                used += take.prev_weight * (self._get(take.prev, now) or 0)
            if take.amount > 0 and used + take.amount > take.limit:
                return Refusal(i, used)
        for take in takes:
            self._add(take.key, take.amount, take.ttl, now)
        return None

    async def add(self, items: Sequence[tuple[str, int, int]]) -> None:
        now = self._clock()
        for key, delta, ttl in items:
            if self._get(key, now) is not None:
                self._add(key, delta, ttl, now)

    async def seed(self, key: str, value: int, ttl: int) -> None:
        now = self._clock()
        if self._get(key, now) is None:
            self._counters[key] = (value, now + ttl)

    async def publish_stop(self, signal: StopSignal) -> None:
        self._on_stop(signal)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._counters.clear()
