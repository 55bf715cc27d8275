"""Provider health: which failures count against a deployment, and the circuit breakers they feed.

A deployment is unhealthy when it fails to serve a well-formed request: a 5xx, a reset or refused connection,
a timeout (first token, idle gap, total), a malformed answer, a 429. Those count, and `failures` of them in a
row open its circuit for `cooldown_s`. The caller's faults do not count, however many: a context-length or
content-filter refusal and any other 400 say nothing about the deployment, and a burst of oversized prompts
from one client must not send a model's traffic to its fallback. A stop (the client's) counts as nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptd.catalog.schema import CircuitPolicy, Deployment
from promptd.errors import PromptdError, ProviderBadRequest, ProviderError

__all__ = ["CircuitBreakers", "counts_against_provider"]


def counts_against_provider(error: PromptdError) -> bool:
    """Whether `error` says the provider is unhealthy (True) rather than that the request was bad (False)."""
    return isinstance(error, ProviderError) and not isinstance(error, ProviderBadRequest)


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

    def failure(self, deployment: Deployment, policy: CircuitPolicy, now: float) -> bool:
        """Count one failure; True when it opened the circuit."""
        state = self._states.setdefault((deployment.provider, deployment.model), _State())
        state.failures += 1
        if state.failures >= policy.failures:
            state.open_until = now + policy.cooldown_s
            state.failures = policy.failures - 1  # after the cooldown, one more failure re-opens it
            return True
        return False

    def observe(self, deployment: Deployment, policy: CircuitPolicy, error: PromptdError | None, now: float) -> bool:
        """Feed one attempt's outcome (None: it served); True when this opened the circuit."""
        if error is None:
            self.success(deployment)
            return False
        if counts_against_provider(error):
            return self.failure(deployment, policy, now)
        return False
