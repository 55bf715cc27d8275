"""One-command benchmark: the same load against a mock upstream directly, through promptd (both faces) and
through LiteLLM's proxy, all in one run so the ratios hold on a noisy machine.

    .venv/bin/python bench/run.py [--quick] [--no-litellm] [--no-services] [--workers N] [--rate R]
    .venv/bin/python bench/run.py --soak 600

The direct baseline and the byte relay ask the mock for what promptd asks it for: one unstreamed reply in the
blocking scenarios, the stream in the streaming ones. Besides promptd on SQLite (both faces), the blocking
scenarios measure promptd on PostgreSQL without limits, and on PostgreSQL + Redis with a key that has a rate
limit and a daily budget set too high to refuse (BENCH_POSTGRES / BENCH_REDIS, default the local servers;
--no-services leaves these rows out). At c=64 each system's own CPU time per request is measured from
/proc/<pid>/stat (the process and its workers), the figure that shows a regression on a noisy machine.

Scenarios (blocking mock: 20 ms to first token, 16 chunks at once, or one reply after 20 ms when asked unstreamed
as promptd and LiteLLM ask for blocking answers; streaming mocks: 4 or 64 chunks 20 ms apart):
  1. added latency at concurrency 1: p50/p99, through minus direct;
  2. sustained requests/s at concurrency 64 and 256 (closed loop), with p99; and an open loop at a fixed rate
     (latency counted from when each request was due, so a system that falls behind shows it);
  3. streaming: time to first token and chunk-gap p99 at concurrency 1 (300 streams of 4 chunks), the largest
     number of concurrent streams (their starts spread over 1 s) that run without a stall (no gap between
     chunks over 100 ms, no error), and 256 streams all started at the same instant (a burst);
  4. RSS of every promptd worker idle and after the load (and, with --soak, its growth over a long run);
  5. start-up time (spawn to listening).
Writes bench/results/<time>.json, bench/results/<time>.png, and prints a markdown table.
Timings are figures, never test assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LITELLM = Path(os.environ.get("LITELLM_VENV", "/tmp/promptd-bench-litellm"))
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 4  # LiteLLM refuses to start without a master key
STALL_MS = 100  # a gap between two chunks longer than this is a stall
DIRECT, DIFY, CHAT, PEER = "direct", "promptd (Dify face)", "promptd (chat face)", "LiteLLM proxy"
RELAY = "byte relay (floor)"
PG = "promptd, PostgreSQL (Dify face)"
LIMITED = "promptd, PostgreSQL + Redis, limited key (Dify face)"
#: the same server as LIMITED, through a key without limits: what the limits themselves cost, all else equal
SHARED = "promptd, PostgreSQL + Redis, unlimited key (Dify face)"
SYSTEMS = (DIRECT, RELAY, DIFY, CHAT, PG, SHARED, LIMITED, PEER)
#: a key's limits checked on every request but set too high to refuse: a rate limit and a daily budget
LIMITED_KEY = ["--rpm", "100000000", "--cost-per-day", "1000000"]
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")


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
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def family(pid: int) -> list[int]:
    """The process and its descendants (a server with workers: the supervisor and each worker)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return out


