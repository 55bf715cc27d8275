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
from dataclasses import dataclass, replace
from typing import Any, Protocol

from promptd.catalog.schema import Deployment, ModelConfig
from promptd.domain.pricing import Cost, plain
from promptd.engine.billing import bill_attempt, total
from promptd.engine.health import CircuitBreakers
from promptd.engine.hedging import Hedge
from promptd.engine.request import Done, EngineEvent, GenerationRequest, GenerationResult, KeepAlive
from promptd.engine.routing import after_failure
from promptd.errors import PromptdError, ProviderError, ProviderTimeout
from promptd.providers.base import Provider
from promptd.types import Finish, Malformed, Message, ProviderCall, TextDelta, ToolCallDelta, Usage

__all__ = ["STOPPED", "Answer", "Candidate", "FirstTokenTimeout", "Generation", "Planner", "run_attempt"]

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
    dropped: tuple[str, ...] = ()  # parameters the operator chose to drop for this deployment (drop_params)
    continues_after: int = 0  # a rescue: the answer so far (this many deltas) is its prefill, to be continued


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
        self._relay: _Relay | None = None
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
        """Run to the end without streaming (blocking mode): events() without its async generator."""
        while True:
            event = await self._queue.get()
            if isinstance(event, Done):
                return event.result

    async def join(self) -> None:
        """Wait until the generation has finished and its record was handed to the recorder."""
        await asyncio.shield(self._task)

    @property
    def stopped_by(self) -> str | None:
        return self._stopped_by

    @property
    def began_on(self) -> str:
        """The model whose tokens a streaming client was sent first (a rescue may finish on another)."""
        relay = self._relay
        return relay.committed_by if relay is not None and relay.committed_by else self.served.key

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
        answer = Answer()
        attempts: list[dict[str, Any]] = []
        spent: list[_Spent] = []  # per attempt that ran: who, what it reported, what came
        error: PromptdError | None = None
        status = "normal"
        queue = deque(self.candidates)
        model_started = {self.candidates[0].key: self.request.started}  # a model's first-token clock
        breakers, rng = self.planner.breakers, self.planner.rng
        # what a streaming client is sent (blocking: nothing until the result)
        relay = self._relay = _Relay(self._emit, self.candidates[0]) if self.request.streaming else None
        held = self.request.reservation
        capped = held is not None and bool(held.buckets)  # a token or cost limit reserved for max_tokens: hold it
        rescues = 0
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
                if relay is not None:
                    relay.source = candidate.key
                if candidate.continues_after:  # a rescue: its first-token clock starts now
                    model_started[candidate.key] = time.perf_counter()
                model_started.setdefault(candidate.key, time.perf_counter())
                rescue: Candidate | None = None
                for retry in range(candidate.model.retry.attempts + 1):
                    began = time.perf_counter()
                    attempt = _attempt_entry(candidate, began - self.request.started)
                    attempts.append(attempt)
                    hedge: Hedge | None = None
                    if candidate.model.hedge_ms and queue and retry == 0 and answer.ttft is None:
                        backup = queue[0]
                        model_started.setdefault(backup.key, began)
                        hedge = Hedge(
                            _guarded(candidate, model_started[candidate.key], began, capped),
                            _guarded(backup, model_started[backup.key], began, capped),
                            candidate.model.hedge_ms / 1000,
                        )
                        stream: AsyncIterator[Any] = hedge.events()
                    else:
                        stream = _guarded(candidate, model_started[candidate.key], began, capped)
                    got, waiting, answer.finish, skipped = answer.deltas, answer.ttft is None, None, answer.malformed
                    outcome = await run_attempt(stream, answer, relay, self.request.started)
                    attempt["duration"] = time.perf_counter() - began
                    if answer.malformed > skipped:
                        attempt["malformed_chunks"] = answer.malformed - skipped
                    if waiting and answer.ttft is not None:
                        attempt["ttft"] = round(answer.ttft, 4)
                    entry = attempt
                    if hedge is not None and hedge.started_backup:
                        candidate, entry = self._settle_hedge(hedge, queue, attempts, attempt, candidate, began)
                    reported = answer.finish.usage if answer.finish is not None else None
                    came = answer.deltas - got
                    if isinstance(answer.finish, _Cut):  # the upstream went past max_tokens: promptd cut it there
                        entry["cut_at_max_tokens"] = candidate.call.max_tokens
                        came = answer.finish.tokens
                        log.warning("answer cut at max_tokens (%s): %s/%s ignored it", candidate.call.max_tokens,
                                    entry["provider"], entry["upstream_model"])  # fmt: skip
                    spent.append(_Spent(candidate, reported, came, entry))
                    if outcome is STOPPED:
                        status = entry["status"] = "stopped"
                        error = None
                        break
                    assert not isinstance(outcome, _Stopped)
                    error = outcome
                    opened = breakers.observe(candidate.deployment, candidate.model.circuit, error, time.monotonic())
                    if opened:
                        log.warning(
                            "circuit opened for %s/%s", candidate.deployment.provider, candidate.deployment.model
                        )
                    if error is None:
                        if relay is not None:
                            relay.flush()  # a whole answer: whatever was held back is the client's now
                        break
                    entry.update(status="error", error=error.message, error_code=error.code)
                    log.warning("upstream failure: %s %s/%s: %s", entry["model"], entry["provider"],
                                entry["upstream_model"], error.code)  # fmt: skip
                    if relay is not None and relay.committed:  # the client has content: continue it, or fail
                        if rescues < MAX_RESCUES:
                            rescue = _continuation(candidate, retry, queue, answer)
                        if rescue is not None:
                            rescues += 1
                            queue.appendleft(rescue)
                        break
                    if answer.ttft is not None:  # the client saw nothing yet: start over elsewhere
                        answer.reset()
                        if relay is not None:
                            relay.discard()
                        model_started[candidate.key] = time.perf_counter()
                    step, self._delay = after_failure(error, candidate.model, retry, rng)
                    if step == "retry":
                        await asyncio.sleep(self._delay)
                        continue
                    if step == "context":
                        assert candidate.model.context_fallback is not None
                        queue = deque(self.planner.plan(candidate.model.context_fallback, self.request))
                    elif step == "final":
                        queue.clear()
                    break
                if error is None or status == "stopped" or (relay is not None and relay.committed and rescue is None):
                    break  # answered, stopped, or committed with nothing that can continue it
        except asyncio.CancelledError:  # stopped between provider streams (a retry's backoff, a stream closing)
            status, error = "stopped", None
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        self._phase = "finishing"  # from here on stop() has nothing to cancel
        if relay is not None and status == "stopped":
            relay.flush()  # what came before the stop is the client's
        status = "stopped" if status == "stopped" else ("error" if error is not None else "normal")
        usage, cost = await self._bill(spent)
        finish = answer.finish
        text, replaced = "".join(answer.parts), False
        if self.request.output_check is not None and status == "normal":  # moderation: the answer kept
            try:
                kept = await self.request.output_check(text)
                text, replaced = kept, kept != text
            except PromptdError as exc:
                status, error = "error", exc
        result = GenerationResult(
            answer=text,
            replaced=replaced,
            usage=usage,
            cost=cost,
            status=status,
            finish_reason=finish.reason if finish is not None else ("stop" if status == "stopped" else None),
            latency=time.perf_counter() - self.request.started,
            ttft=answer.ttft,
            error=error,
            model=self.served.key,
            tool_calls=answer.calls(),
            logprobs=answer.logprobs,
            attempts=attempts,
            upstream_s=sum(a.get("duration", 0.0) for a in attempts if not a.get("hedge")),
            system_fingerprint=finish.system_fingerprint if finish is not None else None,
        )
        self.result = result
        if self._timer is not None:
            self._timer.cancel()
        try:
            # the record first (the recorder journals it with one write): an answer the client got is never
            # lost with a killed process (docs/operations.md); the face answers right after
            self._on_done(self, result)
        finally:
            self._emit(Done(result))

    def _settle_hedge(
        self,
        hedge: Hedge,
        queue: deque[Candidate],
        attempts: list[dict[str, Any]],
        attempt: dict[str, Any],
        candidate: Candidate,
        began: float,
    ) -> tuple[Candidate, dict[str, Any]]:
        """The backup a hedge started is an attempt of its own: listed, and taken off the queue (it ran). Returns
        the candidate whose outcome this was, and its attempt entry."""
        backup = queue.popleft()
        hedged = _attempt_entry(backup, began + hedge.delay - self.request.started)
        hedged["hedge"] = True
        attempts.append(hedged)
        if hedge.winner == 1:  # the backup answered: the outcome is its, the primary lost
            hedged.update(status=attempt["status"], duration=attempt["duration"])
            if "ttft" in attempt:
                hedged["ttft"] = attempt.pop("ttft")
            attempt["status"] = "hedged-out"
            self.served = backup
            return backup, hedged
        hedged["status"] = "hedged-out" if hedge.winner == 0 else "error"
        return candidate, attempt

    async def _bill(self, spent: list[_Spent]) -> tuple[Usage, Cost]:
        """The call's usage and cost under engine/billing.py's rule, each attempt's bill noted in its entry."""
        bills = []
        for s in spent:
            prompt = await self._count_prompt(s.candidate) if s.reported is None and s.deltas > 0 else None
            bill = bill_attempt(s.reported, s.deltas, prompt, s.candidate.model.price)
            if bill is None:
                continue
            entry = s.entry
            entry["usage"] = {
                "prompt_tokens": bill.usage.prompt_tokens,
                "completion_tokens": bill.usage.completion_tokens,
            }
            if bill.estimated:
                entry["usage"]["estimated"] = True
            entry["cost"] = plain(bill.cost.total_price)
            bills.append(bill)
        return total(bills, self.served.model.price)

    async def _count_prompt(self, candidate: Candidate) -> int:
        """The prompt's tokens as the provider counts them (for a bill it did not report), else estimated."""
        counter = getattr(candidate.provider, "count_prompt_tokens", None)
        if counter is not None:
            try:
                counted = int(await counter(candidate.call.messages))
                if counted:
                    return counted
            except Exception:
                log.warning("could not count prompt tokens for an unreported bill", exc_info=True)
        chars = sum(len(m.content) if isinstance(m.content, str) else 0 for m in candidate.call.messages)
        return max(1, chars // 4)


@dataclass(slots=True)
class _Spent:
    candidate: Candidate
    reported: Usage | None
    deltas: int
    entry: dict[str, Any]


class Answer:
    """The answer as it accumulates over an attempt (or over several, for a blocking client that was never
    shown a token)."""

    __slots__ = ("deltas", "finish", "logprobs", "malformed", "parts", "tool_calls", "ttft")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.deltas = 0
        self.ttft: float | None = None
        self.finish: Finish | None = None
        self.malformed = 0  # chunks the upstream sent that could not be read, skipped
        self.logprobs: list[dict[str, Any]] | None = None

    def reset(self) -> None:
        """Start the answer over (an attempt the client saw nothing of was discarded; it is billed already)."""
        self.parts.clear()
        self.tool_calls.clear()
        self.ttft, self.finish, self.logprobs = None, None, None
        self.deltas = 0  # a rescue continues after the deltas of the answer kept, not of those discarded

    def calls(self) -> list[dict[str, Any]] | None:
        return [self.tool_calls[i] for i in sorted(self.tool_calls)] or None


class _Stopped:
    """The attempt was stopped (cancelled): by the client, a disconnect, a shutdown."""


STOPPED = _Stopped()


async def run_attempt(
    stream: AsyncIterator[Any],
    answer: Answer,
    relay: Callable[[EngineEvent], None] | None,
    started: float,
) -> PromptdError | _Stopped | None:
    """Run one attempt's event stream into `answer`, relaying deltas as they come. Returns None when it
    finished, STOPPED when it was cancelled, or the error that ended it; the stream is closed either way."""
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                if answer.ttft is None:
                    answer.ttft = time.perf_counter() - started
                answer.parts.append(event.text)
                answer.deltas += 1
                if event.logprobs is not None:
                    if answer.logprobs is None:
                        answer.logprobs = []
                    answer.logprobs.extend(event.logprobs)
                if relay is not None:
                    relay(event)
            elif isinstance(event, ToolCallDelta):
                if answer.ttft is None:
                    answer.ttft = time.perf_counter() - started
                _merge_tool_call(answer.tool_calls, event)
                if relay is not None:
                    relay(event)
            elif isinstance(event, Finish):
                answer.finish = event
            elif isinstance(event, Malformed):
                answer.malformed += 1
        return None
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # the stop is handled: finish normally from here
        return STOPPED
    except PromptdError as exc:
        return exc
    except Exception as exc:  # a provider bug: report it as a provider failure, keep the server up
        log.exception("a provider raised an unexpected error")
        return ProviderError(f"provider failed: {type(exc).__name__}: {exc}")
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def _attempt_entry(candidate: Candidate, started: float) -> dict[str, Any]:
    """An attempt as the record lists it (status, ttft, duration, usage and cost are added as it goes)."""
    entry: dict[str, Any] = {
        "model": candidate.key,
        "provider": candidate.deployment.provider,
        "upstream_model": candidate.deployment.model,
        "status": "ok",
        "started": round(started, 4),
    }
    if candidate.dropped:
        entry["dropped_params"] = list(candidate.dropped)
    if candidate.continues_after:
        entry["continued_after"] = candidate.continues_after
    return entry


#: how many times one answer may be continued elsewhere after its stream broke
MAX_RESCUES = 3


def _continuation(failed: Candidate, retry: int, queue: deque[Candidate], answer: Answer) -> Candidate | None:
    """A rescue for a stream that broke after the client had content: the same deployment (while it has
    retries left) or the next candidate, whichever first can continue an answer (its provider `continues`),
    asked to continue the partial answer sent as an assistant prefill. None when nothing can (or the answer
    holds a tool call, which has no prefill)."""
    if answer.tool_calls or not answer.parts:
        return None
    options = ([failed] if retry < failed.model.retry.attempts else []) + list(queue)
    for option in options:
        if not getattr(option.provider, "continues", False):
            continue
        if option is not failed:
            queue.remove(option)
        so_far = "".join(answer.parts)
        call = option.call
        extra = {**call.extra, **getattr(option.provider, "continue_params", {})}
        left = None if call.max_tokens is None else max(1, call.max_tokens - answer.deltas)
        continued = replace(
            call, messages=[*call.messages, Message("assistant", so_far)], extra=extra, max_tokens=left, stream=True
        )
        idle = option.model.idle_timeout_ms
        ttft_s = option.ttft_s or (idle / 1000 if idle else None)  # a silent rescue is bounded too
        return replace(option, call=continued, ttft_s=ttft_s, continues_after=answer.deltas)
    return None


class _Relay:
    """What a streaming client is sent: each delta as it comes, or, when the model sets `commit_after_tokens`
    or `commit_after_ms`, nothing until that many tokens or milliseconds have come (or the answer is whole).
    Until then the answer is not committed: if it fails, it is answered again elsewhere, whole."""

    __slots__ = ("committed", "committed_by", "emit", "first", "held", "ms", "source", "tokens")

    def __init__(self, emit: Callable[[EngineEvent], None], first: Candidate) -> None:
        self.emit = emit
        self.tokens = first.model.commit_after_tokens
        self.ms = first.model.commit_after_ms
        self.source = first.key  # the model of the attempt running
        self.committed_by: str | None = None  # the model whose tokens were sent first
        self.committed = False  # until the client is sent its first delta: a failure before it is retried
        self.held: list[EngineEvent] = []
        self.first: float | None = None

    def __call__(self, event: EngineEvent) -> None:
        if self.committed:
            self.emit(event)
            return
        self.held.append(event)
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        holding = self.tokens or self.ms
        if (
            not holding
            or (self.tokens and len(self.held) >= self.tokens)
            or (self.ms and (now - self.first) * 1000 >= self.ms)
        ):
            self.flush()

    def flush(self) -> None:
        if not self.committed:
            self.committed_by = self.source
        for event in self.held:
            self.emit(event)
        self.held.clear()
        self.committed = True

    def discard(self) -> None:
        self.held.clear()
        self.first = None


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
    call = calls.setdefault(delta.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if delta.id:
        call["id"] = delta.id
    if delta.name:
        call["function"]["name"] += delta.name
    call["function"]["arguments"] += delta.arguments


def _guarded(candidate: Candidate, model_clock: float, began: float, capped: bool = False) -> AsyncIterator[Any]:
    """The candidate's provider stream under its deadlines (first token, idle gap, total), and, when `capped`
    (a budget reserved for max_tokens), cut at its max_tokens."""
    model = candidate.model
    stream = candidate.provider.stream(candidate.call)
    if capped and candidate.call.max_tokens:
        stream = _capped(stream, candidate.call.max_tokens, whole=not candidate.call.stream)
    if not (candidate.ttft_s or model.idle_timeout_ms or model.total_timeout_ms):
        return stream  # no deadline to watch: no extra layer per event
    return _with_deadlines(
        stream,
        first=model_clock + candidate.ttft_s if candidate.ttft_s else None,
        idle=model.idle_timeout_ms / 1000 if model.idle_timeout_ms else None,
        total=began + model.total_timeout_ms / 1000 if model.total_timeout_ms else None,
    )


@dataclass(slots=True)
class _Cut(Finish):
    """The end promptd gave an answer it cut at max_tokens (`tokens`: the completion tokens it kept)."""

    tokens: int = 0


async def _capped(stream: AsyncIterator[Any], cap: int, *, whole: bool) -> AsyncIterator[Any]:
    """`stream` cut at `cap` completion tokens, for an upstream that ignores max_tokens: a budget reserved for
    `cap` then holds. A streamed answer is counted a token per delta (an upstream sends one or more per chunk, so
    an upstream that honours max_tokens is never cut); the delta past `cap` is not relayed and the upstream call
    is closed. An unstreamed reply (`whole`) is held until its usage (else its text, 4 characters a token) says
    how long it is, and its text is cut in proportion. A cut ends with a `_Cut` ("length")."""
    count = 0
    held: list[TextDelta] = []
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                if whole:
                    held.append(event)
                    continue
                if count >= cap:
                    yield _Cut("length", tokens=cap)
                    return
                count += 1
            elif isinstance(event, Finish) and held:
                text = "".join(d.text for d in held)
                usage = event.usage
                used = usage.completion_tokens if usage is not None else len(text) // 4
                if used > cap:
                    yield TextDelta(text[: len(text) * cap // used])
                    kept = None if usage is None else Usage(usage.prompt_tokens, cap)
                    yield _Cut("length", kept, event.system_fingerprint, tokens=cap)
                    return
                for delta in held:
                    yield delta
                held.clear()
            yield event
        for delta in held:  # a reply that ended without its finish: the engine judges it
            yield delta
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


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
