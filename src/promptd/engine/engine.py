"""The engine: resolve a request to a model and provider, start the generation, record the outcome."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping

from promptd.catalog.schema import CampaignConfig, Catalog, ModelConfig
from promptd.coord.base import Coordinator, StopSignal
from promptd.coord.memory import MemoryCoordinator
from promptd.domain.campaigns import assign, campaign_uuid
from promptd.domain.limits import Limits
from promptd.domain.pricing import plain
from promptd.engine.admission import Admission, SpentLookup
from promptd.engine.generation import Candidate, Generation
from promptd.engine.request import GenerationRequest, GenerationResult
from promptd.engine.routing import CircuitBreakers, weighted_order
from promptd.engine.tasks import TaskRegistry
from promptd.errors import ConflictError, InputError, NotFound
from promptd.metrics import Metrics
from promptd.providers.base import Provider
from promptd.store.recorder import Recorder, Row
from promptd.store.repository import end_user_row
from promptd.store.tables import messages
from promptd.types import ProviderCall

__all__ = ["Engine", "campaign_id"]


def campaign_id(project: str, key: str, campaign: CampaignConfig) -> str:
    """The campaign's UUID: declared in the catalog, or derived from the project and key."""
    return campaign.id or campaign_uuid(project, key)


log = logging.getLogger("promptd.engine")


def _text(value: str | None) -> str | None:
    """A text column's value without NUL characters, which PostgreSQL text cannot hold (the record would be
    refused whole). JSON columns keep them, escaped."""
    return value.replace("\x00", "") if value and "\x00" in value else value


async def _nothing_spent(scope: str, ident: str, window: str, window_id: str) -> int:
    return 0