def rss_all(pid: int) -> dict[str, float]:
    """RSS of the server process and of each of its workers, in MB."""
    pids = family(pid)
    return {"main": rss_mb(pid), **{f"worker-{i}": rss_mb(p) for i, p in enumerate(pids[1:], 1)}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and its descendants (its workers), from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in family(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
    return total


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


#: a non-empty `content` (OpenAI's chunk delta) or `answer` (Dify's `message` event): a regular expression rather
#: than a JSON parse per line, so the load generator stays light (it shares the machine with what it measures)
CONTENT = re.compile(rb'"(?:content|answer)": ?"[^"]')


def _content(line: bytes) -> bool:
    """Whether an SSE line carries answer text."""
    return line.startswith(b"data: {") and CONTENT.search(line) is not None


class Target:
    def __init__(
        self, name: str, url: str, body: dict[str, Any], headers: dict[str, str], pid: int | None = None
    ) -> None:
        self.name, self.url, self.body = name, url, json.dumps(body).encode()
        self.headers = {"Content-Type": "application/json", **headers}
        self.pid = pid  # the serving process, whose CPU time is measured (None: not measured)

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
            if r.status != 200:
                raise RuntimeError(f"{self.name}: HTTP {r.status}: {(await r.read())[:300]!r}")
            async for line in r.content:
                if _content(line):
                    times.append(time.perf_counter())
        if not times:
            raise RuntimeError(f"{self.name}: no content chunk")
        return times[0] - start, [b - a for a, b in itertools.pairwise(times)]


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """The load generator's own collector off while it measures (collected before): a full collection of this
    process is a pause every system measured meanwhile would be charged for."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextlib.asynccontextmanager
async def _session(limit: int) -> AsyncIterator[aiohttp.ClientSession]:
    """The load generator's client for one measurement (its collector off meanwhile)."""
    with no_gc_pauses():
        connector = aiohttp.TCPConnector(limit=limit)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            yield session


async def closed_loop(target: Target, concurrency: int, *, requests: int = 0, seconds: float = 0) -> dict[str, Any]:
    """`concurrency` clients, each sending its next request when the last one is answered."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds if seconds else None
    remaining = [requests]
    async with _session(concurrency) as session:
        for _ in range(min(concurrency, 8)):  # warm up connections and code paths (and fail fast)
            await target.one(session)

        async def worker() -> None:
            while (deadline is None and remaining[0] > 0) or (deadline is not None and time.perf_counter() < deadline):
                remaining[0] -= 1
                try:
                    latencies.append(await target.one(session))
                except Exception as exc:
                    errors.append(str(exc)[:200])

        cpu = None if target.pid is None else cpu_seconds(target.pid)
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        if cpu is not None and target.pid is not None:
            cpu = cpu_seconds(target.pid) - cpu
    return {
        "n": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "cpu_ms_per_request": None if cpu is None or not latencies else cpu * 1000 / len(latencies),
    }


async def open_loop(target: Target, rate: float, seconds: float) -> dict[str, Any]:
    """Requests sent at a fixed rate whatever the answers do; each latency counts from when the request was
    due (not when it could be sent), so queueing inside the system under test is not hidden."""
    latencies: list[float] = []
    errors = 0
    async with _session(4096) as session:
        for _ in range(8):
            await target.one(session)

        async def one(due: float) -> None:
            nonlocal errors
            try:
                async with session.post(target.url, data=target.body, headers=target.headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(r.status)
                latencies.append(time.perf_counter() - due)
            except Exception:
                errors += 1

        tasks: list[asyncio.Task[None]] = []
        began = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            due = began + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return {
        "rate": rate,
        "n": len(latencies),
        "errors": errors,
        "achieved_rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
    }


async def streams(
    target: Target, concurrency: int, rounds: int, ramp: float = 0, *, samples: bool = False
) -> dict[str, Any]:
    """`rounds` times `concurrency` streams; with `ramp`, their starts are spread evenly over that many seconds
    (a steady population of streams, as traffic brings them), else all start at once (a burst). With `samples`,
    the times themselves too (to pool several runs)."""
    ttfts: list[float] = []
    gaps: list[float] = []
    errors = 0
    async with _session(concurrency) as session:
        await target.stream(session)  # warm up

        async def one(i: int) -> None:
            nonlocal errors
            if ramp:
                await asyncio.sleep(ramp * i / concurrency)
            try:
                ttft, g = await target.stream(session)
                ttfts.append(ttft)
                gaps.extend(g)
            except Exception:
                errors += 1

        for _ in range(rounds):
            await asyncio.gather(*(one(i) for i in range(concurrency)))
    return {
        "n": len(ttfts),
        "errors": errors,
        "ttft_p50_ms": pct(ttfts, 50) * 1000,
        "ttft_p99_ms": pct(ttfts, 99) * 1000,
        "gap_p50_ms": pct(gaps, 50) * 1000,
        "gap_p99_ms": pct(gaps, 99) * 1000,
        "gap_max_ms": max(gaps, default=float("nan")) * 1000,
    } | ({"ttfts": ttfts, "gaps": gaps} if samples else {})


def start_mock(ttft_ms: float, gap_ms: float, tokens: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    script = str(ROOT / "bench" / "mock_upstream.py")
    args = ["--port", str(port), "--ttft-ms", str(ttft_ms), "--gap-ms", str(gap_ms), "--tokens", str(tokens)]
    proc = subprocess.Popen([sys.executable, script, *args])
    wait_port(port)
    return proc, port


def serve_supports_workers() -> bool:
    helped = subprocess.run([sys.executable, "-m", "promptd", "serve", "--help"], capture_output=True, text=True)
    return "--workers" in helped.stdout


def promptd_env(data: Path, env_extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a promptd whose catalog and data live in `data` (start_promptd)."""
    return {**os.environ, "PROMPTD_CONFIG": str(data / "bench.yaml"), "PROMPTD_DATA_DIR": str(data / "d"),
            **(env_extra or {})}  # fmt: skip


def create_key(data: Path, env_extra: dict[str, str] | None = None, key_args: Sequence[str] = ()) -> str:
    """A new API key of the demo project for the promptd in `data` (with `key_args`: its limits)."""
    env = promptd_env(data, env_extra)
    return subprocess.run(
        [env.get("BENCH_PYTHON") or sys.executable, "-m", "promptd", "keys", "create", "--project", "demo", *key_args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def start_promptd(
    mock_port: int,
    data: Path,
    workers: int = 1,
    *,
    env_extra: dict[str, str] | None = None,
    key_args: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], int, str, float]:
    data.mkdir(parents=True, exist_ok=True)
    catalog = data / "bench.yaml"
    catalog.write_text(
        "providers:\n"
        f"  mock: {{kind: openai, base_url: 'http://127.0.0.1:{mock_port}/v1', api_key: bench}}\n"
        "models:\n"
        "  m: {provider: mock, model: bench, price: {input: '0.15', output: '0.60', unit: 1M}}\n"
        "projects:\n"
        "  demo: {models: [m], prompt: 'Answer briefly: {{query}}', inputs: [{type: paragraph, variable: query}]}\n"
    )
    env = promptd_env(data, env_extra)
    promptd = [env.get("BENCH_PYTHON") or sys.executable, "-m", "promptd"]  # ab.py compares interpreters too
    key = create_key(data, env_extra, key_args)
    port = free_port()
    extra = ["--workers", str(workers)] if workers > 1 else []
    began = time.monotonic()
    proc = subprocess.Popen(
        [*promptd, "serve", "--port", str(port), "--log-level", "warning", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data / "promptd.log").open("wb"),
    )
    wait_port(port)
    startup = time.monotonic() - began
    return proc, port, key, startup


def install_litellm() -> str | None:
    """LiteLLM's proxy in its own virtual environment (with httptools, as promptd has: same HTTP parser)."""
    binary = LITELLM / "bin" / "litellm"
    if not binary.exists():
        print(f"installing LiteLLM's proxy into {LITELLM} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM)], check=True)
        done = subprocess.run([str(LITELLM / "bin" / "pip"), "install", "-q", "litellm[proxy]", "httptools"])
        if done.returncode != 0 or not binary.exists():
            return None
    shown = subprocess.run([str(LITELLM / "bin" / "pip"), "show", "litellm"], capture_output=True, text=True).stdout
    return next((line.split()[1] for line in shown.splitlines() if line.startswith("Version:")), "?")


def start_litellm(mock_port: int, data: Path, workers: int) -> tuple[subprocess.Popen[bytes], int] | str:
    """LiteLLM's proxy with the settings of its "Best Practices for Production" page: a master key, no debug
    logs (set_verbose false, LITELLM_LOG=ERROR, JSON logs), nothing written to a database (no database at
    all: spend and error logs off), a request timeout, one uvicorn worker per core given to the gateway. The
    local model-cost map is used, as this machine cannot fetch the remote one. Returns the process and port,
    or why it failed."""
    config = data / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        f"    litellm_params: {{model: openai/bench, api_base: 'http://127.0.0.1:{mock_port}/v1', api_key: bench}}\n"
        "litellm_settings: {set_verbose: false, json_logs: true, request_timeout: 600}\n"
        f"general_settings: {{master_key: {LITELLM_KEY}, disable_spend_logs: true, disable_error_logs: true}}\n"
    )
    port = free_port()
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    log = data / "litellm.log"
    command = [str(LITELLM / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--num_workers", str(workers)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, timeout=180)
        ready(f"http://127.0.0.1:{port}/chat/completions", LITELLM_KEY)
    except RuntimeError as exc:
        proc.kill()
        return f"{exc}; its log ends: {log.read_text(errors='replace')[-500:]}"
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


def start_relay(mock_port: int, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    script = str(ROOT / "bench" / "relay.py")
    args = ["--port", str(port), "--upstream-port", str(mock_port), "--workers", str(workers)]
    proc = subprocess.Popen([sys.executable, script, *args])
    wait_port(port)
    return proc, port


def targets(
    mock_port: int,
    port: int,
    key: str,
    peer_port: int | None,
    *,
    stream: bool,
    relay_port: int | None = None,
    pids: dict[str, int] | None = None,
    more: dict[str, tuple[int, str]] | None = None,
) -> list[Target]:
    """The systems measured, each asking for the same answer. The direct baseline and the relay ask the mock for
    what promptd asks it for: a stream when the client streams, one reply when it waits for the whole answer
    (promptd asks its upstream unstreamed then, docs/design.md). `more`: other promptd servers (name → port,
    key), measured on the Dify face; `pids`: the serving process of each system, for its CPU time."""
    pid = (pids or {}).get
    messages = [{"role": "user", "content": "hi"}]
    dify: dict[str, Any] = {"inputs": {"query": "hi"}, "user": "bench"}
    if stream:
        dify["response_mode"] = "streaming"
    upstream = {"model": "bench", "messages": messages, "stream": stream}
    auth = {"Authorization": f"Bearer {key}"}
    out = [
        Target(DIRECT, f"http://127.0.0.1:{mock_port}/v1/chat/completions", upstream, {}),
        Target(DIFY, f"http://127.0.0.1:{port}/v1/completion-messages", dify, auth, pid(DIFY)),
        Target(CHAT, f"http://127.0.0.1:{port}/api/v1/chat/completions",
               {"model": "demo", "messages": messages, "stream": stream}, auth, pid(CHAT)),
    ]  # fmt: skip
    for name, (other_port, other_key) in (more or {}).items():
        out.append(
            Target(name, f"http://127.0.0.1:{other_port}/v1/completion-messages", dify,
                   {"Authorization": f"Bearer {other_key}"}, pid(name))
        )  # fmt: skip
    if relay_port is not None:
        out.insert(1, Target(RELAY, f"http://127.0.0.1:{relay_port}/v1/chat/completions", upstream, {}, pid(RELAY)))
    if peer_port is not None:
        out.append(
            Target(PEER, f"http://127.0.0.1:{peer_port}/chat/completions",
                   {"model": "bench", "messages": messages, "stream": stream},
                   {"Authorization": f"Bearer {LITELLM_KEY}"}, pid(PEER))
        )  # fmt: skip
    return out


async def database(server: str, name: str, create: bool) -> None:
    """Create (or drop) a PostgreSQL database for one run."""
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class Systems:
    """The mock, the relay, promptd and (when wanted) LiteLLM, started for one mock shape and stopped afterwards;
    with `services`, promptd on PostgreSQL and on PostgreSQL + Redis (a limited key) too."""

    def __init__(
        self, mock: tuple[float, float, int], workers: int, litellm: bool, out: dict[str, Any], services: bool = False
    ) -> None:
        self.mock_shape, self.workers, self.litellm, self.out, self.services = mock, workers, litellm, out, services
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pids: dict[str, int] = {}
        self.more: dict[str, tuple[int, str]] = {}
        self.database: str | None = None

    async def __aenter__(self) -> Systems:
        self.tmp = tempfile.TemporaryDirectory()
        data = Path(self.tmp.name)
        mock, self.mock_port = start_mock(*self.mock_shape)
        self.procs.append(mock)
        relay, self.relay_port = start_relay(self.mock_port, self.workers)
        self.procs.append(relay)
        self.pids[RELAY] = relay.pid
        self.promptd, self.port, self.key, self.startup = start_promptd(self.mock_port, data, self.workers)
        self.procs.append(self.promptd)
        self.pids[DIFY] = self.pids[CHAT] = self.promptd.pid
        if self.services:
            self.database = "promptd_bench_" + uuid.uuid4().hex[:8]
            await database(POSTGRES, self.database, True)
            pg = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + self.database
            plain = {"PROMPTD_DATABASE_URL": pg}
            shared = {**plain, "PROMPTD_REDIS_URL": REDIS, "PROMPTD_REDIS_PREFIX": f"bench:{uuid.uuid4().hex}:"}
            for name, folder, env, key_args in ((PG, "pg", plain, []), (LIMITED, "limited", shared, LIMITED_KEY)):
                proc, port, key, _ = start_promptd(
                    self.mock_port, data / folder, self.workers, env_extra=env, key_args=key_args
                )
                self.procs.append(proc)
                self.pids[name] = proc.pid
                self.more[name] = (port, key)
            self.pids[SHARED] = self.pids[LIMITED]
            self.more = {PG: self.more[PG], SHARED: (self.more[LIMITED][0], create_key(data / "limited", shared)),
                         LIMITED: self.more[LIMITED]}  # fmt: skip
        self.peer_port: int | None = None
        if self.litellm:
            peer = start_litellm(self.mock_port, data, self.workers)
            if isinstance(peer, str):
                self.out["failed"][PEER] = f"did not start: {peer}"
            else:
                self.procs.append(peer[0])
                self.peer_port = peer[1]
                self.pids[PEER] = peer[0].pid
        await asyncio.sleep(1)
        return self

    def targets(self, *, stream: bool) -> list[Target]:
        return targets(
            self.mock_port,
            self.port,
            self.key,
            self.peer_port,
            stream=stream,
            relay_port=self.relay_port,
            pids=self.pids,
            more=self.more,
        )

    async def __aexit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.database is not None:
            await database(POSTGRES, self.database, False)
        self.tmp.cleanup()


async def scenarios(quick: bool, litellm: bool, workers: int, rate: float, services: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"c1": {}, "c64": {}, "c256": {}, "open": {}, "stream": {}, "promptd": {}, "failed": {}}
    n1, secs = (100, 3) if quick else (400, 8)
    failed: dict[str, str] = out["failed"]

    async def measure(kind: str, t: Target, run: Any) -> None:
        if t.name in failed:
            return
        try:
            result = await run
        except Exception as exc:  # a system that fails is a result too: report it, go on
            failed[t.name] = f"{kind}: {type(exc).__name__}: {exc}"[:500]
            return
        if isinstance(out[kind].get(t.name), list):
            out[kind][t.name].append(result)
        else:
            out[kind][t.name] = [result] if kind == "c1" else result

    async with Systems((20, 0, 16), workers, litellm, out, services) as sys_:
        out["promptd"].update(workers=workers, startup_s=sys_.startup, rss_idle_mb=rss_all(sys_.promptd.pid))
        ts = sys_.targets(stream=False)
        for t in ts + ts:  # interleaved twice, so drift hits every system alike
            await measure("c1", t, closed_loop(t, 1, requests=n1))
        for t in ts:
            await measure("c64", t, closed_loop(t, 64, seconds=secs))
        for t in ts:
            await measure("c256", t, closed_loop(t, 256, seconds=secs))
        for t in ts:
            await measure("open", t, open_loop(t, rate, secs))
        out["promptd"]["rss_after_load_mb"] = rss_all(sys_.promptd.pid)
    # streaming at c=1: time to first token and chunk gaps, from short streams (4 chunks 20 ms apart), enough of
    # them for a p99 that is not just the largest of a few (three runs, interleaved, pooled: 300 streams a system)
    async with Systems((20, 20, 4), workers, litellm, out) as sys_:
        ts = sys_.targets(stream=True)
        for t in ts * 3:
            if t.name not in failed:
                try:
                    runs = out["stream"].setdefault(t.name, {"levels": {}}).setdefault("c1_runs", [])
                    runs.append(await streams(t, 1, 30 if quick else 100, samples=True))
                except Exception as exc:
                    failed[t.name] = f"stream c=1: {type(exc).__name__}: {exc}"[:500]
    for pooled in out["stream"].values():
        runs = pooled.pop("c1_runs", [])
        ttfts = [x for r in runs for x in r["ttfts"]]
        gaps = [x for r in runs for x in r["gaps"]]
        if ttfts:
            pooled["c1"] = {"n": len(ttfts), "errors": sum(r["errors"] for r in runs),
                           "ttft_p50_ms": pct(ttfts, 50) * 1000, "ttft_p99_ms": pct(ttfts, 99) * 1000,
                           "gap_p50_ms": pct(gaps, 50) * 1000, "gap_p99_ms": pct(gaps, 99) * 1000}  # fmt: skip
    # streaming under load: 64 chunks 20 ms apart
    levels = (64, 256) if quick else (64, 128, 256, 384, 512)
    # concurrent streams whose starts are spread over 1 s (a stream lasts ~1.3 s: all of them overlap), and
    # the harsher burst of 256 starting in the same instant
    async with Systems((20, 20, 64), workers, litellm, out) as sys_:
        for t in sys_.targets(stream=True):
            if t.name in failed:
                continue
            entry: dict[str, Any] = out["stream"].setdefault(t.name, {"levels": {}})
            try:
                for level in levels:
                    r = entry["levels"][str(level)] = await streams(t, level, 1, ramp=1.0)
                    if r["errors"] or r["gap_max_ms"] > STALL_MS:
                        break  # past the first level that stalls, higher ones would only stall more
                entry["burst256"] = await streams(t, 256, 1)
            except Exception as exc:
                failed[t.name] = f"stream: {type(exc).__name__}: {exc}"[:500]
    return out


async def soak(seconds: float, workers: int) -> dict[str, Any]:
    """Steady load (concurrency 16, Dify face) for `seconds`; promptd's RSS (each worker) sampled every 10 s."""
    samples: list[tuple[float, float]] = []
    out: dict[str, Any] = {"failed": {}}
    async with Systems((20, 0, 16), workers, False, out) as sys_:
        target = next(t for t in sys_.targets(stream=False) if t.name == DIFY)
        began = time.monotonic()
        load = asyncio.create_task(closed_loop(target, 16, seconds=seconds))
        while not load.done():
            rss = rss_all(sys_.promptd.pid)
            samples.append((time.monotonic() - began, max(rss.values())))
            await asyncio.wait({load}, timeout=10)
        result = load.result()
    third = max(1, len(samples) // 3)
    early = statistics.fmean(r for _, r in samples[:third])
    late = statistics.fmean(r for _, r in samples[-third:])
    return {
        "seconds": seconds,
        "workers": workers,
        "requests": result["n"],
        "errors": result["errors"],
        "rss_samples": samples,
        "rss_first_third_mb": early,
        "rss_last_third_mb": late,
        "growth_mb": late - early,
    }


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in runs)


def summarize(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    c1 = {name: {k: _mean(runs, k) for k in ("p50_ms", "p99_ms")} for name, runs in raw["c1"].items()}
    c64, c256, opn, st = raw["c64"], raw["c256"], raw["open"], raw["stream"]
    summary: dict[str, Any] = {}
    for name in c1:
        row: dict[str, Any] = {"c1_p50_ms": c1[name]["p50_ms"], "c1_p99_ms": c1[name]["p99_ms"]}
        if name != DIRECT:
            row["added_p50_ms_c1"] = c1[name]["p50_ms"] - c1[DIRECT]["p50_ms"]
            row["added_p99_ms_c1"] = c1[name]["p99_ms"] - c1[DIRECT]["p99_ms"]
        for level, res in (("c64", c64), ("c256", c256)):
            if name in res:
                row[f"rps_{level}"] = res[name]["rps"]
                row[f"p99_ms_{level}"] = res[name]["p99_ms"]
                row[f"rps_ratio_{level}"] = res[name]["rps"] / res[DIRECT]["rps"]
                if RELAY in res:
                    row[f"rps_of_floor_{level}"] = res[name]["rps"] / res[RELAY]["rps"]
        if name in c64 and c64[name].get("cpu_ms_per_request") is not None:
            row["cpu_ms_per_request_c64"] = c64[name]["cpu_ms_per_request"]
        if name in opn:
            row["open"] = opn[name]
        summary[name] = row
    for name, s in st.items():
        if "c1" not in s:
            continue
        ok = [int(level) for level, r in s["levels"].items() if not r["errors"] and r["gap_max_ms"] <= STALL_MS]
        summary.setdefault(name, {})["stream"] = {
            "ttft_p50_ms_c1": s["c1"]["ttft_p50_ms"],
            "ttft_p99_ms_c1": s["c1"]["ttft_p99_ms"],
            "added_ttft_p50_ms_c1": s["c1"]["ttft_p50_ms"] - st[DIRECT]["c1"]["ttft_p50_ms"],
            "added_ttft_p99_ms_c1": s["c1"]["ttft_p99_ms"] - st[DIRECT]["c1"]["ttft_p99_ms"],
            "gap_p99_ms_c1": s["c1"]["gap_p99_ms"],
            "gap_max_ms_by_streams": {level: r["gap_max_ms"] for level, r in s["levels"].items()},
            "errors_by_streams": {level: r["errors"] for level, r in s["levels"].items()},
            "streams_without_stall": max(ok, default=0),
            "burst256_gap_max_ms": s["burst256"]["gap_max_ms"] if "burst256" in s else None,
            "burst256_gap_p99_ms": s["burst256"]["gap_p99_ms"] if "burst256" in s else None,
            "burst256_errors": s["burst256"]["errors"] if "burst256" in s else None,
        }
    summary["promptd"] = raw["promptd"]
    if PEER in c64 and CHAT in c64:
        summary["promptd_over_litellm_c64"] = c64[CHAT]["rps"] / max(c64[PEER]["rps"], 1e-9)
    return summary, table(summary, raw)


def _f(value: float | None, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def table(summary: dict[str, Any], raw: dict[str, Any]) -> str:
    names = [n for n in SYSTEMS if n in summary and "c1_p50_ms" in summary[n]]
    lines = [
        "| system | c=1 p50 / p99 ms | added p50 / p99 ms | c=64 req/s (ratio) p99 ms | c=256 req/s (ratio) p99 ms "
        f"| open loop {raw['open'].get(DIRECT, {}).get('rate', 0):.0f}/s: done/s p50 / p99 ms "
        "| CPU ms per request, c=64 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        s = summary[name]
        added = f"{s['added_p50_ms_c1']:.2f} / {s['added_p99_ms_c1']:.2f}" if name != DIRECT else ""
        cells = []
        for level in ("c64", "c256"):
            if f"rps_{level}" in s:
                cells.append(f"{s[f'rps_{level}']:.0f} ({s[f'rps_ratio_{level}']:.0%}) {s[f'p99_ms_{level}']:.1f}")
            else:
                cells.append("")
        o = s.get("open")
        opened = f"{o['achieved_rps']:.0f}, {o['p50_ms']:.1f} / {o['p99_ms']:.1f}" if o else ""
        if o and o["errors"]:
            opened += f", {o['errors']} errors"
        cpu = _f(s.get("cpu_ms_per_request_c64"), ".3f")
        lines.append(
            f"| {name} | {s['c1_p50_ms']:.2f} / {s['c1_p99_ms']:.2f} | {added} | {cells[0]} | {cells[1]} | {opened} "
            f"| {cpu} |"
        )
    lines += [
        "",
        "| streaming, chunks 20 ms apart | TTFT c=1 p50 / p99 ms (4-chunk streams) | added TTFT p50 / p99 ms "
        "| chunk gap p99 c=1 ms | (64-chunk streams:) "
        f"largest gap by concurrent streams, started over 1 s (ms) | streams without a stall (gap ≤ {STALL_MS} ms) "
        "| 256 started at once: gap p99 / max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in SYSTEMS:
        s = summary.get(name, {}).get("stream")
        if s is None:
            continue
        added = f"{s['added_ttft_p50_ms_c1']:.2f} / {s['added_ttft_p99_ms_c1']:.2f}" if name != DIRECT else ""
        errs = s["errors_by_streams"]
        gaps = ", ".join(
            f"{level}: {gap:.0f}" + (f" ({errs[level]} errors)" if errs[level] else "")
            for level, gap in s["gap_max_ms_by_streams"].items()
        )
        burst = (
            f"{s['burst256_gap_p99_ms']:.0f} / {s['burst256_gap_max_ms']:.0f}"
            + (f" ({s['burst256_errors']} errors)" if s["burst256_errors"] else "")
            if s["burst256_gap_max_ms"] is not None
            else ""
        )
        lines.append(
            f"| {name} | {s['ttft_p50_ms_c1']:.2f} / {s['ttft_p99_ms_c1']:.2f} | {added} | {s['gap_p99_ms_c1']:.1f} "
            f"| {gaps} | {s['streams_without_stall']} | {burst} |"
        )
    p = summary["promptd"]

    def rss(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in d.items())

    lines += [
        "",
        f"promptd ({p['workers']} worker(s)) RSS MB: idle {rss(p['rss_idle_mb'])}; after the load "
        f"{rss(p['rss_after_load_mb'])}; start-up {p['startup_s']:.2f} s.",
    ]
    if "cpu_ms_per_request_c64" in summary.get(SHARED, {}) and "cpu_ms_per_request_c64" in summary.get(LIMITED, {}):
        free, held = summary[SHARED], summary[LIMITED]
        lines.append(
            f"The limited key against an unlimited key on the same server (PostgreSQL + Redis), c=64: "
            f"{held['rps_c64'] / free['rps_c64']:.0%} of its requests/s, "
            f"{held['cpu_ms_per_request_c64'] / free['cpu_ms_per_request_c64'] - 1:+.0%} CPU per request."
        )
    if "promptd_over_litellm_c64" in summary:
        times = summary["promptd_over_litellm_c64"]
        lines.append(f"promptd (chat face) / LiteLLM at c=64: {times:.1f}x the requests/s.")
    for name, why in raw.get("failed", {}).items():
        lines.append(f"{name}: failed during the run: {why}")
    return "\n".join(lines)


def chart(summary: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [n for n in SYSTEMS if "c1_p50_ms" in summary.get(n, {})]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(len(names))
    a.bar([i - 0.2 for i in x], [summary[n]["c1_p50_ms"] for n in names], 0.4, label="p50")
    a.bar([i + 0.2 for i in x], [summary[n]["c1_p99_ms"] for n in names], 0.4, label="p99")
    a.set_title("latency at concurrency 1 (ms; mock: 20 ms)")
    b.bar([i - 0.2 for i in x], [summary[n].get("rps_c64", 0) for n in names], 0.4, label="c=64")
    b.bar([i + 0.2 for i in x], [summary[n].get("rps_c256", 0) for n in names], 0.4, label="c=256")
    b.set_title("requests/s, closed loop")
    for ax in (a, b):
        ax.set_xticks(list(x), names, rotation=12)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer")
    parser.add_argument(
        "--no-services", action="store_true", help="skip the PostgreSQL and PostgreSQL + Redis (limited key) rows"
    )
    parser.add_argument("--workers", type=int, default=1, help="promptd workers (and LiteLLM's), default 1")
    parser.add_argument("--rate", type=float, default=400, help="open-loop requests/s (default 400)")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="only the RSS soak, for this long (600)")
    args = parser.parse_args()
    if args.workers > 1 and not serve_supports_workers():
        parser.error("this promptd has no `serve --workers`")
    RESULTS.mkdir(exist_ok=True)
    if args.soak:
        result = asyncio.run(soak(args.soak, args.workers))
        path = RESULTS / time.strftime("soak-%Y%m%d-%H%M%S.json")
        path.write_text(json.dumps(result, indent=2))
        print(
            f"soak {result['seconds']:.0f} s, {result['requests']} requests, {result['errors']} errors: RSS "
            f"{result['rss_first_third_mb']:.0f} MB (first third) → {result['rss_last_third_mb']:.0f} MB "
            f"(last third), growth {result['growth_mb']:+.1f} MB\nwritten to {path.relative_to(ROOT)}"
        )
        return
    version = None if args.no_litellm else install_litellm()
    raw = asyncio.run(scenarios(args.quick, version is not None, args.workers, args.rate, not args.no_services))
    summary, text = summarize(raw)
    stem = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    meta = {"cpus": os.cpu_count(), "litellm": version, "quick": args.quick, "argv": sys.argv[1:]}
    stem.with_suffix(".json").write_text(json.dumps({"summary": summary, "raw": raw, **meta}, indent=2))
    drawn = chart(summary, stem.with_suffix(".png"))
    print(text)
    print(f"\nwritten to {stem.relative_to(ROOT)}.json" + (" and .png" if drawn else ""))


if __name__ == "__main__":
    main()
