"""Leases on a real coordinator (this process's, and the local Redis when configured): slices sized by the
measured draw and capped by the limit's share, refunds that make room locally, unused slices given back when
idle and at shutdown, and what the coordinator counts always covering what was admitted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from promptd.coord.base import Coordinator, Take, build_coordinator
from promptd.engine.leases import Leases


class Clock:
    """A clock the test moves: idle slices are found by time, and the test must not sleep for it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def coordinator(request: pytest.FixtureRequest, redis_url: str | None) -> AsyncIterator[Coordinator]:
    if request.param == "redis" and redis_url is None:
        pytest.skip("Redis not configured (set PROMPTD_TEST_REDIS_URL; CI does)")
    coord = build_coordinator(redis_url if request.param == "redis" else None, prefix=f"t:{uuid.uuid4().hex}:")
    await coord.start(lambda signal: None)
    yield coord
    await coord.aclose()


async def counted(coordinator: Coordinator, key: str, limit: int) -> int:
    """What the coordinator counts on `key`: the largest amount a reservation can still take, from the limit."""
    low, high = 0, limit
    while low < high:  # the reservation that just fits tells the counter's value; it is given back at once
        mid = (low + high + 1) // 2
        if await coordinator.reserve([Take(key, limit, mid, 60)]) is None:
            await coordinator.add([(key, -mid, 60)])
            low = mid
        else:
            high = mid - 1
    return limit - low


async def test_the_first_slice_is_what_the_request_needs_and_later_ones_follow_the_draw(
    coordinator: Coordinator,
) -> None:
    clock = Clock()
    leases = Leases(coordinator, clock=clock, horizon=0.1, share=16, idle=0.5)
    take = Take("rpm", limit=1600, amount=1, ttl=60)
    assert await leases.take([take]) is None
    assert await counted(coordinator, "rpm", 1600) == 1  # nothing leased beyond the first request
    clock.now += 0.01  # one request in 10 ms: 100/s, so the next slice covers 10 more (100 ms of them)
    assert await leases.take([take]) is None
    assert await counted(coordinator, "rpm", 1600) == 1 + 1 + 10
    round_trips = leases.round_trips
    for _ in range(10):  # served from the slice held: no coordinator call
        assert await leases.take([take]) is None
    assert leases.round_trips == round_trips
    await leases.aclose()


async def test_a_slice_is_at_most_a_share_of_the_limit(coordinator: Coordinator) -> None:
    clock = Clock()
    leases = Leases(coordinator, clock=clock, horizon=10.0, share=16)
    take = Take("rpm", limit=160, amount=1, ttl=60)
    assert await leases.take([take]) is None
    clock.now += 0.001  # a huge measured rate: the slice is capped at 160 / 16
    assert await leases.take([take]) is None
    assert await counted(coordinator, "rpm", 160) == 1 + 1 + 10
    await leases.aclose()


