"""One-command benchmark: the same load against a mock upstream directly, through promptd (both faces) and,
when it can be installed, through LiteLLM's proxy, all in one run so the ratios hold on a noisy machine.

    .venv/bin/python bench/run.py [--quick] [--no-litellm]

Scenarios (mock: 20 ms to first token; blocking: 16 chunks at once; streaming: 64 chunks 20 ms apart):
  1. added latency at concurrency 1: p50/p99, through minus direct;
  2. sustained requests/s at concurrency 64 (closed loop), with p99;
  3. streaming: time to first token and chunk-gap p99 at concurrency 1, and 256 concurrent streams (max gap);
  4. RSS of the promptd process idle and after the load; 5. start-up time (spawn to listening).
Writes bench/results/<time>.json, bench/results/<time>.png, and prints a markdown table.
Timings are figures, never test assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
LITELLM = Path(os.environ.get("LITELLM_VENV", "/tmp/promptd-bench-litellm"))
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 4  # LiteLLM refuses to start without a master key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return time.monotonic() - start
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


class Target:
    def __init__(self, name: str, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.name, self.url, self.body = name, url, json.dumps(body).encode()
        self.headers = {"Content-Type": "application/json", **headers}

    async def one(self, session: aiohttp.ClientSession) -> float:
        start = time.perf_counter()
        async with session.post(self.url, data=self.body, headers=self.headers) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{self.name}: HTTP {r.status}: {body[:300]!r}")
        return time.perf_counter() - start

    async def stream(self, session: aiohttp.ClientSession) -> tuple[float, list[float]]:
        """(time to the first content chunk, gaps between content chunks)."""
        start = time.perf_counter()
        times: list[float] = []
        async with session.post(self.url, data=self.body, headers=self.headers) as r:
            async for line in r.content:
                if not line.startswith(b"data: {"):
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    times.append(time.perf_counter())
        if not times:
            raise RuntimeError(f"{self.name}: no content chunk")
        return times[0] - start, [b - a for a, b in itertools.pairwise(times)]


async def closed_loop(target: Target, concurrency: int, *, requests: int = 0, seconds: float = 0) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds if seconds else None
    remaining = [requests]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
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
    }


async def streams(target: Target, concurrency: int, rounds: int) -> dict[str, Any]:
    ttfts: list[float] = []
    gaps: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one() -> None:
            nonlocal errors
            try:
                ttft, g = await target.stream(session)
                ttfts.append(ttft)
                gaps.extend(g)
            except Exception:
                errors += 1

        for _ in range(rounds):
            await asyncio.gather(*(one() for _ in range(concurrency)))
    return {
        "n": len(ttfts),
        "errors": errors,
        "ttft_p50_ms": pct(ttfts, 50) * 1000,
        "ttft_p99_ms": pct(ttfts, 99) * 1000,
        "gap_p99_ms": pct(gaps, 99) * 1000,
        "gap_max_ms": max(gaps, default=float("nan")) * 1000,
    }


def start_mock(ttft_ms: float, gap_ms: float, tokens: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "mock_upstream.py"),
            "--port",
            str(port),
            "--ttft-ms",
            str(ttft_ms),
            "--gap-ms",
            str(gap_ms),
            "--tokens",
            str(tokens),
        ]
    )
    wait_port(port)
    return proc, port


def start_promptd(mock_port: int, data: Path) -> tuple[subprocess.Popen[bytes], int, str, float]:
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
    startup = wait_port(port)
    return proc, port, key, startup


def start_litellm(mock_port: int, data: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """LiteLLM's proxy with its documented production settings, in its own virtual environment."""
    binary = LITELLM / "bin" / "litellm"
    if not binary.exists():
        print(f"installing LiteLLM's proxy into {LITELLM} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM)], check=True)
        done = subprocess.run([str(LITELLM / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=False)
        if done.returncode != 0 or not binary.exists():
            return None
    config = data / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        f"    litellm_params: {{model: openai/bench, api_base: 'http://127.0.0.1:{mock_port}/v1', api_key: bench}}\n"
        "litellm_settings: {set_verbose: false, json_logs: true}\n"
        f"general_settings: {{master_key: {LITELLM_KEY}, disable_spend_logs: true, disable_error_logs: true}}\n"
    )
    port = free_port()
    env = {**os.environ, "LITELLM_LOG": "ERROR"}
    proc = subprocess.Popen(
        [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=180)
        ready(f"http://127.0.0.1:{port}/chat/completions", LITELLM_KEY)
    except RuntimeError as exc:
        print(f"LiteLLM did not become ready: {exc}", file=sys.stderr)
        proc.kill()
        return None
    return proc, port


def ready(url: str, key: str, timeout: float = 120) -> None:
    """Wait until a real request succeeds (a listening port is not yet a ready proxy)."""
    import urllib.request

    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]}).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        req = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} never answered 200")


