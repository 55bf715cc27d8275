"""Every HTTP request's id, its Server-Timing header and its access-log line: one pure ASGI middleware.

`Observed` wraps the whole app (the hot routes included). For each request it

- takes the client's `X-Request-Id` when it is printable ASCII of at most 128 characters, else makes one
  (uuid4 hex), and returns it as `X-Request-Id` on the response, errors and SSE streams included;
- keeps a `RequestInfo` in a contextvar for the request's duration: log lines written while serving it carry
  its id (`RequestIdFilter`, promptd/logs.py), the generation tasks it starts inherit it (a task copies the
  context it is created in), and the engine notes there what it learned (project, key, generations);
- adds the `Server-Timing` header (promptd/timing.py) in the same `send` wrapper, so a response passes
  through one layer for both;
- after the last byte, writes one line on the `promptd.access` logger: method, path, status, project, key
  id, model, latency, TTFT, tokens, cost and request id.

The per-request cost is a scan of the request's headers, a uuid4, a contextvar set/reset and the log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptd.timing import header_value
from promptd.uuids import new_hex

if TYPE_CHECKING:
    from promptd.engine.request import GenerationRequest, GenerationResult
    from promptd.tracing import Tracer


class Call(Protocol):
    """A model call the request made: a running generation, or a one-shot call's finished result."""

    @property
    def request(self) -> GenerationRequest: ...

    @property
    def result(self) -> GenerationResult | None: ...


@dataclass(frozen=True, slots=True)
class Finished:
    request: GenerationRequest
    result: GenerationResult


__all__ = [
    "INFO_KEY",
    "MAX_REQUEST_ID",
    "Call",
    "Finished",
    "Observed",
    "RequestInfo",
    "current_request",
    "current_request_id",
    "note_error",
    "note_generation",
    "note_key",
    "request_id_from",
]

log = logging.getLogger("promptd.access")

INFO_KEY = "promptd.request"  # scope[INFO_KEY]: the request's RequestInfo
MAX_REQUEST_ID = 128
_HEADER = b"x-request-id"


@dataclass(slots=True)
class RequestInfo:
    """What is known about one HTTP request, filled in as it is served."""

    request_id: str
    start: float = field(default_factory=time.perf_counter)
    status: int | None = None  # set when the response starts
    project: str | None = None
    key_id: str | None = None
    generations: list[Call] = field(default_factory=list)
    error_code: str | None = None  # promptd's code of the error it was answered with (note_error)

    def fields(self, method: str, path: str) -> dict[str, Any]:
        """The access line's fields (JSON keys; the plain format prints them as key=value)."""
        model: str | None = None
        ttft: float | None = None
        prompt = completion = 0
        cost = Decimal(0)
        currency: str | None = None
        for g in self.generations:
            result = g.result
            if result is None:
                continue
            model = model or result.model
            if result.ttft is not None and (ttft is None or result.ttft < ttft):
                ttft = result.ttft
            prompt += result.usage.prompt_tokens
            completion += result.usage.completion_tokens
            cost += result.cost.total_price
            currency = result.cost.currency
        if model is None and self.generations:
            model = self.generations[0].request.model
        return {
            "method": method,
            "path": path,
            "status": self.status,
            "project": self.project,
            "key_id": self.key_id,
            "model": model,
            "latency_ms": round((time.perf_counter() - self.start) * 1000, 2),
            "ttft_ms": round(ttft * 1000, 2) if ttft is not None else None,
            "prompt_tokens": prompt if self.generations else None,
            "completion_tokens": completion if self.generations else None,
            "cost": format(cost.normalize(), "f") if currency is not None else None,
            "currency": currency,
            "request_id": self.request_id,
        }


_current: ContextVar[RequestInfo | None] = ContextVar("promptd_request", default=None)


def current_request() -> RequestInfo | None:
    return _current.get()


def current_request_id() -> str | None:
    """The id of the HTTP request being served in this context (None outside a request)."""
    info = _current.get()
    return info.request_id if info is not None else None


def note_key(project: str, key_id: str) -> None:
    """The request was authenticated with this key (of this project)."""
    info = _current.get()
    if info is not None:
        info.project, info.key_id = project, key_id


def note_error(code: str) -> None:
    """The request is answered with this error (its code: unauthorized, rate_limit_exceeded, …)."""
    info = _current.get()
    if info is not None:
        info.error_code = code


def note_generation(generation: Call) -> None:
    """The request started this generation (or made this one-shot call, `Finished`): its model, tokens and
    cost go in the access line."""
    info = _current.get()
    if info is not None:
        info.generations.append(generation)
        info.project = info.project or generation.request.project


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-Id when it is usable (printable ASCII, 1 to 128 characters), else a new one."""
    for name, value in headers:
        if name == _HEADER:
            if 0 < len(value) <= MAX_REQUEST_ID and value.isascii():
                text = value.decode("ascii")
                if text.isprintable() and text.strip():
                    return text
            break
    return new_hex()  # uuid4's hex, from buffered OS randomness (uuid.uuid4 is a system call each)


class Observed:
    """The outermost middleware: request id, Server-Timing and the access line (see the module)."""

    __slots__ = ("app", "on_refused", "tracer")

    def __init__(
        self,
        app: ASGIApp,
        tracer: Tracer | None = None,
        on_refused: Callable[[RequestInfo, Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.tracer = tracer  # traces (promptd/tracing.py): None when off
        #: called after a request answered with an error before any model call (promptd/rejections.py)
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = RequestInfo(request_id_from(scope["headers"]))
        scope[INFO_KEY] = info
        rid = info.request_id.encode("ascii")

        async def sent(message: Message) -> None:
            if message["type"] == "http.response.start":
                info.status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"server-timing", header_value(scope, info.start)),
                    (b"x-request-id", rid),
                ]
            await send(message)

        token = _current.set(info)
        tracer = self.tracer
        if tracer is not None:
            span, span_token = tracer.start_request(scope["method"], scope["path"], info.request_id)
        try:
            await self.app(scope, receive, sent)
        except BaseException:
            if info.status is None:
                info.status = 500  # the server answers 500 for an app that raised before answering
            raise
        finally:
            if log.isEnabledFor(logging.INFO):
                _log_access(info, scope)  # still in the request's context: the line carries its id
            if tracer is not None:
                tracer.end_request(span, span_token, info.status, info.project)
            if self.on_refused is not None and info.error_code is not None and not info.generations:
                self.on_refused(info, scope)  # answered with an error (note_error) before any model call
            _current.reset(token)


def _log_access(info: RequestInfo, scope: Scope) -> None:
    """The access line, as `log.log(level, "%s %s %s", method, path, status, extra=...)` would make it, without
    what that costs on every request: the caller's frame looked up, the message formatted from arguments, the
    request id found again through the contextvar (RequestIdFilter keeps a `request_id` already set)."""
    status = info.status or 0
    level = logging.ERROR if status >= 500 else logging.INFO
    method, path = scope["method"], scope["path"]
    record = log.makeRecord(log.name, level, __file__, 0, f"{method} {path} {status}", (), None)
    record.fields = info.fields(method, path)
    record.request_id = info.request_id
    log.handle(record)