async def test_two_processes_never_admit_past_the_limit_and_idle_slices_come_back(coordinator: Coordinator) -> None:
    clock = Clock()
    a = Leases(coordinator, clock=clock, horizon=10.0, share=4, idle=0.5)
    b = Leases(coordinator, clock=clock, horizon=10.0, share=4, idle=0.5)
    take = Take("rpm", limit=20, amount=1, ttl=60)
    admitted = {"a": 0, "b": 0}
    for _ in range(30):
        for name, leases in (("a", a), ("b", b)):
            if await leases.take([take]) is None:
                admitted[name] += 1
            clock.now += 0.001
    assert sum(admitted.values()) <= 20  # the limit holds across both
    assert sum(admitted.values()) >= 20 - 2 * (20 // 4)  # refused early by at most a slice per process
    assert await counted(coordinator, "rpm", 20) == 20
    clock.now += 1  # both idle: what they did not use goes back at the next flush
    await a.flush()
    await b.flush()
    assert await counted(coordinator, "rpm", 20) == sum(admitted.values())
    await a.aclose()
    await b.aclose()


async def test_settlements_refund_locally_and_the_owed_part_reaches_the_coordinator(coordinator: Coordinator) -> None:
    clock = Clock()
    leases = Leases(coordinator, clock=clock)
    take = Take("tpm", limit=100, amount=47, ttl=60)  # a reservation of 47 tokens...
    assert await leases.take([take]) is None
    leases.settle([("tpm", -44, 60)])  # ...that used 3: the 44 are this process's to admit from again
    assert await leases.take([Take("tpm", limit=100, amount=44, ttl=60)]) is None
    assert await counted(coordinator, "tpm", 100) == 47  # no coordinator call for it
    leases.settle([("tpm", 10, 60)])  # a call that used more than it reserved: owed at the next flush
    await leases.flush()
    assert await counted(coordinator, "tpm", 100) == 57
    await leases.aclose()  # everything unused goes back: the counter holds what was used
    assert await counted(coordinator, "tpm", 100) == 3 + 44 + 10


async def test_a_new_minute_gives_back_the_unused_part_of_the_previous_minutes_slice(
    coordinator: Coordinator,
) -> None:
    """A rolling minute weighs the previous minute's bucket: an unused slice left there would count as used, and
    refuse requests the limit allows (back to back, a slice is never idle long enough to be given back)."""
    leases = Leases(coordinator, clock=Clock())
    assert await leases.take([Take("tpm:1", limit=100, amount=47, ttl=130)]) is None
    leases.settle([("tpm:1", -44, 130)])  # used 3 of the 47 reserved: 44 of the slice unused
    new_minute = Take("tpm:2", limit=100, amount=60, ttl=130, prev="tpm:1", prev_weight=1.0)  # 3 + 60 fit; 47 + 60 not
    assert await leases.take([new_minute]) is None
    assert await counted(coordinator, "tpm:1", 100) == 3
    await leases.aclose()
    assert await counted(coordinator, "tpm:2", 100) == 60


async def test_a_refusal_leases_nothing_and_names_the_counter(coordinator: Coordinator) -> None:
    leases = Leases(coordinator)
    takes = [Take("a", limit=10, amount=4, ttl=60), Take("b", limit=5, amount=6, ttl=60)]
    refusal = await leases.take(takes)
    assert refusal is not None and refusal.index == 1
    assert await counted(coordinator, "a", 10) == 0
    await leases.aclose()


async def test_a_budget_asks_to_be_seeded_through_its_slice(coordinator: Coordinator) -> None:
    leases = Leases(coordinator)
    budget = Take("cost:day", limit=100, amount=30, ttl=60, seeded=True)
    refusal = await leases.take([budget])
    assert refusal is not None and refusal.needs_seed
    await coordinator.seed("cost:day", 60, 60)
    assert await leases.take([budget]) is None
    refusal = await leases.take([budget])
    assert refusal is not None and not refusal.needs_seed
    await leases.aclose()


async def test_giving_back_to_a_counter_that_is_gone_leaves_it_gone(coordinator: Coordinator) -> None:
    """A refund after a Redis restart (or a window's end) must not create a negative counter, nor a budget
    counter that would then skip its seeding from the store."""
    await coordinator.add([("gone", -5, 60), ("gone-budget", 7, 60)])
    assert await coordinator.reserve([Take("gone", limit=10, amount=11, ttl=60)]) is not None  # not -5
    refusal = await coordinator.reserve([Take("gone-budget", limit=10, amount=1, ttl=60, seeded=True)])
    assert refusal is not None and refusal.needs_seed


async def test_after_an_overdraw_one_lease_call_covers_the_next_request(coordinator: Coordinator) -> None:
    leases = Leases(coordinator, clock=Clock())
    assert await leases.take([Take("tpm", limit=1000, amount=10, ttl=60)]) is None
    leases.settle([("tpm", 15, 60)])  # the call used 15 more than its 10 reserved: this process owes 15
    calls = leases.round_trips
    assert await leases.take([Take("tpm", limit=1000, amount=10, ttl=60)]) is None
    assert leases.round_trips == calls + 1
    await leases.aclose()
    assert await counted(coordinator, "tpm", 1000) == 10 + 15 + 10  # what was used, nothing more, nothing less


async def test_the_flusher_gives_idle_slices_back_by_itself_and_then_stops(coordinator: Coordinator) -> None:
    leases = Leases(coordinator, flush_every=0.01, idle=0.0)
    assert await leases.take([Take("rpm", limit=100, amount=1, ttl=60)]) is None
    leases.settle([("gone", -3, 60)])  # a refund for a slice no longer held: sent as it is (the counter is gone)
    for _ in range(3000):  # the flusher ends on its own once nothing is held (30 s at most, to bound the wait)
        if leases._flusher is None:
            break
        await asyncio.sleep(0.01)
    assert leases._flusher is None and not leases._leases and not leases._owed
    assert await counted(coordinator, "rpm", 100) == 1
    await leases.aclose()


async def refilled(leases: Leases, round_trips: int) -> None:
    """Until the background refill has made its coordinator call (it runs when the test's task yields)."""
    for _ in range(1000):
        if leases.round_trips > round_trips:
            break
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)  # and applied what it got


