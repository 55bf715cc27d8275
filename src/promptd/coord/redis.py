"""Counters and stop signals in Redis, shared by every worker and replica that uses the same Redis.

A reservation is one Lua script (check every counter, then add to all or none), so concurrent requests on
different replicas cannot both take the last of a budget (admission reserves slices of counters this way,
engine/leases.py, not each request). Stop signals go over a pub/sub channel; each replica
stops the generation if it runs it. Keys are prefixed (settings.redis_prefix) so several deployments, or tests,
can share one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from promptd.coord.base import Refusal, StopSignal, Take

__all__ = ["RedisCoordinator"]

log = logging.getLogger("promptd.coord")

# KEYS: per take i (1-based): KEYS[2i-1] its bucket, KEYS[2i] its previous minute (the bucket again if none)
# ARGV: per take, 4 values from ARGV[4(i-1)+1]: limit, amount, ttl, weight (of prev; -1: a seeded budget)
RESERVE = """
local n = #KEYS / 2
for i = 1, n do
  local b = 4 * (i - 1)
  local limit = tonumber(ARGV[b + 1])
  local amount = tonumber(ARGV[b + 2])
  local weight = tonumber(ARGV[b + 4])
  local current = redis.call('GET', KEYS[2 * i - 1])
  if (not current) and weight < 0 then
    return {-i, '0'}
  end
  local used = tonumber(current or '0')
  if weight > 0 then
    used = used + weight * tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  end
  if amount > 0 and used + amount > limit then
    return {i, tostring(used)}
  end
end
for i = 1, n do
  local b = 4 * (i - 1)
  redis.call('INCRBY', KEYS[2 * i - 1], ARGV[b + 2])
  redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[b + 3])
end
return {0, '0'}
"""

ADD = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
    redis.call('EXPIRE', KEYS[i], ARGV[2 * i])
  end
end
return 0
"""


class RedisCoordinator:
    shared = True

    def __init__(self, url: str, *, prefix: str = "promptd:") -> None:
        self.url = url
        self.prefix = prefix
        self.channel = prefix + "stop"
        self._redis: aioredis.Redis = aioredis.from_url(url, decode_responses=True)
        self._reserve = self._redis.register_script(RESERVE)
        self._add = self._redis.register_script(ADD)
        self._listener: asyncio.Task[None] | None = None

    async def start(self, on_stop: Callable[[StopSignal], None]) -> None:
        await self._redis.ping()  # fail at start, not on the first request, when Redis is unreachable
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        self._listener = asyncio.create_task(self._listen(pubsub, on_stop), name="promptd-stop-listener")

    async def _listen(self, pubsub: Any, on_stop: Callable[[StopSignal], None]) -> None:
        try:
            while True:
                try:
                    message = await pubsub.get_message(timeout=5.0)
                except (ConnectionError, aioredis.ConnectionError) as exc:
                    log.warning("redis: stop-signal subscription lost (%s); resubscribing", exc)
                    await asyncio.sleep(1)
                    with contextlib.suppress(Exception):
                        await pubsub.subscribe(self.channel)
                    continue
                if message is None:
                    continue
                try:
                    data = json.loads(message["data"])
                    on_stop(StopSignal(data["task_id"], data["project"], data.get("end_user_id")))
                except Exception:
                    log.warning("redis: ignoring a malformed stop signal %r", message, exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def reserve(self, takes: Sequence[Take]) -> Refusal | None:
        keys: list[str] = []
        args: list[Any] = []
        for t in takes:
            keys += [self._k(t.key), self._k(t.prev or t.key)]
            weight = -1.0 if t.seeded else (t.prev_weight if t.prev else 0.0)
            args += [t.limit, t.amount, t.ttl, repr(weight)]
        index, used = await self._reserve(keys=keys, args=args)
        index = int(index)
        if index == 0:
            return None
        if index < 0:
            return Refusal(-index - 1, needs_seed=True)
        return Refusal(index - 1, float(used))

    async def add(self, items: Sequence[tuple[str, int, int]]) -> None:
        if not items:
            return
        args: list[Any] = []
        for _, delta, ttl in items:
            args += [delta, ttl]
        await self._add(keys=[self._k(key) for key, _, _ in items], args=args)

    async def seed(self, key: str, value: int, ttl: int) -> None:
        await self._redis.set(self._k(key), value, ex=ttl, nx=True)

    async def publish_stop(self, signal: StopSignal) -> None:
        body = {"task_id": signal.task_id, "project": signal.project, "end_user_id": signal.end_user_id}
        await self._redis.publish(self.channel, json.dumps(body))

    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()
