"""Leases: slices of shared counters held by this process, so that admission costs no I/O per request.

A counter (one bucket of a limit: a key's requests this minute, a project's cost today…) lives in the
coordinator. Instead of reserving each request there, this process reserves a *slice* of the counter (the same
all-or-nothing reservation, so slices never add up past the limit) and admits requests from it locally. A
request's settlement (the real usage replacing its reservation) moves numbers in this process only. A flusher
task sends, in one coordinator call every `flush_every` seconds, what this process owes (a call that used more
than it reserved) and what it gives back (the unused part of a slice not drawn on for `idle` seconds, which
includes the buckets of windows that ended). `aclose` gives everything back.

The slice asked for is what the request lacks plus this process's draw on the counter over the next `horizon`
seconds (measured since the last slice), at most 1/`share` of the limit. Slices are counted in the coordinator
before they are used, so limits hold exactly while it is up; a process may be refused while another holds an
unused slice (bounded by the slice, for at most `idle` seconds). See docs/design.md and docs/operations.md.

A slice is *refilled ahead*: once a draw leaves less than half of the last slice's share for what follows, a
background task leases the next one while requests go on drawing on what is left, so that under steady load no
request waits for the coordinator (each one that found its slice empty waited a round trip, and those behind it
the lock: at 1,000 requests/s a limited key cost twice the CPU it costs with the refill). What a process holds
unused stays under 1/`share` of the limit: a refill is the measured draw, capped so that it is. A refill the
coordinator refuses (the limit is near, or a budget must be seeded) or cannot make leaves the slice as it is:
the request that finds it empty leases as before, and is refused or seeded there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from promptd.coord.base import Coordinator, Refusal, Take

__all__ = ["Leases"]

log = logging.getLogger("promptd.admission")

HORIZON = 0.1  # a slice covers this process's draw over the next 100 ms...
SHARE = 16  # ...and at most 1/16 of the limit
FLUSH_EVERY = 0.05  # what is owed and given back goes to the coordinator in one call every 50 ms
IDLE = 0.5  # a slice not drawn on for 0.5 s is given back


@dataclass(slots=True)
class _Lease:
    ttl: int
    granted: int = 0  # what the coordinator counts for this process in this bucket
    used: int = 0  # what this process's requests hold of it (reservations, then real usage)
    drawn: int = 0  # drawn since `since`: the rate that sizes the next slice
    since: float = 0.0
    last: float = 0.0  # the last draw
    low: int = 0  # left unused below this, the slice is refilled ahead (half the last slice's extra)
    take: Take | None = None  # the counter's last Take: how to lease for it again (refills)


class Leases:
    def __init__(
        self,
        coordinator: Coordinator,
        *,
        horizon: float = HORIZON,
        share: int = SHARE,
        flush_every: float = FLUSH_EVERY,
        idle: float = IDLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.coordinator = coordinator
        self.horizon, self.share, self.flush_every, self.idle = horizon, share, flush_every, idle
        self.clock = clock
        self._leases: dict[str, _Lease] = {}
        self._owed: dict[str, tuple[int, int]] = {}  # bucket → (delta, ttl): settlements of slices given back
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._refill: asyncio.Task[None] | None = None
        self._closed = False
        self.round_trips = 0  # coordinator calls made (slices and flushes): what the design saves, observable

    def draw(self, draws: Sequence[tuple[str, int]]) -> bool:
        """Take every (bucket, amount) from the slices held, or nothing (no await: atomic in this process). The
        hot path: no coordinator, no Take objects."""
        leases = self._leases
        for key, amount in draws:
            if amount > 0:
                lease = leases.get(key)
                if lease is None or lease.granted - lease.used < amount:
                    return False
        now = self.clock()
        low = False
        for key, amount in draws:
            if amount > 0:
                lease = leases[key]
                lease.used += amount
                lease.drawn += amount
                lease.last = now
                low = low or lease.granted - lease.used < lease.low
        if low and self._refill is None and not self._closed:
            self._refill = asyncio.get_running_loop().create_task(self._refill_ahead(), name="promptd-lease-refill")
        return True

    def _extra(self, lease: _Lease | None, limit: int, now: float) -> int:
        """Beyond what a request lacks: this process's measured draw over the horizon, at most limit/share."""
        if lease is None or lease.drawn <= 0:
            return 0
        rate = lease.drawn / max(now - lease.since, 0.001)
        return max(0, min(limit // self.share, int(rate * self.horizon)))

    async def take(self, takes: Sequence[Take]) -> Refusal | None:
        """Admit from the slices held, or lease what is missing (all or nothing); a Refusal as the coordinator's
        `reserve` gives it (its index into `takes`)."""
        draws = [(t.key, t.amount) for t in takes]
        if self.draw(draws):
            return None
        async with self._lock:  # one lease call at a time: requests waiting here mostly find it done
            await self._give_back_previous(takes)
            while not self.draw(draws):  # again if requests drew on the slices while the lease call was out
                refusal = await self._lease(takes)
                if refusal is not None:
                    return refusal
        self._start_flusher()
        return None

    async def _give_back_previous(self, takes: Sequence[Take]) -> None:
        """A new minute: give back the unused part of the previous minute's slices first. A rolling minute still
        weighs the previous bucket, where an unused slice would count as if it had been used."""
        back: list[tuple[str, int, int]] = []
        for t in takes:
            lease = None if t.prev is None else self._leases.get(t.prev)
            if t.prev is not None and lease is not None and lease.granted > lease.used:
                back.append((t.prev, lease.used - lease.granted, lease.ttl))
        if back:
            await self._give_back(back)

    async def _give_back(self, back: list[tuple[str, int, int]], also: Sequence[tuple[str, int, int]] = ()) -> None:
        """Move (bucket, delta) of held slices to the coordinator, with `also` (what is owed). The slices change
        before the call, so that a give-back running meanwhile (flush, a new minute) never gives the same part
        back twice; they change back if the call fails."""
        for key, delta, _ in back:
            self._leases[key].granted += delta
        try:
            self.round_trips += 1
            await self.coordinator.add([*also, *back])
        except BaseException:
            for key, delta, _ in back:
                if key in self._leases:
                    self._leases[key].granted -= delta
            raise

    async def _lease(self, takes: Sequence[Take]) -> Refusal | None:
        """Lease what the slices held lack for `takes`, with a slice more for what follows (all or nothing)."""
        now = self.clock()
        short: list[tuple[int, Take, int]] = []  # (index in takes, take, amount lacking)
        wanted: list[Take] = []
        for i, t in enumerate(takes):
            lease = self._leases.get(t.key)
            have = 0 if lease is None else lease.granted - lease.used
            if t.amount <= 0 or have >= t.amount:
                continue
            lacking = t.amount - have  # an overdraw (have < 0) is leased back too: the slice then covers the request
            short.append((i, t, lacking))
            wanted.append(dataclasses.replace(t, amount=lacking + self._extra(lease, t.limit, now)))
        grants = wanted
        self.round_trips += 1
        refusal = await self.coordinator.reserve(wanted)
        if refusal is not None and not refusal.needs_seed and wanted[refusal.index].amount > short[refusal.index][2]:
            grants = [dataclasses.replace(t, amount=lacking) for _, t, lacking in short]  # just what is lacking
            self.round_trips += 1
            refusal = await self.coordinator.reserve(grants)
        if refusal is not None:
            return dataclasses.replace(refusal, index=short[refusal.index][0])
        for (_, t, _), grant in zip(short, grants, strict=True):
            lease = self._leases.get(t.key)
            if lease is None:
                lease = self._leases[t.key] = _Lease(t.ttl, since=now, last=now)
            else:
                lease.drawn, lease.since = 0, now
            lease.granted += grant.amount
            lease.low, lease.take = (grant.amount - lacking) // 2, t
        return None

    async def _refill_ahead(self) -> None:
        """Lease the next slice of every counter running low (see the module), one coordinator call for them all."""
        try:
            async with self._lock:
                now = self.clock()
                wanted: list[Take] = []
                for lease in self._leases.values():
                    have = lease.granted - lease.used
                    if lease.take is None or have >= lease.low:
                        continue
                    amount = min(self._extra(lease, lease.take.limit, now), lease.take.limit // self.share - have)
                    if amount > 0:
                        wanted.append(dataclasses.replace(lease.take, amount=amount))
                if not wanted:
                    return
                self.round_trips += 1
                if await self.coordinator.reserve(wanted) is not None:
                    return  # refused (or to be seeded): the request that finds the slice empty leases itself
                for t in wanted:
                    held = self._leases.get(t.key)
                    if held is None:  # given back meanwhile (idle): the coordinator's count must not keep it
                        self._owed[t.key] = (self._owed.get(t.key, (0, t.ttl))[0] - t.amount, t.ttl)
                        self._start_flusher()
                        continue
                    held.granted += t.amount
                    held.drawn, held.since, held.low = 0, now, t.amount // 2
        except Exception as exc:  # the coordinator unreachable: the slow path meets it, and says so
            log.debug("limits: a slice could not be refilled ahead (%s)", exc)
        finally:
            self._refill = None

    def settle(self, buckets: Sequence[tuple[str, int, int]]) -> None:
        """Add (bucket, delta, ttl) to this process's usage: a refund makes room in the slice held, an overdraw
        is owed; for a slice already given back, the delta goes to the coordinator at the next flush."""
        for key, delta, ttl in buckets:
            lease = self._leases.get(key)
            if lease is not None:
                lease.used += delta
            else:
                owed, _ = self._owed.get(key, (0, ttl))
                self._owed[key] = (owed + delta, ttl)
        if buckets:
            self._start_flusher()

    def _start_flusher(self) -> None:
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="promptd-leases")

    async def _flush_loop(self) -> None:
        failing = False
        while not self._closed:
            await asyncio.sleep(self.flush_every)
            try:
                await self.flush()
            except Exception as exc:  # the coordinator is unreachable: what was leased stays counted there
                if not failing:
                    log.error("limits: cannot give back or settle slices (%s); retrying", exc)
                failing = True
            else:
                if failing:
                    log.warning("limits: slices settled again")
                failing = False
            if not self._leases and not self._owed:  # nothing held: no more wake-ups until something is
                self._flusher = None
                return

    async def flush(self, *, everything: bool = False) -> None:
        """One coordinator call: what is owed, and the unused part of idle slices (of all, with `everything`)."""
        now = self.clock()
        owed, self._owed = self._owed, {}
        items: list[tuple[str, int, int]] = [(k, d, ttl) for k, (d, ttl) in owed.items() if d]
        held: list[tuple[str, int, int]] = []
        for key, lease in self._leases.items():
            if lease.used > lease.granted:  # an overdraw: owed now
                held.append((key, lease.used - lease.granted, lease.ttl))
            elif lease.granted > lease.used and (everything or now - lease.last >= self.idle):
                held.append((key, lease.used - lease.granted, lease.ttl))  # given back
        if items or held:
            try:
                await self._give_back(held, items)
            except BaseException:
                for key, (delta, ttl) in owed.items():  # owed again, with what was settled meanwhile
                    again, _ = self._owed.get(key, (0, ttl))
                    self._owed[key] = (again + delta, ttl)
                raise
        for key in [k for k, lease in self._leases.items() if lease.granted == lease.used]:
            if everything or now - self._leases[key].last >= self.idle:
                del self._leases[key]

    async def aclose(self) -> None:
        """Give every slice back (graceful shutdown), after the settlements made so far."""
        self._closed = True
        if self._refill is not None:  # a lease call in flight: what it grants is given back below
            with contextlib.suppress(Exception):
                await self._refill
        if self._flusher is not None:  # it ends after its current sleep (never cut in the middle of a call)
            with contextlib.suppress(Exception):
                await self._flusher
            self._flusher = None
        try:
            await self.flush(everything=True)
        except Exception as exc:
            log.error(
                "limits: could not give back slices at shutdown (%s); they stay counted until their window ends", exc
            )
