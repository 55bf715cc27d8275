"""How big a slice of a limit should a process lease? Admission alone, in this process, on the real Redis.

    .venv/bin/python bench/slices.py [--seconds 3] [--concurrency 64] [--redis redis://127.0.0.1:6379/0]

`--concurrency` clients each admit a request (a key with an RPM limit and a daily budget, and a project with
an RPM, TPM and daily budget: five counters), wait 20 ms as if the upstream answered, settle it, and go
again, for each lease horizon in turn (the slice covers this process's draw over that long; 0: exactly what
each request lacks, one Redis round trip per request as before leases). For each: requests/s, Redis calls
per request, this process's CPU per request (admission, settlement, the Redis client and the simulated
clients), and the largest unused part of a slice of the key's RPM held (in requests: what another replica
could be refused for, at most, while this one holds it). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from decimal import Decimal

import yaml

from promptd.catalog.load import parse_catalog
from promptd.coord.redis import RedisCoordinator
from promptd.domain.limits import Limits
from promptd.domain.pricing import price_usage
from promptd.engine.admission import Admission
from promptd.engine.leases import Leases
from promptd.engine.request import GenerationRequest, GenerationResult
from promptd.types import Message, Usage

CATALOG = """
providers: {mock: {kind: openai, base_url: 'http://127.0.0.1:9/v1', api_key: bench}}
models: {m: {provider: mock, model: bench, max_tokens: 64, price: {input: '0.15', output: '0.60', unit: 1M}}}
projects:
  p:
    models: [m]
    prompt: '{{query}}'
    inputs: [{type: paragraph, variable: query}]
    limits: {rpm: 100000000, tpm: 10000000000, cost_per_day: '1000000'}
"""
KEY = Limits(rpm=100_000_000, cost_per_day=Decimal(1_000_000))


async def spent(scope: str, ident: str, window: str, window_id: str) -> int:
    return 0


async def measure(redis: str, horizon: float, seconds: float, concurrency: int) -> dict[str, float]:
    catalog = parse_catalog(yaml.safe_load(CATALOG), {}, source="bench/slices.py")
    coordinator = RedisCoordinator(redis, prefix=f"bench-slices:{uuid.uuid4().hex}:")
    await coordinator.start(lambda signal: None)
    leases = Leases(coordinator, horizon=horizon)
    admission = Admission(catalog, coordinator, spent, leases=leases)
    usage = Usage(prompt_tokens=10, completion_tokens=16)
    cost = price_usage(usage, catalog.models["m"].price)
    done = 0
    held = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done, held
        while time.perf_counter() < stop:
            req = GenerationRequest("p", "m", [Message("user", "hello")], face="bench", key_id="k")
            await admission.admit([req], KEY)
            unused = (x.granted - x.used for k, x in leases._leases.items() if ":key:" in k and ":requests:" in k)
            held = max(held, *unused, 0)
            await asyncio.sleep(0.02)
            admission.settle(req, GenerationResult("", usage, cost, "normal", "stop", 0.02, 0.02))
            done += 1

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    await admission.aclose()
    await coordinator.aclose()
    return {
        "rps": done / elapsed,
        "calls_per_request": leases.round_trips / max(done, 1),
        "cpu_us": cpu * 1e6 / max(done, 1),
        "held_unused_max": held,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    args = p.parse_args()
    print("| horizon | req/s | Redis calls per request | CPU µs per request | largest unused RPM slice held |")
    print("|---|---|---|---|---|")
    for horizon in (0.0, 0.01, 0.1, 1.0):
        r = asyncio.run(measure(args.redis, horizon, args.seconds, args.concurrency))
        print(
            f"| {horizon * 1000:g} ms | {r['rps']:.0f} | {r['calls_per_request']:.4f} | {r['cpu_us']:.1f} "
            f"| {r['held_unused_max']} |"
        )


if __name__ == "__main__":
    main()
