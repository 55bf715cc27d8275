"""One running generation: the provider stream runs in its own task, feeding a queue the face reads.

Running the provider in a task of its own lets a stop request, a client disconnect and keep-alive timers all
act the same way, at any moment (even while waiting for the first token): `stop()` cancels the task, which
closes the provider stream (and so the upstream call), and the generation finishes as "stopped" with the
partial answer. The record is written exactly once, by the task, whatever ends it.

Until the first token, the generation may move on: when a candidate fails with a retryable error, or its
first token misses the deadline (`max_ttft_ms`), the next candidate (the model's `fallbacks`) is tried, each
with a fresh deadline. Every try is listed in `result.attempts`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from promptd.catalog.schema import Deployment, ModelConfig, Price
from promptd.domain.pricing import Cost, plain, price_usage
from promptd.engine.hedging import Hedge
from promptd.engine.request import Done, EngineEvent, GenerationRequest, GenerationResult, KeepAlive
from promptd.engine.routing import CircuitBreakers, backoff_s
from promptd.errors import PromptdError, ProviderError, ProviderRateLimited, ProviderTimeout
from promptd.providers.base import Provider
from promptd.types import Finish, ProviderCall, TextDelta, ToolCallDelta, Usage

__all__ = ["Candidate", "FirstTokenTimeout", "Generation", "Planner"]

log = logging.getLogger("promptd.engine")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment the generation may run on: the catalog model, the deployment, its provider, the call."""

    key: str
    model: ModelConfig
    deployment: Deployment
    provider: Provider
    call: ProviderCall
    ttft_s: float | None = None  # first-token deadline for this model


class Planner(Protocol):
    def plan(self, model_key: str, request: GenerationRequest) -> list[Candidate]: ...

    breakers: CircuitBreakers
    rng: random.Random


class FirstTokenTimeout(ProviderTimeout):
    code = "first_token_timeout"