async def test_a_slice_running_low_is_refilled_ahead_while_requests_draw_on_the_rest(
    coordinator: Coordinator,
) -> None:
    clock = Clock()
    leases = Leases(coordinator, clock=clock, horizon=0.1, share=16, idle=0.5)
    take = Take("rpm", limit=1600, amount=1, ttl=60)
    assert await leases.take([take]) is None
    clock.now += 0.01
    assert await leases.take([take]) is None  # a slice of 10 more, refilled ahead under 5
    assert await counted(coordinator, "rpm", 1600) == 12
    round_trips = leases.round_trips
    for _ in range(6):  # 100/s again; the sixth leaves 4 of the 10: the next slice is leased in the background
        clock.now += 0.01
        assert leases.draw([("rpm", 1)])  # every request served from what is held, none waiting
    await refilled(leases, round_trips)
    assert leases.round_trips == round_trips + 1
    # the draw since the last slice (its own request and these 6, in 60 ms) over the next 100 ms: 11
    assert await counted(coordinator, "rpm", 1600) == 12 + 11
    for _ in range(9):  # 4 + 11 held: these never reach the coordinator, and leave more than half of the refill
        assert leases.draw([("rpm", 1)])
    await asyncio.sleep(0.01)
    assert leases.round_trips == round_trips + 1
    await leases.aclose()
    assert await counted(coordinator, "rpm", 1600) == 2 + 6 + 9  # what was admitted, the rest given back


async def test_a_refill_the_coordinator_refuses_leaves_the_limit_exact(coordinator: Coordinator) -> None:
    clock = Clock()
    leases = Leases(coordinator, clock=clock, horizon=0.1, share=2, idle=0.5)
    take = Take("rpm", limit=24, amount=1, ttl=60)
    assert await leases.take([take]) is None
    clock.now += 0.01
    assert await leases.take([take]) is None  # 12 counted: 2 admitted, 10 held
    assert await coordinator.reserve([Take("rpm", 24, 12, 60)]) is None  # another process takes the rest
    round_trips = leases.round_trips
    for _ in range(6):  # the refill asked for is refused: the limit is reached
        clock.now += 0.01
        assert leases.draw([("rpm", 1)])
    await refilled(leases, round_trips)
    assert await counted(coordinator, "rpm", 24) == 24
    for _ in range(4):  # what is still held
        assert await leases.take([take]) is None
    refusal = await leases.take([take])
    assert refusal is not None and refusal.index == 0  # the 25th request: refused where it leases
    await leases.aclose()
    assert await counted(coordinator, "rpm", 24) == 24


async def test_shutdown_waits_for_a_refill_in_flight_and_gives_it_back(coordinator: Coordinator) -> None:
    clock = Clock()
    leases = Leases(coordinator, clock=clock, horizon=0.1, share=16, idle=0.5)
    take = Take("rpm", limit=1600, amount=1, ttl=60)
    assert await leases.take([take]) is None
    clock.now += 0.01
    assert await leases.take([take]) is None
    for _ in range(6):
        clock.now += 0.01
        assert leases.draw([("rpm", 1)])  # the refill is scheduled, not yet run
    await leases.aclose()
    assert await counted(coordinator, "rpm", 1600) == 8  # every slice back, the refill's included
