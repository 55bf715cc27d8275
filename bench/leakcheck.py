"""Is promptd's RSS growth under steady load a leak? tracemalloc snapshots of a serving process, compared.

    .venv/bin/python bench/leakcheck.py [--minutes 4] [--top 15]

Starts the mock and promptd (as bench/run.py does, but with tracemalloc on in the promptd process), loads it
at concurrency 16 through the Dify face, and takes snapshots after a warm-up and at two later points. A leak
grows in both intervals at the same place; allocator fragmentation or caches that fill up once do not.
Prints the top growth by source line for each interval, and the traced total.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench

SERVE = """
import os, signal, sys, tracemalloc
tracemalloc.start(8)
out = sys.argv[1]
count = [0]
def dump(*_):
    count[0] += 1
    tracemalloc.take_snapshot().dump(f"{out}/snap-{count[0]}.bin")
    open(f"{out}/snap-{count[0]}.done", "w").close()
signal.signal(signal.SIGUSR1, dump)
from promptd.cli import main
sys.argv = ["promptd", "serve", "--port", sys.argv[2], "--log-level", "warning"]
main()
"""


def snapshot(proc: subprocess.Popen[bytes], out: Path, n: int) -> tracemalloc.Snapshot:
    os.kill(proc.pid, signal.SIGUSR1)
    while not (out / f"snap-{n}.done").exists():
        time.sleep(0.2)
    snap = tracemalloc.Snapshot.load(str(out / f"snap-{n}.bin"))
    return snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])


def report(title: str, before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int) -> dict[str, Any]:
    stats = after.compare_to(before, "lineno")
    total = sum(s.size for s in after.traces) - sum(s.size for s in before.traces)
    print(f"\n{title}: traced memory {total / 1e6:+.2f} MB")
    for s in stats[:top]:
        print(f"  {s.size_diff / 1e3:+9.1f} kB {s.count_diff:+7d} blocks  {s.traceback[0]}")
    return {"total_mb": total / 1e6, "top": [(str(s.traceback[0]), s.size_diff) for s in stats[:top]]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4, help="load between the snapshots (two intervals)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    mock, mock_port = bench.start_mock(20, 0, 16)
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp), Path(tmp) / "snaps"
        out.mkdir()
        # the catalog and key, as bench/run.py makes them, then our own serving process
        first, _, key, _ = bench.start_promptd(mock_port, data)
        first.terminate()
        first.wait(30)
        port = bench.free_port()
        env = {**os.environ, "PROMPTD_CONFIG": str(data / "bench.yaml"), "PROMPTD_DATA_DIR": str(data / "d")}
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(out), str(port)], env=env)
        bench.wait_port(port)
        target = bench.targets(mock_port, port, key, None, stream=False)[1]
        try:
            interval = args.minutes * 60 / 2
            warm = await bench.closed_loop(target, 16, seconds=30)
            a = snapshot(proc, out, 1)
            r1 = await bench.closed_loop(target, 16, seconds=interval)
            b = snapshot(proc, out, 2)
            r2 = await bench.closed_loop(target, 16, seconds=interval)
            c = snapshot(proc, out, 3)
            print(f"requests: warm-up {warm['n']}, first interval {r1['n']}, second {r2['n']}")
            report("first interval", a, b, args.top)
            report("second interval", b, c, args.top)
        finally:
            proc.terminate()
            proc.wait(30)
            mock.terminate()
            mock.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