class Engine:
    def __init__(
        self,
        catalog: Catalog,
        providers: Mapping[str, Provider],
        recorder: Recorder,
        metrics: Metrics | None = None,
        *,
        coordinator: Coordinator | None = None,
        spent: SpentLookup = _nothing_spent,
        reserve_max_tokens: int = 1024,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics or Metrics()
        self.providers = providers
        self.recorder = recorder
        self.tasks = TaskRegistry()
        self.breakers = CircuitBreakers()
        self.rng = random.Random()
        self.coordinator: Coordinator = coordinator or MemoryCoordinator()
        self.admission = Admission(catalog, self.coordinator, spent, reserve_max_tokens=reserve_max_tokens)

    async def start_coordination(self) -> None:
        """Connect the coordinator and take stop signals from every replica (the lifespan calls this)."""
        await self.coordinator.start(self._stop_signal)

    def _stop_signal(self, signal: StopSignal) -> None:
        self.tasks.stop(signal.task_id, project=signal.project, end_user_id=signal.end_user_id)

    async def admit(self, requests: list[GenerationRequest], key_limits: Limits) -> None:
        """Check and reserve rate limits and budgets for one API call (engine/admission.py)."""
        try:
            await self.admission.admit(requests, key_limits)
        except Exception as exc:
            self.metrics.limited.inc(project=requests[0].project, code=getattr(exc, "code", "error"))
            raise

    async def stop(self, task_id: str, *, project: str, end_user_id: str | None) -> None:
        """Stop a running generation, here or (with a shared coordinator) on whichever replica runs it."""
        if self.tasks.stop(task_id, project=project, end_user_id=end_user_id) or not self.coordinator.shared:
            return
        await self.coordinator.publish_stop(StopSignal(task_id, project, end_user_id))

    def model(self, project: str, model: str | None) -> tuple[str, ModelConfig]:
        """The catalog model a request for `project` (and optionally `model`) runs on."""
        proj = self.catalog.projects.get(project)
        if proj is None:
            raise NotFound(f"project {project!r} does not exist")
        key = model or proj.default
        if key not in proj.models:
            raise NotFound(f"model {key!r} does not exist or is not attached to project {project!r}")
        return key, self.catalog.models[key]

    def campaign(self, project: str, id_or_key: str) -> tuple[str, CampaignConfig]:
        for key, campaign in self.catalog.projects[project].campaigns.items():
            if id_or_key in (key, campaign_id(project, key, campaign)):
                return key, campaign
        raise NotFound(f"A/B campaign {id_or_key!r} does not exist in project {project!r}")

    def route(self, project: str, model: str | None, *, ab_campaign: str | None, who: str) -> tuple[str, str | None]:
        """(model, campaign key or None) for a request: an explicit model wins, then a forced campaign, then
        each active campaign takes its traffic share, then the project's default model."""
        self.model(project, model)  # the project exists and the model, if named, is attached
        if ab_campaign is not None:
            key, campaign = self.campaign(project, ab_campaign)
            if campaign.status != "active":
                raise ConflictError(f"A/B campaign {key!r} is {campaign.status}, not active", code="campaign_inactive")
            if model is not None:
                if model not in campaign.models:
                    raise InputError(f"model {model!r} is not part of A/B campaign {key!r}", param="model")
                return model, key
            cid = campaign_id(project, key, campaign)
            chosen = assign(cid, who, campaign.models, campaign.traffic_split, forced=True)
            assert chosen is not None
            return chosen, key
        if model is not None:
            return model, None
        proj = self.catalog.projects[project]
        for key, campaign in proj.campaigns.items():
            if campaign.status == "active":
                chosen = assign(
                    campaign_id(project, key, campaign), who, campaign.models, campaign.traffic_split, forced=False
                )
                if chosen is not None:
                    return chosen, key
        return proj.default, None

    def plan(self, model_key: str, request: GenerationRequest) -> list[Candidate]:
        """Every deployment to try, in order: the model's by weight, then each fallback's. Deployments whose
        circuit is open go last (tried only when everything else failed)."""
        project = self.catalog.projects[request.project]
        healthy: list[Candidate] = []
        cooling: list[Candidate] = []
        now = time.monotonic()
        for key in (model_key, *self.catalog.models[model_key].fallbacks):
            model = self.catalog.models[key]
            ttft_ms = request.max_ttft_ms if request.max_ttft_ms is not None else model.max_ttft_ms
            # a blocking answer with no first-token deadline and no hedge needs no chunks: one reply is cheaper
            stream = request.streaming or bool(ttft_ms) or bool(model.hedge_ms)
            for deployment in weighted_order(model.all_deployments, self.rng):
                provider = self.providers.get(deployment.provider)
                if provider is None:
                    continue
                call = ProviderCall(
                    model=deployment.model,
                    messages=request.messages,
                    max_tokens=request.max_tokens or project.max_tokens or model.max_tokens,
                    temperature=request.temperature if request.temperature is not None else project.temperature,
                    top_p=request.top_p,
                    stop=request.stop,
                    tools=request.tools,
                    extra=request.extra,
                    stream=stream,
                )
                candidate = Candidate(key, model, deployment, provider, call, ttft_ms / 1000 if ttft_ms else None)
                (cooling if self.breakers.is_open(deployment, now) else healthy).append(candidate)
        return healthy + cooling

    def start(self, request: GenerationRequest, *, keepalive: float | None = None) -> Generation:
        """Start generating on the planned deployments (retries, fallbacks and deadlines: engine/generation.py)."""
        candidates = self.plan(request.model, request)
        if not candidates:
            self.admission.release(request)
            provider_name = self.catalog.models[request.model].provider
            raise ConflictError(f"provider {provider_name!r} is not available", code="provider_not_initialize")
        generation = Generation(request, candidates, planner=self, on_done=self._done, keepalive=keepalive)
        self.tasks.add(generation)
        return generation

    def _observe(self, generation: Generation, result: GenerationResult) -> None:
        m, req = self.metrics, generation.request
        labels: dict[str, str] = {"project": req.project, "model": result.model}
        m.requests.inc(face=req.face, status=result.status, **labels)
        if result.error is not None:
            m.errors.inc(code=result.error.code, **labels)
        m.latency.observe(result.latency, **labels)
        if result.ttft is not None:
            m.ttft.observe(result.ttft, **labels)
        m.overhead.observe(max(0.0, result.latency - result.upstream_s), face=req.face)
        m.tokens.inc(result.usage.prompt_tokens, kind="prompt", **labels)
        m.tokens.inc(result.usage.completion_tokens, kind="completion", **labels)
        m.cost.inc(float(result.cost.total_price), currency=result.cost.currency, **labels)
        for attempt in result.attempts:
            m.attempts.inc(provider=attempt["provider"], status=attempt.get("status", "ok"))

    def _done(self, generation: Generation, result: GenerationResult) -> None:
        self.tasks.remove(generation)
        self._observe(generation, result)
        req = generation.request
        self.admission.settle(req, result)
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
                    "model": result.model,
                    "provider": generation.served.deployment.provider,
                    "upstream_model": generation.served.deployment.model,
                    "inputs": req.inputs,
                    "query": _text(req.query),
                    "prompt": [m.to_openai() for m in req.messages],
                    "files": req.files,
                    "answer": _text(result.answer),
                    "status": result.status,
                    "error": _text(error_text),
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
                    "session_id": req.session_id,
                    "choice_index": req.choice_index,
                    "labels": req.labels,
                    "tags": req.tags,
                    "campaign": req.campaign,
                    "attempts": result.attempts,
                    "retriever_resources": req.retriever_resources,
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
        await self.admission.aclose()
        await self.coordinator.aclose()
