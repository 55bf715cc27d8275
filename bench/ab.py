"""Interleaved A/B of promptd source trees on one mock: CPU per request at c=64 (both faces), and with --full
the added p50 at c=1 and the share of direct and of the byte relay at c=256.

    .venv/bin/python bench/ab.py [--rounds 6] [--seconds 4] [--full] NAME=SRC[,ENV=VALUE...] ...

Each NAME is a promptd started with PYTHONPATH=SRC (a tree's `src`, e.g. from `git archive <commit>`) and the
given environment (BENCH_LOG_LEVEL=info runs it at the log level `serve` defaults to; bench/run.py measures at
warning; BENCH_PYTHON=/path/to/python runs it on another interpreter that has promptd's dependencies). The trees
run side by side and are measured in alternating order, round after round, so the machine's drift hits them
alike; medians over the rounds are printed. CPU per request is each server's own
(/proc), the figure that holds on a busy machine (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import run as bench

_popen = subprocess.Popen


def _with_log_level(argv: list[str], *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
    """bench.run's Popen, with `--log-level` taken from BENCH_LOG_LEVEL in the process's environment."""
    level = (kwargs.get("env") or {}).get("BENCH_LOG_LEVEL")
    if level and "--log-level" in argv:
        argv = [*argv]
        argv[argv.index("--log-level") + 1] = level
    return _popen(argv, *args, **kwargs)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--full", action="store_true", help="c=1 and c=256 too")
    parser.add_argument("trees", nargs="+", metavar="NAME=SRC[,ENV=VALUE...]")
    args = parser.parse_args()
    subprocess.Popen = _with_log_level  # type: ignore[assignment,misc]  # bench.run starts its servers with it
    trees: list[tuple[str, str, dict[str, str]]] = []
    for spec in args.trees:
        name, rest = spec.split("=", 1)
        src, *pairs = rest.split(",")
        trees.append((name, src, dict(p.split("=", 1) for p in pairs)))
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mock, mock_port = bench.start_mock(20, 0, 16)
        relay, relay_port = bench.start_relay(mock_port, 1)
        procs = [mock, relay]
        servers: dict[str, tuple[int, int, str]] = {}
        try:
            for name, src, env in trees:
                proc, port, key, _ = bench.start_promptd(
                    mock_port, Path(tmp) / name, env_extra={"PYTHONPATH": src, **env}
                )
                procs.append(proc)
                servers[name] = (proc.pid, port, key)
            await asyncio.sleep(1)
            for r in range(args.rounds):
                targets: list[bench.Target] = []
                for name, _, _ in trees if r % 2 == 0 else trees[::-1]:
                    pid, port, key = servers[name]
                    pids = {bench.DIFY: pid, bench.CHAT: pid, bench.RELAY: relay.pid}
                    found = bench.targets(mock_port, port, key, None, stream=False, relay_port=relay_port, pids=pids)
                    if not targets:
                        targets += found[:2]  # direct, relay
                    for t in found[2:]:
                        t.name = f"{name} {'Dify' if t.name == bench.DIFY else 'chat'}"
                        targets.append(t)
                for t in targets if args.full else []:
                    got = await bench.closed_loop(t, 1, requests=150)
                    results.setdefault(t.name, {}).setdefault("c1_p50", []).append(got["p50_ms"])
                for level in (64, 256) if args.full else (64,):
                    for t in targets:
                        got = await bench.closed_loop(t, level, seconds=args.seconds)
                        into = results.setdefault(t.name, {})
                        into.setdefault(f"rps{level}", []).append(got["rps"])
                        if got["cpu_ms_per_request"] is not None:
                            into.setdefault(f"cpu{level}", []).append(got["cpu_ms_per_request"])
                print(f"round {r + 1} of {args.rounds} done", flush=True)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    report(results, args.full)


def report(results: dict[str, dict[str, list[float]]], full: bool) -> None:
    med = statistics.median
    direct, relay = results[bench.DIRECT], results[bench.RELAY]
    head = "| system | CPU ms per request, c=64 (rounds) |"
    print("\n" + head + (" c=256 CPU | added c=1 p50 ms | c=256 of direct | c=256 of the relay |" if full else ""))
    print("|---" * (head.count("|") - 1 + (4 if full else 0)) + "|")
    for name, got in results.items():
        cpu = f"{med(got['cpu64']):.3f} ({' '.join(f'{x:.3f}' for x in got['cpu64'])})" if "cpu64" in got else ""
        row = f"| {name} | {cpu} |"
        if full:
            cpu256 = f"{med(got['cpu256']):.3f}" if "cpu256" in got else ""
            added = med(got["c1_p50"]) - med(direct["c1_p50"])
            of_direct = med([a / b for a, b in zip(got["rps256"], direct["rps256"], strict=True)])
            of_relay = med([a / b for a, b in zip(got["rps256"], relay["rps256"], strict=True)])
            row += f" {cpu256} | {added:.2f} | {of_direct:.0%} | {of_relay:.0%} |"
        print(row)


if __name__ == "__main__":
    asyncio.run(main())
