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
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from promptd.catalog.schema import ModelConfig
from promptd.domain.pricing import price_usage
from promptd.engine.request import Done, EngineEvent, GenerationRequest, GenerationResult, KeepAlive
from promptd.errors import PromptdError, ProviderError, ProviderTimeout
from promptd.providers.base import Provider
from promptd.types import Finish, ProviderCall, TextDelta, ToolCallDelta, Usage

__all__ = ["Candidate", "Generation"]

log = logging.getLogger("promptd.engine")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A model the generation may run on: the catalog key, its config, its provider and the call to make."""

    key: str
    model: ModelConfig
    provider: Provider
    call: ProviderCall
    ttft_s: float | None = None  # first-token deadline for this candidate


class FirstTokenTimeout(ProviderTimeout):
    code = "first_token_timeout"


class Generation:
    def __init__(
        self,
        request: GenerationRequest,
        candidates: list[Candidate],
        *,
        on_done: Callable[[Generation, GenerationResult], None],
        keepalive: float | None = None,
    ) -> None:
        self.request = request
        self.candidates = candidates
        self.served = candidates[0]  # the candidate that answered (or the last one tried)
        self._on_done = on_done
        self._queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._keepalive = keepalive
        self._last_event = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped_by: str | None = None
        self.result: GenerationResult | None = None
        self._task = asyncio.create_task(self._run(), name=f"generation-{request.message_id}")
        if keepalive:
            self._timer = asyncio.get_running_loop().call_later(keepalive, self._tick)

    # --- control --------------------------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped by request") -> None:
        """End the generation now; it finishes as 'stopped' with what was generated so far."""
        if self._stopped_by is None and not self._task.done():
            self._stopped_by = reason
            self._task.cancel()

    async def events(self) -> AsyncIterator[EngineEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, Done):
                return

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
        error: PromptdError | None = None
        status = "normal"
        attempt_start = self.request.started
        for number, candidate in enumerate(self.candidates):
            self.served = candidate
            attempt: dict[str, Any] = {
                "model": candidate.key,
                "provider": candidate.model.provider,
                "upstream_model": candidate.model.model,
                "status": "ok",
            }
            attempts.append(attempt)
            deadline = attempt_start + candidate.ttft_s if candidate.ttft_s else None
            stream = candidate.provider.stream(candidate.call)
            error = None
            try:
                async for event in _with_first_token_deadline(stream, deadline):
                    if isinstance(event, TextDelta | ToolCallDelta):
                        if ttft is None:
                            ttft = time.perf_counter() - self.request.started
                            attempt["ttft"] = ttft
                        if isinstance(event, TextDelta):
                            parts.append(event.text)
                            deltas += 1
                        else:
                            _merge_tool_call(tool_calls, event)
                        self._emit(event)
                    elif isinstance(event, Finish):
                        finish = event
            except asyncio.CancelledError:
                status, attempt["status"] = "stopped", "stopped"
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # the stop is handled: finish normally from here
            except PromptdError as exc:
                status, error = "error", exc
            except Exception as exc:  # a provider bug: report it as a provider failure, keep the server up
                log.exception("provider %r raised an unexpected error", candidate.model.provider)
                status, error = "error", ProviderError(f"provider failed: {type(exc).__name__}: {exc}")
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            if error is not None:
                attempt.update(status="error", error=error.message, error_code=error.code)
                more = number + 1 < len(self.candidates)
                if more and ttft is None and isinstance(error, ProviderError) and error.retryable:
                    log.info("falling back from %s after %s", candidate.key, error.code)
                    attempt_start = time.perf_counter()
                    status = "normal"
                    continue
            break
        usage = finish.usage if finish is not None else None
        if usage is None:
            usage = await self._estimate_usage(deltas)
        result = GenerationResult(
            answer="".join(parts),
            usage=usage,
            cost=price_usage(usage, self.served.model.price),
            status=status,
            finish_reason=finish.reason if finish is not None else ("stop" if status == "stopped" else None),
            latency=time.perf_counter() - self.request.started,
            ttft=ttft,
            error=error,
            model=self.served.key,
            tool_calls=[tool_calls[i] for i in sorted(tool_calls)] or None,
            attempts=attempts,
        )
        self.result = result
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._on_done(self, result)
        finally:
            self._emit(Done(result))

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


async def _with_first_token_deadline(stream: Any, deadline: float | None) -> AsyncIterator[Any]:
    """Relay `stream`; until its first delta, give up (FirstTokenTimeout) at `deadline` (perf_counter time)."""
    iterator = stream.__aiter__()
    waiting = deadline is not None
    while True:
        try:
            if waiting:
                assert deadline is not None
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError
                event = await asyncio.wait_for(iterator.__anext__(), remaining)
            else:
                event = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            if not waiting:
                raise
            raise FirstTokenTimeout("no first token before the max_ttft_ms deadline") from None
        if isinstance(event, TextDelta | ToolCallDelta):
            waiting = False
        yield event
