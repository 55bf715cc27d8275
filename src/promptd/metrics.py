"""Prometheus metrics: counters, histograms and gauges with labels, one view across worker processes.

An observation is a dict lookup and a few additions, no locks (one event loop per process). With a directory
(`Metrics(directory)`, which the app always gives), each value is also written to this process's files there,
at most FLUSH_S (0.1 s) after it changes (all the changes of that time in one pass, not one write per update):
prometheus_client's multi-process format (an mmap'd file per kind and pid, 16 bytes per value). `/metrics`,
whichever worker answers, is then read from every worker's files by prometheus_client's MultiProcessCollector
(the answering worker writes its own first): counters are summed over every process that ever ran under this
start (a restarted worker's counts stay, but for its last FLUSH_S when it was killed), gauges over the
processes alive (each refreshes its own every second, and removes its file when it stops). `promptd serve`
makes one directory per start, under the data dir (`metrics/<start>`), and removes the ones of earlier starts.

Without a directory (an engine built alone, in tests) the values stay in the process and are exposed from
there.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

__all__ = ["Counter", "Histogram", "Metrics", "start_directory"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
FLUSH_S = 0.1  # a process's counters and histograms reach its file at most this long after they change

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in labels)  # fmt: skip
    return "{" + inner + "}"


def _file_key(metric: str, sample: str, labels: Labels, help: str) -> str:
    return str(mmap_key(metric, sample, [k for k, _ in labels], [v for _, v in labels], help))


class _Shared:
    """This process's file of one kind (counters, histograms) and the values changed since it was last written:
    an update is a dict store, and the file is written at most every FLUSH_S (one timer), instead of an mmap
    write per update (eight per answer)."""

    __slots__ = ("file", "pending", "timer")

    def __init__(self, file: MmapedDict) -> None:
        self.file = file
        self.pending: dict[str, float] = {}  # the file's key → the value to write
        self.timer: asyncio.TimerHandle | None = None

    def put(self, key: str, value: float) -> None:
        self.pending[key] = value
        if self.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not in the event loop: written at once
                self.flush()
                return
            self.timer = loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        write = self.file.write_value
        for key, value in self.pending.items():
            write(key, value, 0.0)
        self.pending.clear()


@dataclass
class Counter:
    name: str  # with its `_total`
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    file: _Shared | None = None  # this process's counter file, when the values are shared
    keys: dict[Labels, str] = field(default_factory=dict)  # the file's key of each label set

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        value = self.values[key] = self.values.get(key, 0.0) + amount
        if self.file is not None:
            fkey = self.keys.get(key)
            if fkey is None:
                fkey = self.keys[key] = _file_key(self.name.removesuffix("_total"), self.name, key, self.help)
            self.file.put(fkey, value)

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, v in self.values.items():
            yield f"{self.name}{_labels(labels)} {v:g}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    series: dict[Labels, list[float]] = field(default_factory=dict)  # bucket counts..., +Inf, sum
    file: _Shared | None = None  # this process's histogram file, when the values are shared
    keys: dict[Labels, list[str]] = field(default_factory=dict)  # the file's keys: each bucket's, then the sum's

    def observe(self, value: float, /, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self.series.get(key)
        if counts is None:
            counts = self.series[key] = [0.0] * (len(self.buckets) + 2)
        i = bisect.bisect_left(self.buckets, value)
        counts[i] += 1
        counts[-1] += value
        if self.file is not None:
            fkeys = self.keys.get(key)
            if fkeys is None:
                fkeys = self.keys[key] = self._file_keys(key)
                for k, v in zip(fkeys, counts, strict=True):  # every bucket is exposed, the empty ones too
                    self.file.put(k, v)
            self.file.put(fkeys[i], counts[i])
            self.file.put(fkeys[-1], counts[-1])

    def _file_keys(self, labels: Labels) -> list[str]:
        bounds = [floatToGoString(b) for b in (*self.buckets, float("inf"))]
        keys = [_file_key(self.name, self.name + "_bucket", (*labels, ("le", le)), self.help) for le in bounds]
        return [*keys, _file_key(self.name, self.name + "_sum", labels, self.help)]

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in self.series.items():
            running = 0.0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=False):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                yield f"{self.name}_bucket{_labels((*labels, ('le', le)))} {running:g}"
            yield f"{self.name}_sum{_labels(labels)} {counts[-1]:g}"
            yield f"{self.name}_count{_labels(labels)} {running:g}"


class Metrics:
    def __init__(self, directory: Path | None = None) -> None:
        """`directory`: where this process shares its values with the other workers (see the module)."""
        self.requests = Counter("promptd_requests_total", "Generations by project, model, face and status.")
        self.errors = Counter("promptd_errors_total", "Failed generations by project, model and error code.")
        self.latency = Histogram("promptd_latency_seconds", "Request to last token.", LATENCY_BUCKETS)
        self.ttft = Histogram("promptd_ttft_seconds", "Request to first token.", LATENCY_BUCKETS)
        self.overhead = Histogram("promptd_overhead_seconds", "Time spent in promptd, not upstream.", OVERHEAD_BUCKETS)
        self.tokens = Counter("promptd_tokens_total", "Tokens by project, model and kind (prompt, completion).")
        self.cost = Counter("promptd_cost_total", "Cost by project, model and currency.")
        self.attempts = Counter("promptd_upstream_attempts_total", "Upstream attempts by provider and status.")
        self.malformed = Counter("promptd_malformed_chunks_total", "Unreadable upstream chunks skipped, by provider.")
        self.recorded = Counter("promptd_recorder_rows_total", "Rows written by the recorder, by outcome.")
        self.spilled = Counter(
            "promptd_recorder_spilled_rows_total", "Rows put on disk because the recorder's queue was full."
        )
        self.retrieval = Histogram(
            "promptd_knowledge_retrieval_seconds", "Knowledge searched for one prompt, by project.", LATENCY_BUCKETS
        )
        self.limited = Counter("promptd_limited_total", "Requests refused by a rate limit or budget, by code.")
        self.rejections = Counter(
            "promptd_rejections_total", "Requests refused before any model call, by face, status and code."
        )
        self.moderation = Counter(
            "promptd_moderation_total", "Moderation checks by project, stage, type and outcome (passed/flagged/error)."
        )
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.directory = directory
        self._files: list[MmapedDict] = []
        self._shared: list[_Shared] = []
        self._gauge_file: MmapedDict | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            pid = os.getpid()
            counters, histograms = self._open(f"counter_{pid}.db"), self._open(f"histogram_{pid}.db")
            self._shared = [_Shared(counters), _Shared(histograms)]
            for metric in self._metrics():
                metric.file = self._shared[0] if isinstance(metric, Counter) else self._shared[1]

    def _open(self, name: str) -> MmapedDict:
        assert self.directory is not None
        file = MmapedDict(str(self.directory / name))
        self._files.append(file)
        return file

    def _metrics(self) -> tuple[Counter | Histogram, ...]:
        return (self.requests, self.errors, self.latency, self.ttft, self.overhead, self.tokens, self.cost,
                self.attempts, self.malformed, self.recorded, self.spilled, self.limited, self.rejections,
                self.moderation, self.retrieval)  # fmt: skip

    def recorder_outcome(self, outcome: str, rows: int) -> None:
        """The recorder's report: rows written or dead-lettered, or spilled to disk (replayed later)."""
        if outcome == "spilled":
            self.spilled.inc(rows)
        else:
            self.recorded.inc(rows, outcome=outcome)

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help, read)

    def publish_gauges(self) -> None:
        """Write this process's gauges to its file, for the worker that answers the next scrape."""
        if self.directory is None:
            return
        if self._gauge_file is None:
            self._gauge_file = self._open(f"gauge_livesum_{os.getpid()}.db")
        now = time.time()
        for name, (help, read) in self.gauges.items():
            self._gauge_file.write_value(_file_key(name, name, (), help), float(read()), now)

    def flush(self) -> None:
        """Write this process's changed counters and histograms to its files now (see _Shared)."""
        for shared in self._shared:
            shared.flush()

    def close(self) -> None:
        """This process stops: its gauges no longer count (its counters and histograms still do)."""
        self.flush()
        self._shared.clear()
        for file in self._files:
            file.close()
        self._files.clear()
        if self._gauge_file is not None and self.directory is not None:
            (self.directory / f"gauge_livesum_{os.getpid()}.db").unlink(missing_ok=True)
            self._gauge_file = None
        for metric in self._metrics():
            metric.file = None

    def exposition(self) -> str:
        """The text exposition format: of every worker under this directory, or of this process alone."""
        if self.directory is not None:
            self.flush()  # this worker's own latest values; the others' are at most FLUSH_S old
            self.publish_gauges()
            registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(registry, path=str(self.directory))
            return generate_latest(registry).decode()
        lines: list[str] = []
        for metric in self._metrics():
            lines.extend(metric.lines())
        for name, (help, read) in self.gauges.items():
            lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def start_directory(data_dir: Path) -> Path:
    """A new directory for this start's metrics under `data_dir/metrics`; those of earlier starts whose
    process has gone are removed (another `serve` on the same data dir keeps its own)."""
    import shutil

    root = data_dir / "metrics"
    if root.is_dir():
        for old in root.iterdir():
            started, _, pid = old.name.rpartition("-")
            if not (started.isdigit() and pid.isdigit() and _alive(int(pid))):
                shutil.rmtree(old, ignore_errors=True)
    directory = root / f"{int(time.time())}-{os.getpid()}"
    directory.mkdir(parents=True)
    return directory
