"""The coordination interface: counters that reserve atomically, and stop signals that reach every replica.

`MemoryCoordinator` (memory.py) keeps both in this process: the default, right for one process. With a Redis
URL, `RedisCoordinator` (redis.py) keeps them in Redis, so limits, budgets and stop requests hold across
workers and replicas. Implementations are chosen by name from COORDINATORS (no if/elif on kinds).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "COORDINATORS",
    "Coordinator",
    "Refusal",
    "StopSignal",
    "Take",
    "build_coordinator",
    "load_coordinator_class",
]


@dataclass(frozen=True, slots=True)
class Take:
    """What one reservation draws on one counter.

    `key` is the counter's bucket for the current window. A rolling minute also reads the previous minute's
    bucket, `prev`, weighted by `prev_weight` (the share of it still inside the last 60 s): the sliding-window
    estimate. A calendar budget (`seeded`) must not start from zero when its bucket is missing (a restart,
    Redis flushed): the reservation then asks to be seeded from the store first."""

    key: str
    limit: int
    amount: int
    ttl: int  # seconds the bucket is kept after its last change
    prev: str | None = None
    prev_weight: float = 0.0
    seeded: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation was not taken: `takes[index]` would go over its limit (`used` is what it holds), or,
    with `needs_seed`, its bucket must first be seeded."""

    index: int
    used: float = 0.0
    needs_seed: bool = False


@dataclass(frozen=True, slots=True)
class StopSignal:
    """Stop the generation with this task id, if it belongs to this project and end user."""

    task_id: str
    project: str
    end_user_id: str | None


class Coordinator(Protocol):
    #: whether other processes see this state (Redis): a stop not found here may be running elsewhere
    shared: bool

    async def start(self, on_stop: Callable[[StopSignal], None]) -> None:
        """Connect, and call `on_stop` for every stop signal published by any replica (this one included)."""

    async def reserve(self, takes: Sequence[Take]) -> Refusal | None:
        """Atomically: if every take fits under its limit, add every amount and return None; else add nothing."""

    async def add(self, items: Sequence[tuple[str, int, int]]) -> None:
        """Add (key, delta, ttl) to counters that exist, without a limit: settling reservations to the real usage,
        giving back unused slices. A counter that is gone (its window ended, or Redis restarted) stays gone:
        a refund must not make it negative, and a budget's counter must be seeded from the store, not
        recreated from a settlement."""

    async def seed(self, key: str, value: int, ttl: int) -> None:
        """Set a counter that does not exist yet (two replicas seeding at once: the first one wins)."""

    async def publish_stop(self, signal: StopSignal) -> None:
        """Send a stop signal to every replica."""

    async def ping(self) -> None:
        """Raise when the shared state cannot be reached (readiness: GET /readyz)."""

    async def aclose(self) -> None: ...


#: coordinator implementations by name (import paths, loaded on demand)
COORDINATORS: dict[str, str] = {
    "memory": "promptd.coord.memory:MemoryCoordinator",
    "redis": "promptd.coord.redis:RedisCoordinator",
}


def load_coordinator_class(kind: str) -> type[Coordinator]:
    module, _, name = COORDINATORS[kind].partition(":")
    cls: type[Coordinator] = getattr(importlib.import_module(module), name)
    return cls


def build_coordinator(redis_url: str | None, *, prefix: str = "promptd:") -> Coordinator:
    """Redis when a URL is given, else this process's memory."""
    if redis_url:
        return load_coordinator_class("redis")(redis_url, prefix=prefix)  # type: ignore[call-arg]
    return load_coordinator_class("memory")()
