"""The engine's policies, each alone and with no HTTP: routing (deployment order, what follows a failure,
backoff with jitter), provider health (circuit breakers, which errors count) and billing."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

import pytest

from promptd.catalog.schema import CircuitPolicy, Deployment, ModelConfig, Price, RetryPolicy
from promptd.engine.billing import bill_attempt, total
from promptd.engine.health import CircuitBreakers, counts_against_provider
from promptd.engine.routing import after_failure, backoff_s, weighted_order
from promptd.errors import (
    InputError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from promptd.types import Usage

A, B = Deployment(provider="p", model="a", weight=3), Deployment(provider="p", model="b", weight=1)
PRICE = Price(input="1", output="2", unit="1M")


def test_load_is_spread_by_weight_within_tolerance() -> None:
    rng = random.Random(7)
    firsts = Counter(weighted_order([A, B], rng)[0].model for _ in range(4000))
    # a is first with probability 3/4: 3000 ± 4 standard deviations (binomial)
    assert abs(firsts["a"] - 3000) <= 4 * (4000 * 0.75 * 0.25) ** 0.5
    assert all(sorted(d.model for d in weighted_order([A, B], rng)) == ["a", "b"] for _ in range(10))


def test_backoff_doubles_up_to_the_cap_with_jitter_above_half() -> None:
    policy = RetryPolicy(backoff_ms=100, max_backoff_ms=350)
    rng = random.Random(1)
    for retry, ceiling in [(0, 0.1), (1, 0.2), (2, 0.35), (5, 0.35)]:
        draws = [backoff_s(retry, policy, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws)
        assert max(draws) - min(draws) > ceiling * 0.3  # jittered: clients that failed together spread out


def test_the_default_policy_never_puts_three_attempts_inside_100_ms() -> None:
    policy, rng = RetryPolicy(), random.Random(3)
    for _ in range(1000):
        assert backoff_s(0, policy, rng) + backoff_s(1, policy, rng) >= 0.1


def _model(**kw: object) -> ModelConfig:
    return ModelConfig(provider="p", model="m", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "retry", "model", "step"),
    [
        (ProviderUnavailable("503"), 0, _model(), "retry"),
        (ProviderUnavailable("503"), 2, _model(), "next"),  # the deployment's retries are spent
        (ProviderTimeout("t"), 0, _model(), "retry"),
        (ProviderRateLimited("429", retry_after=60), 0, _model(), "next"),  # waiting that long is worse
        (ProviderBadRequest("400"), 0, _model(), "final"),
        (ProviderBadRequest("long", code="content_filter"), 0, _model(), "final"),
        (ProviderBadRequest("long", code="context_length_exceeded"), 0, _model(), "final"),
        (ProviderBadRequest("long", code="context_length_exceeded"), 0, _model(context_fallback="big"), "context"),
        (ProviderError("401 from upstream"), 0, _model(), "final"),  # not retryable
    ],
)
def test_what_follows_a_failure(error: ProviderError, retry: int, model: ModelConfig, step: str) -> None:
    assert after_failure(error, model, retry, random.Random(0))[0] == step


def test_a_short_retry_after_is_waited_for_exactly() -> None:
    assert after_failure(ProviderRateLimited("429", retry_after=1.5), _model(), 0, random.Random(0)) == ("retry", 1.5)


def test_a_circuit_opens_after_consecutive_failures_and_closes_on_success() -> None:
    breakers, policy = CircuitBreakers(), CircuitPolicy(failures=2, cooldown_s=30)
    assert not breakers.failure(A, policy, now=0)
    assert not breakers.is_open(A, now=1)
    assert breakers.failure(A, policy, now=1)  # this one opened it
    assert breakers.is_open(A, now=2) and not breakers.is_open(B, now=2)
    assert not breakers.is_open(A, now=31.5)  # cooled down: it gets a trial
    breakers.failure(A, policy, now=32)  # the trial failed: open again at once
    assert breakers.is_open(A, now=33)
    breakers.success(A)
    assert not breakers.is_open(A, now=34)


def test_caller_faults_never_open_a_circuit() -> None:
    breakers, policy = CircuitBreakers(), CircuitPolicy(failures=2, cooldown_s=30)
    for error in (
        ProviderBadRequest("too long", code="context_length_exceeded"),
        ProviderBadRequest("flagged", code="content_filter"),
        ProviderBadRequest("bad"),
        InputError("bad input"),
    ):
        assert not counts_against_provider(error)
        for _ in range(10):
            assert not breakers.observe(A, policy, error, now=0)
    assert not breakers.is_open(A, now=1)


@pytest.mark.parametrize(
    "error", [ProviderUnavailable("503"), ProviderTimeout("t"), ProviderRateLimited("429"), ProviderError("reset")]
)
def test_provider_faults_open_a_circuit(error: ProviderError) -> None:
    breakers, policy = CircuitBreakers(), CircuitPolicy(failures=2, cooldown_s=30)
    assert counts_against_provider(error)
    breakers.observe(A, policy, error, now=0)
    assert breakers.observe(A, policy, error, now=0)
    assert breakers.is_open(A, now=1)


def test_a_success_in_between_resets_the_count() -> None:
    breakers, policy = CircuitBreakers(), CircuitPolicy(failures=2, cooldown_s=30)
    breakers.observe(A, policy, ProviderUnavailable("503"), now=0)
    breakers.observe(A, policy, None, now=0)
    assert not breakers.observe(A, policy, ProviderUnavailable("503"), now=0)


def test_an_attempt_is_billed_what_its_provider_reported() -> None:
    bill = bill_attempt(Usage(10, 5), deltas=99, prompt_tokens=None, price=PRICE)
    assert bill is not None and not bill.estimated
    assert bill.usage == Usage(10, 5)
    assert bill.cost.total_price == Decimal("0.00002")  # 10 x 1 + 5 x 2 per million


def test_a_refused_attempt_costs_nothing() -> None:
    assert bill_attempt(None, deltas=0, prompt_tokens=500, price=PRICE) is None
    usage, cost = total([], PRICE)
    assert usage == Usage(0, 0) and cost.total_price == 0


def test_an_unreported_attempt_that_produced_tokens_is_billed_an_estimate() -> None:
    bill = bill_attempt(None, deltas=7, prompt_tokens=20, price=PRICE)
    assert bill is not None and bill.estimated and bill.usage == Usage(20, 7)


def test_a_call_costs_the_sum_of_its_attempts_each_at_its_own_price() -> None:
    dear = Price(input="10", output="20", unit="1M")
    cut = bill_attempt(None, deltas=3, prompt_tokens=10, price=PRICE)  # died mid-answer
    answered = bill_attempt(Usage(10, 4), deltas=4, prompt_tokens=None, price=dear)  # the fallback
    assert cut is not None and answered is not None
    usage, cost = total([cut, answered], dear)
    assert usage == Usage(20, 7)
    assert cost.total_price == cut.cost.total_price + answered.cost.total_price == Decimal("0.000196")
