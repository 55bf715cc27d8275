"""The Python floor: what the server stack promptd is built on costs before promptd does anything.

    .venv/bin/python bench/floor.py [--rounds 2] [--seconds 4]

Measures, interleaved on one mock (20 ms to the answer, asked unstreamed), the direct baseline, the byte relay
(bench/relay.py), promptd (Dify face, SQLite, recording on) and the *floor*: uvicorn with httptools and uvloop
as promptd runs it, a bare ASGI app that reads the Dify request, asks the mock through promptd's own HTTP client
(providers/client.py) and answers; no routing, no key, no engine, no record, no log, no metrics. The gap between
the floor and the relay is what Python, uvicorn's ASGI layer and one upstream call cost; the gap between promptd
and the floor is promptd's own work. Prints added c=1 p50, req/s at c=64 and c=256 (share of direct and of the
relay) and CPU ms per request at c=64 (docs/benchmarks.md, "The floor").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import run as bench

FLOOR = "floor: uvicorn + bare ASGI + promptd's client"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor's ASGI app (run by uvicorn in its own process: `bench/floor.py` starts it)."""
    if scope["type"] != "http":
        return
    import msgspec

    from promptd.catalog.schema import Timeouts
    from promptd.providers.client import HTTPClient

    global _client
    if _client is None:
        _client = HTTPClient(headers={"Authorization": "Bearer bench"}, timeout=Timeouts(), max_connections=1000)
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    query = msgspec.json.decode(body)["inputs"]["query"]
    ask = {"model": "bench", "messages": [{"role": "user", "content": "Answer briefly: " + query}], "stream": False}
    headers = {"Content-Type": "application/json"}
    async with _client.post(
        os.environ["FLOOR_UPSTREAM"], data=msgspec.json.encode(ask), headers=headers, whole=True
    ) as r:
        reply = msgspec.json.decode(await r.read())
    out = msgspec.json.encode({"event": "message", "answer": reply["choices"][0]["message"]["content"]})
    length = str(len(out)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", length)]})  # fmt: skip
    await send({"type": "http.response.body", "body": out})


_client: Any = None


def start_floor(mock_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = bench.free_port()
    env = {
        **os.environ,
        "FLOOR_UPSTREAM": f"http://127.0.0.1:{mock_port}/v1/chat/completions",
        "PYTHONPATH": str(Path(__file__).parent),
    }
    argv = [sys.executable, "-m", "uvicorn", "floor:app", "--port", str(port), "--http", "httptools",
            "--loop", "uvloop", "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env)
    bench.wait_port(port)
    return proc, port


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mock, mock_port = bench.start_mock(20, 0, 16)
        relay, relay_port = bench.start_relay(mock_port, 1)
        floor, floor_port = start_floor(mock_port)
        promptd, port, key, _ = bench.start_promptd(mock_port, Path(tmp) / "promptd")
        try:
            await asyncio.sleep(1)
            found = bench.targets(mock_port, port, key, None, stream=False, relay_port=relay_port,
                                  pids={bench.DIFY: promptd.pid, bench.RELAY: relay.pid})  # fmt: skip
            direct, relay_t, dify = found[0], found[1], next(t for t in found if t.name == bench.DIFY)
            floor_t = bench.Target(FLOOR, f"http://127.0.0.1:{floor_port}/v1/completion-messages", dify_body(),
                                   {}, floor.pid)  # fmt: skip
            for r in range(args.rounds):
                targets = [direct, relay_t, floor_t, dify] if r % 2 == 0 else [direct, dify, floor_t, relay_t]
                for t in targets:
                    got = await bench.closed_loop(t, 1, requests=300)
                    results.setdefault(t.name, {}).setdefault("c1", []).append(got["p50_ms"])
                for level in (64, 256):
                    for t in targets:
                        got = await bench.closed_loop(t, level, seconds=args.seconds)
                        results[t.name].setdefault(f"rps{level}", []).append(got["rps"])
                        if level == 64 and got.get("cpu_ms_per_request") is not None:
                            results[t.name].setdefault("cpu", []).append(got["cpu_ms_per_request"])
                print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
        finally:
            for proc in (promptd, floor, relay, mock):
                proc.terminate()
    print(table(results, direct.name))


def dify_body() -> dict[str, Any]:
    return {"inputs": {"query": "hi"}, "user": "bench"}


def table(results: dict[str, dict[str, list[float]]], direct: str) -> str:
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    base, floor_relay = med[direct], med[bench.RELAY]
    lines = [
        "| system | added c=1 p50 ms | c=64 req/s (of direct) | c=256 req/s (of direct, of the relay) "
        "| CPU ms per request, c=64 |",
        "|---|---|---|---|---|",
    ]
    for name, m in med.items():
        cpu = f"{m['cpu']:.3f}" if "cpu" in m else ""
        lines.append(
            f"| {name} | {m['c1'] - base['c1']:.2f} | {m['rps64']:.0f} ({m['rps64'] / base['rps64']:.0%}) | "
            f"{m['rps256']:.0f} ({m['rps256'] / base['rps256']:.0%}, {m['rps256'] / floor_relay['rps256']:.0%}) "
            f"| {cpu} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
