"""Prometheus metrics, in-process: counters and histograms with labels, and the text exposition format.

Small on purpose: an observation is a dict lookup and a few additions, no locks (one event loop per process).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Metrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in labels)  # fmt: skip
    return "{" + inner + "}"


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

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

    def observe(self, value: float, /, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self.series.get(key)
        if counts is None:
            counts = self.series[key] = [0.0] * (len(self.buckets) + 2)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        counts[-1] += value

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
    def __init__(self) -> None:
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
        self.moderation = Counter(
            "promptd_moderation_total", "Moderation checks by project, stage, type and outcome (passed/flagged/error)."
        )
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def recorder_outcome(self, outcome: str, rows: int) -> None:
        """The recorder's report: rows written or dead-lettered, or spilled to disk (replayed later)."""
        if outcome == "spilled":
            self.spilled.inc(rows)
        else:
            self.recorded.inc(rows, outcome=outcome)

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help, read)

    def exposition(self) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.errors, self.latency, self.ttft, self.overhead, self.tokens, self.cost,
                       self.attempts, self.malformed, self.recorded, self.spilled, self.limited,
                       self.moderation, self.retrieval):  # fmt: skip
            lines.extend(metric.lines())
        for name, (help, read) in self.gauges.items():
            lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
