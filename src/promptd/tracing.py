"""OpenTelemetry traces over OTLP/HTTP (protobuf): a span per HTTP request, and one per upstream attempt
with the GenAI semantic conventions (`gen_ai.*`).

Off unless an endpoint is configured (`PROMPTD_OTLP_ENDPOINT`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`):
then nothing here runs and opentelemetry is not even imported (`build_tracer` imports it). The engine and the
request middleware hold a `Tracer` or None, and test for None.

An attempt's span is written when its generation has finished, with the attempt's own start and end times
(the engine notes them in `result.attempts`), as a child of the request's span: the generation task runs in
a copy of the request's context, where the request span is current.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from promptd.catalog.schema import Catalog
    from promptd.engine.request import GenerationRequest, GenerationResult

__all__ = ["GEN_AI_SYSTEMS", "OPERATIONS", "Tracer", "build_tracer", "traces_url"]

#: a provider kind's `gen_ai.system` (an OpenAI-compatible upstream speaks OpenAI's API)
GEN_AI_SYSTEMS: Mapping[str, str] = {"openai": "openai", "anthropic": "anthropic", "local": "llama_cpp"}
#: a call's kind → `gen_ai.operation.name` (speech and transcription have no well-known name: kept as they are)
OPERATIONS: Mapping[str, str] = {"chat": "chat", "embedding": "embeddings"}


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base endpoint (as OTEL_EXPORTER_OTLP_ENDPOINT means it)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracer:
    """promptd's spans on an OpenTelemetry tracer provider (its own, not the process-global one)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import context, trace

        self._provider = provider
        self._tracer = provider.get_tracer("promptd")
        self._context = context
        self._trace = trace

    # --- the HTTP request -----------------------------------------------------------------------------------------

    def start_request(self, method: str, path: str, request_id: str) -> tuple[Span, object]:
        """A server span for the request, made current (for the spans of what the request starts)."""
        span = self._tracer.start_span(
            f"{method} {path}",
            kind=self._trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path, "promptd.request_id": request_id},
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    def end_request(self, span: Span, token: object, status: int | None, project: str | None) -> None:
        self._context.detach(token)  # type: ignore[arg-type]
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(self._trace.StatusCode.ERROR)
        if project is not None:
            span.set_attribute("promptd.project", project)
        span.end()

    # --- the upstream attempts ------------------------------------------------------------------------------------

    def attempts(self, request: GenerationRequest, result: GenerationResult, catalog: Catalog) -> None:
        """One client span per upstream attempt of a finished generation (the attempts' times are relative to
        the request's start)."""
        wall0 = time.time_ns() - int((time.perf_counter() - request.started) * 1e9)  # the start, wall clock
        for attempt in result.attempts:
            provider = catalog.providers.get(attempt["provider"])
            self._attempt(request, result, attempt, provider.kind if provider is not None else "", wall0)

    def _attempt(
        self, request: GenerationRequest, result: GenerationResult, attempt: dict[str, Any], kind: str, wall0: int
    ) -> None:
        upstream = attempt["upstream_model"]
        start = wall0 + int(attempt.get("started", 0.0) * 1e9)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATIONS.get(request.kind, request.kind),
            "gen_ai.system": GEN_AI_SYSTEMS.get(kind, kind),
            "gen_ai.provider.name": GEN_AI_SYSTEMS.get(kind, kind),
            "gen_ai.request.model": upstream,
            "promptd.model": attempt["model"],
            "promptd.provider": attempt["provider"],
            "promptd.attempt.status": attempt.get("status", "ok"),
            "promptd.project": request.project,
        }
        for name, value in (
            ("gen_ai.request.max_tokens", request.max_tokens),
            ("gen_ai.request.temperature", request.call.temperature),
            ("gen_ai.request.top_p", request.call.top_p),
            ("promptd.request_id", request.request_id),
            ("promptd.hedge", attempt.get("hedge")),
            ("promptd.ttft_s", attempt.get("ttft")),
        ):
            if value is not None:
                attributes[name] = value
        usage = attempt.get("usage")
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage["prompt_tokens"]
            attributes["gen_ai.usage.output_tokens"] = usage["completion_tokens"]
        failed = attempt.get("status") == "error"
        if not failed:
            attributes["gen_ai.response.model"] = upstream
            attributes["gen_ai.response.id"] = request.message_id
            if result.finish_reason and attempt.get("status") == "ok":
                attributes["gen_ai.response.finish_reasons"] = [result.finish_reason]
        else:
            attributes["error.type"] = attempt.get("error_code") or "error"
        span = self._tracer.start_span(
            f"{attributes['gen_ai.operation.name']} {upstream}",
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=start,
        )
        if failed:
            span.set_status(self._trace.StatusCode.ERROR, attempt.get("error"))
        duration = attempt.get("duration")
        span.end(end_time=start + int(duration * 1e9) if duration is not None else None)

    def shutdown(self) -> None:
        """Send what is buffered and stop the exporter (the app's lifespan calls this at shutdown)."""
        self._provider.shutdown()


def build_tracer(endpoint: str, *, service_version: str) -> Tracer:
    """A tracer exporting to the collector at `endpoint` (OTLP over HTTP/protobuf, batched)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "promptd", "service.version": service_version}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    return Tracer(provider)