async def scenarios(quick: bool, litellm: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"c1": {}, "c64": {}, "stream": {}, "promptd": {}}
    n1, secs = (100, 3) if quick else (400, 10)
    mock, mock_port = start_mock(20, 0, 16)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, key, startup = start_promptd(mock_port, Path(tmp))
        peer = start_litellm(mock_port, Path(tmp)) if litellm else None
        try:
            await asyncio.sleep(1)
            out["promptd"]["startup_s"] = startup
            out["promptd"]["rss_idle_mb"] = rss_mb(proc.pid)
            messages = [{"role": "user", "content": "hi"}]
            targets = [
                Target(
                    "direct",
                    f"http://127.0.0.1:{mock_port}/v1/chat/completions",
                    {"model": "bench", "messages": messages, "stream": True},
                    {},
                ),
                Target(
                    "promptd (Dify face)",
                    f"http://127.0.0.1:{port}/v1/completion-messages",
                    {"inputs": {"query": "hi"}, "user": "bench"},
                    {"Authorization": f"Bearer {key}"},
                ),
                Target(
                    "promptd (chat face)",
                    f"http://127.0.0.1:{port}/api/v1/chat/completions",
                    {"model": "demo", "messages": messages},
                    {"Authorization": f"Bearer {key}"},
                ),
            ]
            if peer is not None:
                targets.append(
                    Target(
                        "LiteLLM proxy",
                        f"http://127.0.0.1:{peer[1]}/chat/completions",
                        {"model": "bench", "messages": messages},
                        {},
                    )
                )
            failed: dict[str, str] = {}
            for t in targets + targets:  # interleaved twice, so drift hits every system alike
                if t.name in failed:
                    continue
                try:
                    out["c1"].setdefault(t.name, []).append(await closed_loop(t, 1, requests=n1))
                except RuntimeError as exc:  # a peer that fails is a result too: report it, go on
                    failed[t.name] = str(exc)
            for t in targets:
                if t.name not in failed:
                    out["c64"][t.name] = await closed_loop(t, 64, seconds=secs)
            for name in failed:
                out["c1"].pop(name, None)
            out["failed"] = failed
            out["promptd"]["rss_after_load_mb"] = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
            if peer is not None:
                peer[0].terminate()
                peer[0].wait(30)
            mock.terminate()
            mock.wait(10)
    # streaming: 64 chunks 20 ms apart
    mock, mock_port = start_mock(20, 20, 64)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, key, _ = start_promptd(mock_port, Path(tmp))
        try:
            direct = Target(
                "direct",
                f"http://127.0.0.1:{mock_port}/v1/chat/completions",
                {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                {},
            )
            chat = Target(
                "promptd (chat face)",
                f"http://127.0.0.1:{port}/api/v1/chat/completions",
                {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                {"Authorization": f"Bearer {key}"},
            )
            for t in (direct, chat):
                out["stream"][t.name] = {
                    "c1": await streams(t, 1, 10 if quick else 40),
                    "c256": await streams(t, 256, 1),
                }
        finally:
            proc.terminate()
            proc.wait(30)
            mock.terminate()
            mock.wait(10)
    return out


async def soak(seconds: float) -> dict[str, Any]:
    """Steady load (concurrency 16, Dify face) for `seconds`; promptd's RSS sampled every 10 s."""
    mock, mock_port = start_mock(20, 0, 16)
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, key, _ = start_promptd(mock_port, Path(tmp))
        target = Target(
            "promptd (Dify face)",
            f"http://127.0.0.1:{port}/v1/completion-messages",
            {"inputs": {"query": "hi"}, "user": "bench"},
            {"Authorization": f"Bearer {key}"},
        )
        try:
            began = time.monotonic()
            load = asyncio.create_task(closed_loop(target, 16, seconds=seconds))
            while not load.done():
                samples.append((time.monotonic() - began, rss_mb(proc.pid)))
                await asyncio.wait({load}, timeout=10)
            result = load.result()
        finally:
            proc.terminate()
            proc.wait(30)
            mock.terminate()
            mock.wait(10)
    third = max(1, len(samples) // 3)
    early = statistics.fmean(r for _, r in samples[:third])
    late = statistics.fmean(r for _, r in samples[-third:])
    return {
        "seconds": seconds,
        "requests": result["n"],
        "errors": result["errors"],
        "rss_samples": samples,
        "rss_first_third_mb": early,
        "rss_last_third_mb": late,
        "growth_mb": late - early,
    }


def summarize(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    c1 = {
        name: {k: statistics.fmean(r[k] for r in runs) for k in ("p50_ms", "p99_ms")}
        for name, runs in raw["c1"].items()
    }
    c64, st, direct = raw["c64"], raw["stream"], "direct"
    summary: dict[str, Any] = {
        name: {
            "added_p50_ms_c1": c1[name]["p50_ms"] - c1[direct]["p50_ms"],
            "added_p99_ms_c1": c1[name]["p99_ms"] - c1[direct]["p99_ms"],
            "rps_c64": c64[name]["rps"],
            "rps_ratio_c64": c64[name]["rps"] / c64[direct]["rps"],
        }
        for name in c1
        if name != direct
    }
    chat = "promptd (chat face)"
    summary["stream"] = {
        "added_ttft_p99_ms_c1": st[chat]["c1"]["ttft_p99_ms"] - st[direct]["c1"]["ttft_p99_ms"],
        "gap_p99_ms_c1": st[chat]["c1"]["gap_p99_ms"],
        "c256_gap_max_ms": st[chat]["c256"]["gap_max_ms"],
        "c256_errors": st[chat]["c256"]["errors"],
    }
    summary["promptd"] = raw["promptd"]
    lines = [
        "| system | c=1 p50 ms | c=1 p99 ms | added p50 / p99 ms | c=64 req/s | ratio to direct | c=64 p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in c1:
        added = (
            ""
            if name == direct
            else (f"{summary[name]['added_p50_ms_c1']:.2f} / {summary[name]['added_p99_ms_c1']:.2f}")
        )
        ratio = "1" if name == direct else f"{summary[name]['rps_ratio_c64']:.0%}"
        lines.append(
            f"| {name} | {c1[name]['p50_ms']:.2f} | {c1[name]['p99_ms']:.2f} | {added} | "
            f"{c64[name]['rps']:.0f} | {ratio} | {c64[name]['p99_ms']:.1f} |"
        )
    s, p = summary["stream"], raw["promptd"]
    lines += [
        "",
        f"Streaming (64 chunks, 20 ms apart): added TTFT p99 at c=1 {s['added_ttft_p99_ms_c1']:.2f} ms; "
        f"chunk gap p99 {s['gap_p99_ms_c1']:.1f} ms; 256 concurrent streams: max gap "
        f"{s['c256_gap_max_ms']:.0f} ms, {s['c256_errors']} errors.",
        f"promptd RSS: {p['rss_idle_mb']:.0f} MB idle, {p['rss_after_load_mb']:.0f} MB after the load; "
        f"start-up {p['startup_s']:.2f} s.",
    ]
    for name, why in raw.get("failed", {}).items():
        lines.append(f"{name}: failed during the run: {why}")
    if "LiteLLM proxy" in c64:
        lines.append(
            f"promptd (chat face) / LiteLLM at c=64: "
            f"{c64[chat]['rps'] / max(c64['LiteLLM proxy']['rps'], 1e-9):.1f}x the requests/s."
        )
    return summary, "\n".join(lines)


def chart(raw: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(raw["c64"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.bar(names, [statistics.fmean(r["p50_ms"] for r in raw["c1"][n]) for n in names])
    a.set_title("latency at concurrency 1, p50 (ms)")
    b.bar(names, [raw["c64"][n]["rps"] for n in names])
    b.set_title("requests/s at concurrency 64")
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    fig.savefig(path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="only the RSS soak, for this long (600)")
    args = parser.parse_args()
    if args.soak:
        result = asyncio.run(soak(args.soak))
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / time.strftime("soak-%Y%m%d-%H%M%S.json")
        path.write_text(json.dumps(result, indent=2))
        print(
            f"soak {result['seconds']:.0f} s, {result['requests']} requests, {result['errors']} errors: RSS "
            f"{result['rss_first_third_mb']:.0f} MB (first third) → {result['rss_last_third_mb']:.0f} MB "
            f"(last third), growth {result['growth_mb']:+.1f} MB\nwritten to {path.relative_to(ROOT)}"
        )
        return
    raw = asyncio.run(scenarios(args.quick, not args.no_litellm))
    summary, table = summarize(raw)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    stem.with_suffix(".json").write_text(json.dumps({"summary": summary, "raw": raw, "cpus": os.cpu_count()}, indent=2))
    drawn = chart(raw, stem.with_suffix(".png"))
    print(table)
    print(f"\nwritten to {stem.relative_to(ROOT)}.json" + (" and .png" if drawn else ""))


if __name__ == "__main__":
    main()