class Generation:
    def __init__(
        self,
        request: GenerationRequest,
        candidates: list[Candidate],
        *,
        planner: Planner,
        on_done: Callable[[Generation, GenerationResult], None],
        keepalive: float | None = None,
    ) -> None:
        self.request = request
        self.candidates = candidates
        self.planner = planner
        self.served = candidates[0]  # the candidate that answered (or the last one tried)
        self._on_done = on_done
        self._queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._keepalive = keepalive
        self._last_event = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped_by: str | None = None
        # "pending" until the task runs, "running" while it may be cancelled, "finishing" once the answer is in
        self._phase = "pending"
        self.result: GenerationResult | None = None
        self._delay = 0.0
        self._task = asyncio.create_task(self._run(), name=f"generation-{request.message_id}")
        if keepalive:
            self._timer = asyncio.get_running_loop().call_later(keepalive, self._tick)

    # --- control --------------------------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped by request") -> None:
        """End the generation now; it finishes as 'stopped' with what was generated so far.

        Only a running task is cancelled: a task cancelled before it starts would never run its body (no
        result, no record, no Done for the face), so a pending one sees `_stopped_by` when it starts; once the
        answer is complete ("finishing") there is nothing left to stop."""
        if self._stopped_by is not None or self._task.done() or self._phase == "finishing":
            return
        self._stopped_by = reason
        if self._phase == "running":
            self._task.cancel()

    async def events(self) -> AsyncIterator[EngineEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, Done):
                return

    def next_event(self) -> Awaitable[EngineEvent]:
        """The next event (the last one is Done): what events() yields, without an async generator's layer
        per event (the streaming faces relay every delta through here)."""
        return self._queue.get()

    async def wait(self) -> GenerationResult:
        """Run to the end without streaming (blocking mode)."""
        async for event in self.events():
            if isinstance(event, Done):
                return event.result
        raise AssertionError("unreachable: events() always ends with Done")

    async def join(self) -> None:
        """Wait until the generation has finished and its record was handed to the recorder."""
        await asyncio.shield(self._task)

    @property
    def stopped_by(self) -> str | None:
        return self._stopped_by

    # --- internals ------------------------------------------------------------------------------------------------

    def _emit(self, event: EngineEvent) -> None:
        self._last_event = time.monotonic()
        self._queue.put_nowait(event)

    def _tick(self) -> None:
        assert self._keepalive is not None
        idle = time.monotonic() - self._last_event
        if idle >= self._keepalive:
            self._emit(KeepAlive())
            idle = 0.0
        if self.result is None:
            self._timer = asyncio.get_running_loop().call_later(self._keepalive - idle, self._tick)

    async def _run(self) -> None:
        parts: list[str] = []
        tool_calls: dict[int, dict[str, Any]] = {}
        attempts: list[dict[str, Any]] = []
        deltas = 0
        ttft: float | None = None
        finish: Finish | None = None
        billed: tuple[Usage, Price, Cost] | None = None  # the last bill: (usage, price, cost)
        error: PromptdError | None = None
        status = "normal"
        queue = deque(self.candidates)
        model_started = {self.candidates[0].key: self.request.started}  # a model's first-token clock
        breakers, rng = self.planner.breakers, self.planner.rng
        relay = self.request.streaming
        self._phase = "running"
        if self._stopped_by is not None:  # stopped before it started: no provider is asked anything
            queue.clear()
            status = "stopped"
        try:
            while queue:
                candidate = queue.popleft()
                if attempts and attempts[-1]["model"] != candidate.key:
                    log.warning("fallback taken: %s -> %s", attempts[-1]["model"], candidate.key)
                self.served = candidate
                model_started.setdefault(candidate.key, time.perf_counter())
                retries = candidate.model.retry
                for retry in range(retries.attempts + 1):
                    began = time.perf_counter()
                    attempt: dict[str, Any] = {"model": candidate.key, "provider": candidate.deployment.provider,
                                               "upstream_model": candidate.deployment.model, "status": "ok",
                                               "started": round(began - self.request.started, 4)}  # fmt: skip
                    attempts.append(attempt)
                    hedge: Hedge | None = None
                    hedged: dict[str, Any] = {}  # the backup's attempt, when a hedge started one
                    if candidate.model.hedge_ms and queue and retry == 0 and ttft is None:
                        backup = queue[0]
                        model_started.setdefault(backup.key, began)
                        hedge = Hedge(
                            _guarded(candidate, model_started[candidate.key], began),
                            _guarded(backup, model_started[backup.key], began),
                            candidate.model.hedge_ms / 1000,
                        )
                        stream = hedge.events()
                    else:
                        stream = _guarded(candidate, model_started[candidate.key], began)
                    error, got = None, deltas
                    try:
                        async for event in stream:
                            if isinstance(event, TextDelta | ToolCallDelta):
                                if ttft is None:
                                    ttft = time.perf_counter() - self.request.started
                                    attempt["ttft"] = round(ttft, 4)
                                if isinstance(event, TextDelta):
                                    parts.append(event.text)
                                    deltas += 1
                                else:
                                    _merge_tool_call(tool_calls, event)
                                if relay:  # blocking clients only wait for the result
                                    self._emit(event)
                            elif isinstance(event, Finish):
                                finish = event
                    except asyncio.CancelledError:
                        status, attempt["status"] = "stopped", "stopped"
                        task = asyncio.current_task()
                        if task is not None:
                            task.uncancel()  # the stop is handled: finish normally from here
                    except PromptdError as exc:
                        error = exc
                    except Exception as exc:  # a provider bug: report it as a provider failure, keep the server up
                        log.exception("provider %r raised an unexpected error", candidate.deployment.provider)
                        error = ProviderError(f"provider failed: {type(exc).__name__}: {exc}")
                    finally:
                        await stream.aclose()  # type: ignore[attr-defined]
                    attempt["duration"] = time.perf_counter() - began
                    if hedge is not None and hedge.started_backup:
                        backup = queue.popleft()  # it ran: it is not tried again
                        hedged = {"model": backup.key, "provider": backup.deployment.provider,
                                  "upstream_model": backup.deployment.model, "hedge": True,
                                  "started": round(began + hedge.delay - self.request.started, 4)}  # fmt: skip
                        attempts.append(hedged)
                        if hedge.winner == 1:  # the backup answered: the outcome is its, the primary lost
                            hedged.update(status=attempt["status"], ttft=attempt.pop("ttft", None))
                            attempt["status"] = "hedged-out"
                            candidate = self.served = backup
                        elif hedge.winner == 0:
                            hedged["status"] = "hedged-out"
                        else:
                            hedged["status"] = "error"
                    outcome = hedged if hedge is not None and hedge.winner == 1 else attempt
                    if finish is not None and finish.usage is not None:
                        billed = (
                            finish.usage,
                            candidate.model.price,
                            _bill(outcome, finish.usage, candidate, estimated=False),
                        )
                    if error is None:
                        if status == "normal":
                            breakers.success(candidate.deployment)
                        break
                    outcome.update(status="error", error=error.message, error_code=error.code)
                    log.warning("upstream failure: %s %s/%s: %s", outcome["model"], outcome["provider"],
                                outcome["upstream_model"], error.code)  # fmt: skip
                    if deltas > got:  # the upstream produced (and billed) tokens the answer will not keep
                        _bill(outcome, Usage(0, deltas - got), candidate, estimated=True)
                    if isinstance(error, ProviderError) and error.code != "provider_bad_request":
                        breakers.failure(candidate.deployment, candidate.model.circuit, time.monotonic())
                    if ttft is not None and self.request.streaming:
                        break  # committed: the client has content, a failure now is final
                    if ttft is not None:  # a blocking client saw nothing yet: start over elsewhere
                        parts.clear()
                        tool_calls.clear()
                        deltas, ttft, finish = 0, None, None
                        model_started[candidate.key] = time.perf_counter()
                    next_step = self._after_failure(error, candidate, retry, rng)
                    if next_step == "retry":
                        await asyncio.sleep(self._delay)
                        continue
                    if next_step == "context":
                        assert candidate.model.context_fallback is not None
                        queue = deque(self.planner.plan(candidate.model.context_fallback, self.request))
                    elif next_step == "final":
                        queue.clear()
                    break
                if error is None or (ttft is not None and self.request.streaming) or status == "stopped":
                    break  # answered, committed, or stopped: no other candidate
        except asyncio.CancelledError:  # stopped between provider streams (a retry's backoff, a stream closing)
            status, error = "stopped", None
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        self._phase = "finishing"  # from here on stop() has nothing to cancel
        status = "stopped" if status == "stopped" else ("error" if error is not None else "normal")
        usage = finish.usage if finish is not None else None
        if usage is None:
            usage = await self._estimate_usage(deltas)
        price = self.served.model.price
        result = GenerationResult(
            answer="".join(parts),
            usage=usage,
            # the answer's cost is the last attempt's bill when that priced the same usage (the usual case)
            cost=billed[2]
            if billed is not None and billed[0] is usage and billed[1] is price
            else price_usage(usage, price),
            status=status,
            finish_reason=finish.reason if finish is not None else ("stop" if status == "stopped" else None),
            latency=time.perf_counter() - self.request.started,
            ttft=ttft,
            error=error,
            model=self.served.key,
            tool_calls=[tool_calls[i] for i in sorted(tool_calls)] or None,
            attempts=attempts,
            upstream_s=sum(a.get("duration", 0.0) for a in attempts if not a.get("hedge")),
        )
        self.result = result
        if self._timer is not None:
            self._timer.cancel()
        self._emit(Done(result))
        try:
            await asyncio.sleep(0)  # the face answers first: metrics, settling and the record are off its path
        finally:
            self._on_done(self, result)  # cancelled or not, the answer is recorded

    def _after_failure(self, error: PromptdError, candidate: Candidate, retry: int, rng: random.Random) -> str:
        """What to do after a failure before the first token: "retry" (after self._delay), "next" candidate,
        "context" (the model's larger-context fallback) or "final"."""
        policy = candidate.model.retry
        if error.code == "context_length_exceeded":
            return "context" if candidate.model.context_fallback else "final"
        if not isinstance(error, ProviderError) or not error.retryable:
            return "final"  # bad requests and content filters are not retried
        if error.code == "first_token_timeout":
            return "next"  # this model's deadline has passed: only another model can help
        if retry >= policy.attempts:
            return "next"
        wait = error.retry_after if isinstance(error, ProviderRateLimited) else None
        if wait is not None and wait > policy.max_retry_after_s:
            return "next"  # waiting that long is worse than another deployment or model
        self._delay = wait if wait is not None else backoff_s(retry, policy, rng)
        return "retry"

    async def _estimate_usage(self, deltas: int) -> Usage:
        """Usage when the provider could not report it (stopped early): deltas, and the provider's prompt count."""
        counter = getattr(self.served.provider, "count_prompt_tokens", None)
        prompt = 0
        if counter is not None:
            try:
                prompt = int(await counter(self.served.call.messages))
            except Exception:
                log.warning("could not count prompt tokens for a stopped generation", exc_info=True)
        if not prompt:
            chars = sum(len(m.content) if isinstance(m.content, str) else 0 for m in self.served.call.messages)
            prompt = max(1, chars // 4)
        return Usage(prompt_tokens=prompt, completion_tokens=deltas)


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
    call = calls.setdefault(delta.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if delta.id:
        call["id"] = delta.id
    if delta.name:
        call["function"]["name"] += delta.name
    call["function"]["arguments"] += delta.arguments


def _bill(attempt: dict[str, Any], usage: Usage, candidate: Candidate, *, estimated: bool) -> Cost:
    """Note an attempt's tokens and their cost (estimated: counted from the deltas, the upstream never said)."""
    attempt["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    if estimated:
        attempt["usage"]["estimated"] = True
    cost = price_usage(usage, candidate.model.price)
    attempt["cost"] = plain(cost.total_price)
    return cost


def _guarded(candidate: Candidate, model_clock: float, began: float) -> AsyncIterator[Any]:
    """The candidate's provider stream under its deadlines (first token, idle gap, total)."""
    model = candidate.model
    stream = candidate.provider.stream(candidate.call)
    if not (candidate.ttft_s or model.idle_timeout_ms or model.total_timeout_ms):
        return stream  # no deadline to watch: no extra layer per event
    return _with_deadlines(
        stream,
        first=model_clock + candidate.ttft_s if candidate.ttft_s else None,
        idle=model.idle_timeout_ms / 1000 if model.idle_timeout_ms else None,
        total=began + model.total_timeout_ms / 1000 if model.total_timeout_ms else None,
    )


async def _with_deadlines(
    stream: Any, *, first: float | None, idle: float | None, total: float | None
) -> AsyncIterator[Any]:
    """Relay `stream` under deadlines (perf_counter times): the first delta by `first`, then no gap between
    events longer than `idle` seconds, and everything by `total`."""
    iterator = stream.__aiter__()
    waiting = True
    while True:
        now = time.perf_counter()
        limits = [t - now for t in (first if waiting else None, total) if t is not None]
        if not waiting and idle is not None:
            limits.append(idle)
        timeout = min(limits) if limits else None
        try:
            if timeout is None:
                event = await iterator.__anext__()
            else:
                if timeout <= 0:
                    raise TimeoutError
                event = await asyncio.wait_for(iterator.__anext__(), timeout)
        except StopAsyncIteration:
            return
        except TimeoutError:
            now = time.perf_counter()
            if total is not None and now >= total - 0.001:
                raise ProviderTimeout("the answer took longer than total_timeout_ms") from None
            if waiting:
                raise FirstTokenTimeout("no first token before the max_ttft_ms deadline") from None
            raise ProviderTimeout("the stream stalled longer than idle_timeout_ms") from None
        if isinstance(event, TextDelta | ToolCallDelta):
            waiting = False
        yield event
