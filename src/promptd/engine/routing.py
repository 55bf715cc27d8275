"""Routing policy: which deployments to try in which order, what to do after a failure, how long to back off.
Provider health (the circuit breakers) is engine/health.py.

Pure: callers pass the random source.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from promptd.catalog.schema import Deployment, ModelConfig, RetryPolicy
from promptd.errors import PromptdError, ProviderError, ProviderRateLimited

__all__ = ["Step", "after_failure", "backoff_s", "weighted_order"]

Step = Literal["retry", "next", "context", "final"]


def weighted_order(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """All deployments, ordered by a weighted random draw without replacement (Efraimidis-Spirakis):
    the first is picked with probability weight / total, and so on for the rest."""
    if len(deployments) == 1:
        return list(deployments)
    return sorted(deployments, key=lambda d: rng.random() ** (1.0 / d.weight), reverse=True)


def backoff_s(retry: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with "equal" jitter: uniform in [c/2, c] milliseconds, c = min(max, base * 2**retry).
    Jittered, so clients that failed together do not come back together; never below half the ceiling, so the
    default policy (100 ms) never puts three attempts inside 100 ms (the first two waits add up to >= 150 ms)."""
    ceiling = min(policy.max_backoff_ms, policy.backoff_ms * 2**retry)
    return rng.uniform(ceiling / 2, ceiling) / 1000


def after_failure(error: PromptdError, model: ModelConfig, retry: int, rng: random.Random) -> tuple[Step, float]:
    """What to do after an attempt failed before the answer was committed, and how long to wait first:
    "retry" the same deployment, try the "next" candidate, the model's larger-"context" fallback, or "final"
    (the client's fault, or nothing else can help)."""
    policy = model.retry
    if error.code == "context_length_exceeded":
        return ("context" if model.context_fallback else "final"), 0.0
    if not isinstance(error, ProviderError) or not error.retryable:
        return "final", 0.0  # bad requests and content filters are not retried
    if error.code == "first_token_timeout":
        return "next", 0.0  # this model's deadline has passed: only another model can help
    if retry >= policy.attempts:
        return "next", 0.0
    wait = error.retry_after if isinstance(error, ProviderRateLimited) else None
    if wait is not None and wait > policy.max_retry_after_s:
        return "next", 0.0  # waiting that long is worse than another deployment or model
    return "retry", (wait if wait is not None else backoff_s(retry, policy, rng))
