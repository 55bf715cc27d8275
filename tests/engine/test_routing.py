"""Routing policy: weighted deployment order, backoff with jitter, circuit breakers."""

from __future__ import annotations

import random
from collections import Counter

from promptd.catalog.schema import CircuitPolicy, Deployment, RetryPolicy
from promptd.engine.routing import CircuitBreakers, backoff_s, weighted_order

A, B = Deployment(provider="p", model="a", weight=3), Deployment(provider="p", model="b", weight=1)


def test_load_is_spread_by_weight_within_tolerance() -> None:
    rng = random.Random(7)
    firsts = Counter(weighted_order([A, B], rng)[0].model for _ in range(4000))
    # a is first with probability 3/4: 3000 ± 4 standard deviations (binomial)
    assert abs(firsts["a"] - 3000) <= 4 * (4000 * 0.75 * 0.25) ** 0.5
    assert all(sorted(d.model for d in weighted_order([A, B], rng)) == ["a", "b"] for _ in range(10))


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(backoff_ms=100, max_backoff_ms=350)
    rng = random.Random(1)
    for retry, ceiling in [(0, 0.1), (1, 0.2), (2, 0.35), (5, 0.35)]:
        draws = [backoff_s(retry, policy, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # jitter spans the range


def test_a_circuit_opens_after_consecutive_failures_and_closes_on_success() -> None:
    breakers, policy = CircuitBreakers(), CircuitPolicy(failures=2, cooldown_s=30)
    breakers.failure(A, policy, now=0)
    assert not breakers.is_open(A, now=1)
    breakers.failure(A, policy, now=1)
    assert breakers.is_open(A, now=2) and not breakers.is_open(B, now=2)
    assert not breakers.is_open(A, now=31.5)  # cooled down: it gets a trial
    breakers.failure(A, policy, now=32)  # the trial failed: open again at once
    assert breakers.is_open(A, now=33)
    breakers.success(A)
    assert not breakers.is_open(A, now=34)
