"""Routing policy: which deployments to try in which order, how long to back off, which are cooled down.

Pure where it can be: callers pass the random source and the clock.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from promptd.catalog.schema import CircuitPolicy, Deployment, RetryPolicy

log = logging.getLogger("promptd.engine")

__all__ = ["CircuitBreakers", "backoff_s", "weighted_order"]


def weighted_order(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """All deployments, ordered by a weighted random draw without replacement (Efraimidis-Spirakis):
    the first is picked with probability weight / total, and so on for the rest."""
    if len(deployments) == 1:
        return list(deployments)
    return sorted(deployments, key=lambda d: rng.random() ** (1.0 / d.weight), reverse=True)


def backoff_s(retry: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**retry)] milliseconds."""
    ceiling = min(policy.max_backoff_ms, policy.backoff_ms * 2**retry)
    return rng.uniform(0, ceiling) / 1000


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreakers:
    """Per deployment (provider, upstream model): after `failures` consecutive failures it is skipped for
    `cooldown_s`; the first call after that is a trial, and one success closes it again."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], _State] = {}

    def is_open(self, deployment: Deployment, now: float) -> bool:
        state = self._states.get((deployment.provider, deployment.model))
        return state is not None and state.open_until > now

    def success(self, deployment: Deployment) -> None:
        self._states.pop((deployment.provider, deployment.model), None)

    def failure(self, deployment: Deployment, policy: CircuitPolicy, now: float) -> None:
        state = self._states.setdefault((deployment.provider, deployment.model), _State())
        state.failures += 1
        if state.failures >= policy.failures:
            if state.open_until <= now:
                log.warning("breaker opened: %s/%s skipped for %ss", deployment.provider, deployment.model,
                            policy.cooldown_s)  # fmt: skip
            state.open_until = now + policy.cooldown_s
            state.failures = policy.failures - 1  # after the cooldown, one more failure re-opens it
