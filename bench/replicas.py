"""Two promptd replicas on one PostgreSQL and one Redis, behind a round-robin client, against a mock upstream.

    .venv/bin/python bench/replicas.py [--seconds 15] [--concurrency 64] [--workers 1]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/0]

The same closed-loop load goes, in interleaved rounds, to the mock directly (asked for one unstreamed reply,
as promptd asks it for a blocking answer), through the two replicas to a project without limits, and to one
whose rate limit and budget, and its key's rate limit and daily budget, are checked through Redis on every
request (set high enough never to refuse), so the cost of shared admission shows. For each, the replicas' own
CPU time per request (from /proc, every process of both replicas) and, for the limited one, the calls to
Redis for limits per request (the replicas' `promptd_limit_coordinator_calls`). Afterwards it checks that
every answered request is stored in PostgreSQL.
Prints a markdown table and writes bench/results/replicas-<time>.json. Figures, never test assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from run import LIMITED_KEY, cpu_seconds, database, free_port, pct, start_mock  # bench/run.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PROMPTD = [sys.executable, "-m", "promptd"]


def wait_http(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def load(
    urls: list[str], body: bytes, headers: dict[str, str], seconds: float, concurrency: int
) -> dict[str, Any]:
    """Closed loop: `concurrency` clients, each sending to the next URL in turn (round robin)."""
    latencies: list[float] = []
    ids: list[str] = []
    errors = 0
    stop = time.perf_counter() + seconds
    counter = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal errors, counter
            while time.perf_counter() < stop:
                url = urls[counter % len(urls)]
                counter += 1
                start = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        data = await r.read()
                        if r.status != 200:
                            errors += 1
                            continue
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)
                message_id = json.loads(data).get("message_id")
                if message_id:
                    ids.append(message_id)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "ids": ids,
    }


ROUNDS = 3


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one system, together: counts add up; percentiles are the median round's."""
    total = sum(p["requests"] for p in parts)
    by_p50 = sorted(parts, key=lambda p: p["p50_ms"])
    middle = by_p50[len(by_p50) // 2]
    return {
        "requests": total,
        "errors": sum(p["errors"] for p in parts),
        "rps": statistics.median(p["rps"] for p in parts),
        "p50_ms": middle["p50_ms"],
        "p99_ms": statistics.median(p["p99_ms"] for p in parts),
        "ids": [i for p in parts for i in p["ids"]],
        "cpu_ms_per_request": sum(p["cpu_s"] for p in parts) * 1000 / max(total, 1),
        "coordinator_calls_per_request": sum(p["coordinator_calls"] for p in parts) / max(total, 1),
    }


def catalog(mock_port: int) -> str:
    """Two identical projects on the mock: `open` without limits, `limited` with a rate limit and a budget that
    never refuse but are checked (and settled) in Redis on every request."""
    project = "{models: [m], prompt: 'Answer briefly: {{query}}', inputs: [{type: paragraph, variable: query}]"
    limits = "limits: {rpm: 100000000, tpm: 10000000000, cost_per_day: '1000000'}"
    return (
        "providers:\n"
        f"  mock: {{kind: openai, base_url: 'http://127.0.0.1:{mock_port}/v1', api_key: bench}}\n"
        "models:\n"
        "  m: {provider: mock, model: bench, max_tokens: 64, price: {input: '0.15', output: '0.60', unit: 1M}}\n"
        "projects:\n"
        f"  open: {project}}}\n"
        f"  limited: {project}, {limits}}}\n"
    )


def start_replicas(
    n: int, workers: int, config: Path, env: dict[str, str]
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    procs, urls = [], []
    for _ in range(n):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [*PROMPTD, "serve", "-c", str(config), "--port", str(port), "--workers", str(workers)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait_http(url + "/health")
    return procs, urls


async def stored(pg: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(pg)
    try:
        rows = await conn.fetch("SELECT id FROM messages WHERE id = ANY($1::varchar[])", ids)
        return len(rows)
    finally:
        await conn.close()


def coordinator_calls(urls: list[str]) -> float:
    """The replicas' calls to Redis for limits so far (each replica's /metrics; with workers, the one that
    answers)."""
    import urllib.request

    total = 0.0
    for url in urls:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("promptd_limit_coordinator_calls "):
                    total += float(line.split()[1])
    return total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    args = p.parse_args()

    mock, mock_port = start_mock(ttft_ms=20, gap_ms=0, tokens=16)
    db_name = "promptd_bench_" + uuid.uuid4().hex[:8]
    asyncio.run(database(args.postgres, db_name, True))
    pg = args.postgres.rsplit("/", 1)[0] + "/" + db_name
    results: dict[str, Any] = {"concurrency": args.concurrency, "seconds": args.seconds, "workers": args.workers}
    body = json.dumps({"inputs": {"query": "hello"}, "user": "bench"}).encode()
    direct = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hello"}]}).encode()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "catalog.yaml"
            config.write_text(catalog(mock_port))
            env = {
                **os.environ,
                "PROMPTD_DATABASE_URL": pg.replace("postgresql://", "postgresql+asyncpg://"),
                "PROMPTD_REDIS_URL": args.redis,
                "PROMPTD_REDIS_PREFIX": f"bench:{uuid.uuid4().hex}:",
                "PROMPTD_DATA_DIR": str(Path(tmp) / "data"),
            }
            keys = {
                project: subprocess.run(
                    [*PROMPTD, "keys", "create", "-c", str(config), "--project", project, *extra],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                for project, extra in (("open", []), ("limited", LIMITED_KEY))
            }
            procs, urls = start_replicas(2, args.workers, config, env)
            targets = {
                "direct": ([f"http://127.0.0.1:{mock_port}/v1/chat/completions"], direct, {}),
                "unlimited": ([u + "/v1/completion-messages" for u in urls], body, {"open": keys["open"]}),
                "limited": ([u + "/v1/completion-messages" for u in urls], body, {"limited": keys["limited"]}),
            }
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            try:
                for _ in range(ROUNDS):  # interleaved rounds: the machine's noise hits every system alike
                    for name, (target_urls, payload, key) in targets.items():
                        headers = {"Content-Type": "application/json"}
                        if key:
                            headers["Authorization"] = "Bearer " + next(iter(key.values()))
                        pids = [mock.pid] if name == "direct" else [p.pid for p in procs]
                        calls = coordinator_calls(urls)
                        cpu = sum(cpu_seconds(pid) for pid in pids)
                        part = asyncio.run(load(target_urls, payload, headers, args.seconds / ROUNDS, args.concurrency))
                        part["cpu_s"] = sum(cpu_seconds(pid) for pid in pids) - cpu
                        part["coordinator_calls"] = coordinator_calls(urls) - calls
                        runs[name].append(part)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(60)
            for name, parts in runs.items():
                merged = merge(parts)
                if name != "direct":
                    merged["stored"] = asyncio.run(stored(pg, merged["ids"]))
                results[name] = merged
    finally:
        mock.terminate()
        asyncio.run(database(args.postgres, db_name, False))

    base = results["direct"]["rps"]
    print(
        f"\nTwo replicas x {args.workers} worker(s), PostgreSQL + Redis, "
        f"c={args.concurrency}, {args.seconds:g} s each\n"
    )
    print(
        "| system | req/s | ratio to direct | p50 ms | p99 ms | errors | answered | stored | CPU ms per request "
        "| Redis calls for limits per request |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in ("direct", "unlimited", "limited"):
        r = results[name]
        label = {
            "direct": "mock directly",
            "unlimited": "2 replicas",
            "limited": "2 replicas, limited project and key (Redis)",
        }[name]
        stored_text = str(r.get("stored", "")) if name != "direct" else ""
        answered = str(r["requests"]) if name != "direct" else ""
        calls = f"{r['coordinator_calls_per_request']:.4f}" if name == "limited" else ""
        cpu = f"{r['cpu_ms_per_request']:.3f}" if name != "direct" else ""  # the replicas' CPU, not the mock's
        print(
            f"| {label} | {r['rps']:.0f} | {r['rps'] / base:.0%} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['errors']} | {answered} | {stored_text} | {cpu} | {calls} |"
        )
    for r in results.values():
        if isinstance(r, dict):
            r.pop("ids", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"replicas-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
