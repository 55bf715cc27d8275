"""Both coordinators keep the same contract: reservations are all or nothing, minute buckets slide, budgets ask
to be seeded, settlements add without a limit, stop signals reach every replica. The Redis one runs against the
real local Redis (PROMPTD_TEST_REDIS_URL; CI sets it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from promptd.coord.base import Coordinator, StopSignal, Take, build_coordinator


@pytest.fixture(params=["memory", "redis"])
async def coordinator(request: pytest.FixtureRequest, redis_url: str | None) -> AsyncIterator[Coordinator]:
    if request.param == "redis" and redis_url is None:
        pytest.skip("Redis not configured (set PROMPTD_TEST_REDIS_URL; CI does)")
    coord = build_coordinator(redis_url if request.param == "redis" else None, prefix=f"t:{uuid.uuid4().hex}:")
    await coord.start(lambda signal: None)
    yield coord
    await coord.aclose()


async def test_a_reservation_takes_everything_or_nothing(coordinator: Coordinator) -> None:
    a, b = Take("a", limit=10, amount=4, ttl=60), Take("b", limit=5, amount=4, ttl=60)
    assert await coordinator.reserve([a, b]) is None
    refusal = await coordinator.reserve([a, b])  # b would hold 8 > 5
    assert refusal is not None and refusal.index == 1 and refusal.used == 4 and not refusal.needs_seed
    assert await coordinator.reserve([Take("a", limit=10, amount=6, ttl=60)]) is None  # a still holds only 4
    assert await coordinator.reserve([Take("a", limit=10, amount=1, ttl=60)]) is not None


async def test_the_previous_minute_counts_by_its_remaining_share(coordinator: Coordinator) -> None:
    assert await coordinator.reserve([Take("m:1", limit=10, amount=10, ttl=60)]) is None
    half = Take("m:2", limit=10, amount=5, ttl=60, prev="m:1", prev_weight=0.5)  # 10 x 0.5 = 5 still counted
    assert await coordinator.reserve([half]) is None
    refusal = await coordinator.reserve([Take("m:2", limit=10, amount=1, ttl=60, prev="m:1", prev_weight=0.5)])
    assert refusal is not None and refusal.used == 10
    assert await coordinator.reserve([Take("m:2", limit=10, amount=5, ttl=60, prev="m:1", prev_weight=0.0)]) is None


async def test_a_budget_bucket_is_seeded_before_its_first_reservation(coordinator: Coordinator) -> None:
    budget = Take("cost:day", limit=100, amount=30, ttl=60, seeded=True)
    refusal = await coordinator.reserve([budget])
    assert refusal is not None and refusal.needs_seed and refusal.index == 0
    await coordinator.seed("cost:day", 60, 60)
    await coordinator.seed("cost:day", 0, 60)  # a later seed does not overwrite
    assert await coordinator.reserve([budget]) is None  # 60 + 30
    assert await coordinator.reserve([budget]) is not None  # 90 + 30 > 100


async def test_settling_adds_and_refunds_without_a_limit(coordinator: Coordinator) -> None:
    take = Take("t", limit=10, amount=10, ttl=60)
    assert await coordinator.reserve([take]) is None
    await coordinator.add([("t", -7, 60)])  # used 3 of the 10 reserved
    assert await coordinator.reserve([Take("t", limit=10, amount=7, ttl=60)]) is None
    await coordinator.add([("t", 5, 60)])  # a settlement may go over the limit
    refusal = await coordinator.reserve([Take("t", limit=10, amount=1, ttl=60)])
    assert refusal is not None and refusal.used == 15


async def test_large_budgets_in_pico_units_add_up(coordinator: Coordinator) -> None:
    big = 10**16  # 10,000 in pico-units: counters add integers; the comparison is exact to a few pico-units
    assert await coordinator.reserve([Take("big", limit=big, amount=big - 1000, ttl=60)]) is None
    assert await coordinator.reserve([Take("big", limit=big, amount=1010, ttl=60)]) is not None
    assert await coordinator.reserve([Take("big", limit=big, amount=1000, ttl=60)]) is None


async def test_a_stop_signal_reaches_every_replica(redis_url: str | None) -> None:
    if redis_url is None:
        pytest.skip("Redis not configured (set PROMPTD_TEST_REDIS_URL; CI does)")
    prefix = f"t:{uuid.uuid4().hex}:"
    a, b = build_coordinator(redis_url, prefix=prefix), build_coordinator(redis_url, prefix=prefix)
    got: list[StopSignal] = []
    arrived = asyncio.Event()

    def on_stop(signal: StopSignal) -> None:
        got.append(signal)
        arrived.set()

    await a.start(on_stop)
    await b.start(lambda signal: None)
    try:
        signal = StopSignal("task-1", "demo", "user-1")
        await b.publish_stop(signal)
        await asyncio.wait_for(arrived.wait(), 30)
        assert got == [signal]
    finally:
        await a.aclose()
        await b.aclose()
