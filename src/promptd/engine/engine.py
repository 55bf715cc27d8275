"""The engine: resolve a request to a model and provider, start the generation, record the outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from promptd.catalog.schema import Catalog, ModelConfig
from promptd.domain.pricing import plain
from promptd.engine.generation import Generation
from promptd.engine.request import GenerationRequest, GenerationResult
from promptd.engine.tasks import TaskRegistry
from promptd.errors import ConflictError, NotFound
from promptd.providers.base import Provider
from promptd.store.recorder import Recorder, Row
from promptd.store.repository import end_user_row
from promptd.store.tables import messages
from promptd.types import ProviderCall

__all__ = ["Engine"]

log = logging.getLogger("promptd.engine")


class Engine:
    def __init__(self, catalog: Catalog, providers: Mapping[str, Provider], recorder: Recorder) -> None:
        self.catalog = catalog
        self.providers = providers
        self.recorder = recorder
        self.tasks = TaskRegistry()

    def model(self, project: str, model: str | None) -> tuple[str, ModelConfig]:
        """The catalog model a request for `project` (and optionally `model`) runs on."""
        proj = self.catalog.projects.get(project)
        if proj is None:
            raise NotFound(f"project {project!r} does not exist")
        key = model or proj.default
        if key not in proj.models:
            raise NotFound(f"model {key!r} does not exist or is not attached to project {project!r}")
        return key, self.catalog.models[key]

    def start(self, request: GenerationRequest, *, keepalive: float | None = None) -> Generation:
        model = self.catalog.models[request.model]
        provider = self.providers.get(model.provider)
        if provider is None:
            raise ConflictError(f"provider {model.provider!r} is not available", code="provider_not_initialize")
        project = self.catalog.projects[request.project]
        max_tokens = request.max_tokens or project.max_tokens or model.max_tokens
        temperature = request.temperature if request.temperature is not None else project.temperature
        call = ProviderCall(
            model=model.model,
            messages=request.messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=request.top_p,
            stop=request.stop,
        )
        generation = Generation(
            request, model=model, provider=provider, call=call, on_done=self._done, keepalive=keepalive
        )
        self.tasks.add(generation)
        return generation

    def _done(self, generation: Generation, result: GenerationResult) -> None:
        self.tasks.remove(generation)
        req = generation.request
        if not req.store:
            return
        rows: list[Row] = []
        if req.end_user_id is not None and req.user is not None:
            rows.append(end_user_row(req.end_user_id, req.project, req.user, req.created_at))
        error = result.error
        if error is None and generation.stopped_by and generation.stopped_by != "stopped by request":
            error_text: str | None = generation.stopped_by
        else:
            error_text = error.message if error is not None else None
        rows.append(
            Row(
                messages,
                {
                    "id": req.message_id,
                    "project": req.project,
                    "face": req.face,
                    "task_id": req.task_id,
                    "end_user_id": req.end_user_id,
                    "user": req.user,
                    "key_id": req.key_id,
                    "model": req.model,
                    "provider": generation.model.provider,
                    "upstream_model": generation.model.model,
                    "inputs": req.inputs,
                    "query": req.query,
                    "prompt": [m.to_openai() for m in generation.call.messages],
                    "files": req.files,
                    "answer": result.answer,
                    "status": result.status,
                    "error": error_text,
                    "error_code": error.code if error is not None else None,
                    "finish_reason": result.finish_reason,
                    "prompt_tokens": result.usage.prompt_tokens,
                    "completion_tokens": result.usage.completion_tokens,
                    "total_tokens": result.usage.total_tokens,
                    "prompt_price": plain(result.cost.prompt_price),
                    "completion_price": plain(result.cost.completion_price),
                    "total_price": plain(result.cost.total_price),
                    "currency": result.cost.currency,
                    "latency": result.latency,
                    "ttft": result.ttft,
                    "created_at": req.created_at,
                },
            )
        )
        self.recorder.submit(*rows)

    async def aclose(self) -> None:
        """Stop what still runs (in-flight streams had their grace period) and wait for their records."""
        running = self.tasks.all()
        for generation in running:
            generation.stop("server shutting down")
        await asyncio.gather(*(g.join() for g in running), return_exceptions=True)
