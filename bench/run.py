"""One-command benchmark: the same load against the mock upstream directly and through promptd, in one run.

    .venv/bin/python bench/run.py [--quick]

Scenarios (mock: 20 ms to first token, 16 chunks):
  1. added latency at concurrency 1: p50/p99 through promptd minus direct;
  2. sustained requests/s at concurrency 64 (closed loop), with p99.
Writes bench/results/<time>.json and prints a markdown table. Timings are figures, never test assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Target:
    def __init__(self, name: str, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.name, self.url, self.body, self.headers = name, url, json.dumps(body).encode(), headers

    async def one(self, session: aiohttp.ClientSession) -> float:
        start = time.perf_counter()
        async with session.post(self.url, data=self.body, headers=self.headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{self.name}: HTTP {r.status}")
        return time.perf_counter() - start


async def closed_loop(target: Target, concurrency: int, *, requests: int = 0, seconds: float = 0) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds if seconds else None
    remaining = [requests]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(min(concurrency, 8)):  # warm up connections and code paths
            await target.one(session)

        async def worker() -> None:
            nonlocal errors
            while (deadline is None and remaining[0] > 0) or (deadline is not None and time.perf_counter() < deadline):
                remaining[0] -= 1
                try:
                    latencies.append(await target.one(session))
                except Exception:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "n": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def start_promptd(mock_port: int, data: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    catalog = data / "bench.yaml"
    catalog.write_text(
        "providers:\n"
        f"  mock: {{kind: openai, base_url: 'http://127.0.0.1:{mock_port}/v1', api_key: bench}}\n"
        "models:\n"
        "  m: {provider: mock, model: bench, price: {input: '0.15', output: '0.60', unit: 1M}}\n"
        "projects:\n"
        "  demo: {models: [m], prompt: 'Answer briefly: {{query}}', inputs: [{type: paragraph, variable: query}]}\n"
    )
    env = {**os.environ, "PROMPTD_CONFIG": str(catalog), "PROMPTD_DATA_DIR": str(data / "d")}
    promptd = [sys.executable, "-m", "promptd"]
    key = subprocess.run(
        [*promptd, "keys", "create", "--project", "demo"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [*promptd, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port, key


async def scenarios(quick: bool) -> dict[str, Any]:
    mock_port = free_port()
    mock = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "mock_upstream.py"),
            "--port",
            str(mock_port),
            "--ttft-ms",
            "20",
            "--tokens",
            "16",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        wait_port(mock_port)
        proc, port, key = start_promptd(mock_port, Path(tmp))
        try:
            direct = Target(
                "direct",
                f"http://127.0.0.1:{mock_port}/v1/chat/completions",
                {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                {"Content-Type": "application/json"},
            )
            dify = Target(
                "promptd (Dify face)",
                f"http://127.0.0.1:{port}/v1/completion-messages",
                {"inputs": {"query": "hi"}, "user": "bench"},
                {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            )
            n1 = 100 if quick else 400
            secs = 3 if quick else 10
            out: dict[str, Any] = {"c1": {}, "c64": {}}
            for t in (direct, dify, direct, dify):  # interleaved, so drift hits both alike
                out["c1"].setdefault(t.name, []).append(await closed_loop(t, 1, requests=n1))
            for t in (direct, dify):
                out["c64"][t.name] = await closed_loop(t, 64, seconds=secs)
            return out
        finally:
            proc.terminate()
            proc.wait(30)
            mock.terminate()
            mock.wait(10)


def summarize(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    c1 = {
        name: {k: statistics.fmean(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "rps")}
        for name, runs in raw["c1"].items()
    }
    d, p = c1["direct"], c1["promptd (Dify face)"]
    c64 = raw["c64"]
    summary = {
        "added_p50_ms_c1": p["p50_ms"] - d["p50_ms"],
        "added_p99_ms_c1": p["p99_ms"] - d["p99_ms"],
        "rps_ratio_c64": c64["promptd (Dify face)"]["rps"] / c64["direct"]["rps"],
    }
    lines = ["| system | c=1 p50 ms | c=1 p99 ms | c=64 req/s | c=64 p99 ms | errors |", "|---|---|---|---|---|---|"]
    for name in ("direct", "promptd (Dify face)"):
        lines.append(
            f"| {name} | {c1[name]['p50_ms']:.2f} | {c1[name]['p99_ms']:.2f} | {c64[name]['rps']:.0f} | "
            f"{c64[name]['p99_ms']:.1f} | {c64[name]['errors']} |"
        )
    lines.append("")
    lines.append(
        f"Added latency at c=1: p50 {summary['added_p50_ms_c1']:.2f} ms, p99 {summary['added_p99_ms_c1']:.2f} ms; "
        f"c=64 throughput {summary['rps_ratio_c64']:.0%} of direct."
    )
    return summary, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    args = parser.parse_args()
    raw = asyncio.run(scenarios(args.quick))
    summary, table = summarize(raw)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps({"summary": summary, "raw": raw, "cpus": os.cpu_count()}, indent=2))
    print(table)
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
