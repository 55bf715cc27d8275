"""The engine: the one way into a model. Every kind of call (chat and completion, embeddings, speech,
transcription) enters through an entry point here, which resolves the project and model (A/B included), renders
the prompt, admits the call against every limit and budget, routes it (retries, fallbacks, deadlines, hedging,
circuit breakers), bills it (engine/billing.py), meters it (metrics, usage rollups, settled budgets) and records
it (store/records.py), whatever face it came from and whatever `store` says. Faces parse, authenticate, call an
entry point and encode what comes back; they never reach a provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from promptd.access import Finished, note_generation
from promptd.catalog.schema import CampaignConfig, Catalog, Deployment, ModelConfig, ProjectConfig
from promptd.coord.base import Coordinator, StopSignal
from promptd.coord.memory import MemoryCoordinator
from promptd.domain.campaigns import assign, campaign_uuid
from promptd.domain.ids import end_user_id
from promptd.domain.limits import Limits
from promptd.engine.admission import Admission, SpentLookup
from promptd.engine.billing import bill_attempt, total
from promptd.engine.call import (
    ChatCall,
    EmbeddingCall,
    Origin,
    RerankCall,
    SpeechCall,
    TranscriptionCall,
    for_call,
)
from promptd.engine.generation import Candidate, Generation
from promptd.engine.health import CircuitBreakers
from promptd.engine.leases import IDLE, Leases
from promptd.engine.moderation import PRESET, Guard, Moderation, PresetAnswer, guard_input
from promptd.engine.pending import make_all
from promptd.engine.prompting import Prompt, render
from promptd.engine.request import GenerationRequest, GenerationResult
from promptd.engine.routing import after_failure, weighted_order
from promptd.engine.tasks import TaskRegistry
from promptd.errors import ConflictError, InputError, NotFound, PromptdError, ProviderBadRequest, ProviderError
from promptd.metrics import Metrics
from promptd.providers.base import (
    EmbeddingProvider,
    Provider,
    RerankProvider,
    SpeechProvider,
    TokenEmbeddingProvider,
    low_detail_asked,
    output_cap,
    supported,
    unreadable,
    unsupported,
)
from promptd.store.recorder import Recorder
from promptd.store.records import CallRecord
from promptd.tracing import Tracer
from promptd.types import Message, ProviderCall, Transcript, Usage, media_kinds
from promptd.uuids import new_uuid

__all__ = ["Engine", "Grounding", "Run", "UnaryResult", "campaign_id"]

T = TypeVar("T")


class Grounding(Protocol):
    async def ground(self, call: ChatCall, origin: Origin, project: ProjectConfig) -> ChatCall:
        """`call` with the retrieved context of `project`'s knowledge in its prompt (and `retriever_resources`)."""
        ...


@dataclass(slots=True)
class Run:
    """A started chat or completion call: its generations (one per choice), on `model`."""

    model: str  # the catalog model routed to (a fallback may answer: each result says which)
    campaign: str | None
    generations: list[Generation]

    async def results(self) -> list[GenerationResult]:
        """Wait for every choice (blocking mode)."""
        if len(self.generations) == 1:  # the usual case: no gather (a task per choice) needed
            return [await self.generations[0].wait()]
        return list(await asyncio.gather(*(g.wait() for g in self.generations)))


@dataclass(slots=True)
class UnaryResult(Generic[T]):
    """A one-shot call's answer (vectors, audio, text) with its metered result."""

    value: T
    result: GenerationResult
    request: GenerationRequest


def campaign_id(project: str, key: str, campaign: CampaignConfig) -> str:
    """The campaign's UUID: declared in the catalog, or derived from the project and key."""
    return campaign.id or campaign_uuid(project, key)


log = logging.getLogger("promptd.engine")


async def _nothing_spent(scope: str, ident: str, window: str, window_id: str) -> int:
    return 0


def _unreadable(model_key: str, kinds: set[str]) -> InputError:
    names = ", ".join(sorted(kinds))
    return InputError(
        f"messages: {names} content is not supported by model {model_key!r} (nor its fallbacks)",
        code="unsupported_content",
        param="messages",
    )


def _declared(project: ProjectConfig, kind: str) -> tuple[str, str | None]:
    """(the catalog key that declares it, the model) of `project`'s own model for one-shot calls of `kind`."""
    if kind == "embedding":
        return "embedding_model", project.embedding_model
    if kind == "text_to_speech":
        return "audio.text_to_speech", project.audio.text_to_speech
    return "audio.speech_to_text", project.audio.speech_to_text


def _takes_tokens(provider: Any) -> bool:
    """Whether an embedding call of token ids may be tried on `provider`: one that sends them to its upstream, or
    one that embeds nothing (it fails as it would for text)."""
    return isinstance(provider, TokenEmbeddingProvider) or not isinstance(provider, EmbeddingProvider)


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
        limit_slice_idle: float = IDLE,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics or Metrics()
        self.providers = providers
        self.recorder = recorder
        self.tasks = TaskRegistry()
        self.breakers = CircuitBreakers()
        self.rng = random.Random()
        self.coordinator: Coordinator = coordinator or MemoryCoordinator()
        self.admission = Admission(
            catalog,
            self.coordinator,
            spent,
            reserve_max_tokens=reserve_max_tokens,
            leases=Leases(self.coordinator, idle=limit_slice_idle),
        )
        self.tracer: Tracer | None = None  # spans of the upstream attempts (promptd/tracing.py), when configured
        self.moderation = Moderation(catalog, providers, self.metrics)
        self.catalog_version = ""  # stored with each record (promptd/reload.py)
        self.grounding: Grounding | None = None  # knowledge (knowledge/prompt.py), when the server has it

    def use_catalog(self, catalog: Catalog, providers: Mapping[str, Provider], version: str) -> None:
        """Serve with this catalog from now on (a reload: promptd/reload.py); generations in flight go on."""
        self.catalog, self.providers, self.catalog_version = catalog, providers, version
        self.admission.use_catalog(catalog)
        self.moderation.use_catalog(catalog, providers)

    async def start_coordination(self) -> None:
        """Connect the coordinator and take stop signals from every replica (the lifespan calls this)."""
        await self.coordinator.start(self._stop_signal)

    def _stop_signal(self, signal: StopSignal) -> None:
        self.tasks.stop(signal.task_id, project=signal.project, end_user_id=signal.end_user_id)

    async def admit(self, requests: list[GenerationRequest], key_limits: Limits, *, grown: bool = False) -> None:
        """Check and reserve rate limits and budgets for one API call (engine/admission.py)."""
        try:
            await self.admission.admit(requests, key_limits, grown=grown)
        except Exception as exc:
            code = getattr(exc, "code", "error")
            self.metrics.limited.inc(project=requests[0].project, code=code)
            log.info("limit hit: project %s key %s: %s (%s)", requests[0].project, requests[0].key_id, code, exc)
            raise

    async def stop(self, task_id: str, *, project: str, end_user_id: str | None) -> None:
        """Stop a running generation, here or (with a shared coordinator) on whichever replica runs it."""
        if self.tasks.stop(task_id, project=project, end_user_id=end_user_id) or not self.coordinator.shared:
            return
        await self.coordinator.publish_stop(StopSignal(task_id, project, end_user_id))

    def model(self, project: str, model: str | None) -> tuple[str, ModelConfig]:
        """The catalog model a request for `project` (and optionally `model`) runs on (else `model_not_found`)."""
        proj = self.catalog.projects.get(project)
        if proj is None:
            raise NotFound(f"project {project!r} does not exist", code="model_not_found", param="model")
        key = model or proj.default
        if key not in proj.models:
            message = f"model {key!r} does not exist or is not attached to project {project!r}"
            raise NotFound(message, code="model_not_found", param="model")
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

    # --- the entry points ------------------------------------------------------------------------------------------

    async def generate(self, call: ChatCall, origin: Origin, *, keepalive: float | None = None) -> Run:
        """Run a chat or completion call: resolve the project and model (A/B included), render the prompt, admit
        it against every limit, and start its `n` generations on the planned deployments (retries, fallbacks,
        deadlines, hedging). Each generation is metered, settled and recorded when it ends (`_done`). Raises
        before anything starts: an unknown project or model, a bad input or template, a limit reached."""
        self._project(origin.project)
        model, campaign = self.route(
            origin.project,
            origin.model,
            ab_campaign=origin.ab_campaign,
            who=origin.sticky or origin.session_id or origin.user or new_uuid(),
        )
        self._check_window(model, call)
        prompt = render(self.catalog, origin.project, model, call)
        project = self.catalog.projects[origin.project]
        end_user = end_user_id(origin.project, origin.user) if origin.user is not None else None
        requests = [
            GenerationRequest(
                call=call,
                origin=origin,
                model=model,
                messages=prompt.messages,
                tools=prompt.tools,
                max_tokens=call.max_tokens or project.max_tokens or self.catalog.models[model].max_tokens,
                campaign=campaign,
                query=prompt.query,
                inputs=prompt.inputs,
                end_user_id=end_user,
                choice_index=i,
            )
            for i in range(call.n)
        ]
        self._readable(model, requests[0])  # before admission, and before any file is fetched for the call
        await self.admit(requests, origin.key_limits)
        try:
            guard = await self._admitted(requests, model, origin, prompt)
        except BaseException:
            for req in requests:
                self.admission.release(req)
            raise
        preset = guard.preset if guard is not None else None
        generations: list[Generation] = []
        try:
            for i, req in enumerate(requests):
                generations.append(self._start(req, keepalive=keepalive if i == 0 else None, preset=preset))
        except BaseException:
            for req in requests[len(generations) :]:
                self.admission.release(req)
            for started in generations:
                started.stop("another choice could not start")
            raise
        return Run(model, campaign, generations)

    async def _admitted(
        self, requests: list[GenerationRequest], model: str, origin: Origin, prompt: Prompt
    ) -> Guard | None:
        """Input moderation, then the call's pending parts (remote files fetched, remote URLs passed on vetted by the
        URL guard, transcripts: engine/pending.py),
        then the knowledge search, for an admitted call: a call a limit refuses calls neither the moderation
        service nor a search, and fetches nothing. Flagged input fetches and searches nothing (its preset answer
        is given). The model calls made for the call (a transcript, the search's embeddings) are governed as such
        (`for_call`: its tokens and cost, not one more request). A prompt they change (inputs the moderation API
        rewrote, the files' content, the context) is reserved for again before anything starts."""
        call = requests[0].call
        asked = (call.form.query or None) if call.form is not None else prompt.query  # the form's inputs hold the rest
        guard = await guard_input(self.moderation, origin.project, prompt.inputs or {}, asked)
        preset = guard is not None and guard.preset is not None
        changed = False
        if guard is not None:
            for req in requests:
                guard.attach(req)
            if guard.overridden and call.form is not None:  # the moderation API rewrote them
                query = guard.query if guard.query is not None else call.form.query
                call = replace(call, form=replace(call.form, inputs=prompt.inputs or {}, query=query))
                changed = True
        if call.pending and not preset:
            changed = await make_all(call.pending, for_call(origin)) or changed
        project = self.catalog.projects[origin.project]
        if project.knowledge and self.grounding is not None and not preset:
            call = await self.grounding.ground(call, origin, project)
            changed = True
        if changed:
            prompt = render(self.catalog, origin.project, model, call)
            for req in requests:
                req.call, req.messages, req.query, req.inputs = call, prompt.messages, prompt.query, prompt.inputs
            await self.admit(requests, origin.key_limits, grown=True)
        return guard

    async def embed(
        self, call: EmbeddingCall, origin: Origin, *, model: str | None = None
    ) -> UnaryResult[list[list[float]]]:
        """Embeddings of `call.texts` (or of its token ids) on the project's embedding model (or the one the client
        named), governed like a chat: token ids count as that many prompt tokens. `model` is a catalog model chosen
        by the server, not the client (a knowledge base's)."""
        key = self._catalog_model(model) if model is not None else self._unary_model(origin, "embedding")
        ids = call.tokens
        if ids is not None:  # token ids: sent only where they reach the upstream's tokenizer, counted exactly
            self._token_embedder(key)
            messages = [Message("user", json.dumps(t)) for t in ids]  # the record keeps the ids as sent
            count, prompt_tokens = len(ids), sum(len(t) for t in ids)
        else:
            messages = [Message("user", t) for t in call.texts]
            count, prompt_tokens = len(call.texts), None
        query = str(messages[0].content)

        async def attempt(provider: Any, upstream: str) -> tuple[list[list[float]], Usage | None]:
            if not isinstance(provider, EmbeddingProvider):
                raise ProviderBadRequest(f"provider of model {key!r} cannot make embeddings")
            if ids is not None:
                if not isinstance(provider, TokenEmbeddingProvider):  # not planned (usable): never here
                    raise ProviderBadRequest(f"provider of model {key!r} cannot embed token ids")
                vectors, tokens = await provider.embed_tokens(model=upstream, tokens=ids)
            else:
                vectors, tokens = await provider.embed(model=upstream, texts=call.texts)
            if len(vectors) != count:
                raise ProviderError(f"model {key!r} returned {len(vectors)} embeddings for {count} inputs")
            if call.dimensions:
                vectors = [v[: call.dimensions] for v in vectors]
            return vectors, Usage(prompt_tokens=int(tokens))

        usable = _takes_tokens if ids is not None else None
        return await self._unary(
            "embedding",
            origin,
            key,
            messages,
            attempt,
            query=query,
            prompt_tokens=prompt_tokens,
            usable=usable,
        )

    def _token_embedder(self, key: str) -> None:
        """A 400 naming `input` unless some deployment of model `key` (or of a fallback) can send token ids to its
        upstream: those are the upstream tokenizer's, which promptd cannot translate for another model."""
        embedders = [
            self.providers[d.provider]
            for k in (key, *self.catalog.models[key].fallbacks)
            for d in self.catalog.models[k].all_deployments
            if isinstance(self.providers.get(d.provider), EmbeddingProvider)
        ]
        if embedders and not any(isinstance(p, TokenEmbeddingProvider) for p in embedders):
            raise InputError(
                f"model {key!r} takes text only: its provider cannot embed token ids; send `input` as text "
                "(LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)",
                param="input",
            )

    async def rerank(self, call: RerankCall, origin: Origin, *, model: str) -> UnaryResult[list[float]]:
        """A relevance score per document on the catalog model `model` (a knowledge base's), governed like a chat."""
        key = self._catalog_model(model)
        messages = [Message("user", call.query), *(Message("user", d) for d in call.documents)]  # the prompt bound

        async def attempt(provider: Any, upstream: str) -> tuple[list[float], Usage | None]:
            if not isinstance(provider, RerankProvider):
                raise ProviderBadRequest(f"provider of model {key!r} cannot rerank")
            scores, tokens = await provider.rerank(model=upstream, query=call.query, documents=call.documents)
            if len(scores) != len(call.documents):
                raise ProviderError(f"model {key!r} returned {len(scores)} scores for {len(call.documents)} documents")
            return scores, Usage(prompt_tokens=int(tokens))

        return await self._unary("rerank", origin, key, messages, attempt, query=call.query)

    async def speak(self, call: SpeechCall, origin: Origin, model: str | None = None) -> UnaryResult[tuple[bytes, str]]:
        """Text to speech on `model` (a catalog model chosen by the server: the Dify face's project's), else on the
        model the client named or the project's text-to-speech model (`_unary_model`), governed like a chat."""
        key = model if model is not None else self._unary_model(origin, "text_to_speech")
        voice = call.voice or ""

        async def attempt(provider: Any, upstream: str) -> tuple[tuple[bytes, str], Usage | None]:
            if not isinstance(provider, SpeechProvider):
                raise ProviderBadRequest(f"provider of model {key!r} cannot do speech")
            return await provider.speak(model=upstream, text=call.text, voice=voice, params=call.params), None

        return await self._unary("speech", origin, key, [Message("user", call.text)], attempt, query=call.text)

    async def transcribe(
        self, call: TranscriptionCall, origin: Origin, model: str | None = None
    ) -> UnaryResult[Transcript]:
        """Speech to text (or, `call.translate`, to English text) on `model` (a catalog model chosen by the server),
        else on the model the client named or the project's speech-to-text model, governed like a chat."""
        key = model if model is not None else self._unary_model(origin, "speech_to_text")

        async def attempt(provider: Any, upstream: str) -> tuple[Transcript, Usage | None]:
            if not isinstance(provider, SpeechProvider):
                raise ProviderBadRequest(f"provider of model {key!r} cannot do speech")
            transcript = await provider.transcribe(
                model=upstream,
                filename=call.filename,
                data=call.data,
                mime_type=call.mime_type,
                params=call.params,
                translate=call.translate,
            )
            return transcript, transcript.usage

        kind = "translation" if call.translate else "transcription"
        return await self._unary(kind, origin, key, [Message("user", "")], attempt, answer=lambda t: t.text)

    # --- planning and running ----------------------------------------------------------------------------------

    def _check_window(self, model_key: str, call: ChatCall) -> None:
        """A client's max_tokens that no deployment of the model (nor of its fallbacks) can give is a 400, as
        OpenAI's; checked before admission, which would otherwise reserve tokens and cost for it. `plan` passes
        over the deployments too small for it."""
        if call.max_tokens is None:
            return
        caps: list[int] = []
        for key in (model_key, *self.catalog.models[model_key].fallbacks):
            for deployment in self.catalog.models[key].all_deployments:
                provider = self.providers.get(deployment.provider)
                if provider is None:
                    continue
                cap = output_cap(provider, call.max_tokens)
                if cap is None:
                    return  # this one can
                caps.append(cap)
        if caps:
            asked, name = call.max_tokens, call.token_param
            raise InputError(
                f"{name} is too large: {asked}. This model supports at most {max(caps)} completion tokens, "
                f"whereas you provided {asked}.",
                param=name,
            )

    def plan(self, model_key: str, request: GenerationRequest) -> list[Candidate]:
        """Every deployment to try, in order: the model's by weight, then each fallback's. Deployments whose
        circuit is open go last (tried only when everything else failed)."""
        project = self.catalog.projects[request.project]
        call = request.call
        healthy: list[Candidate] = []
        cooling: list[Candidate] = []
        refused: dict[str, list[str]] = {}  # model → the parameters its deployments cannot honour
        unread: set[str] = set()  # the kinds of content part (images, …) some deployment cannot read
        kinds = media_kinds(request.messages)
        no_drops: tuple[str, ...] = ()
        now = time.monotonic()
        params = dict(call.params)
        if call.tool_choice is not None and request.tools:
            params["tool_choice"] = call.tool_choice
        asked = {**params, **low_detail_asked(request.messages)}  # what a deployment must honour (or the operator drop)
        for key in (model_key, *self.catalog.models[model_key].fallbacks):
            model = self.catalog.models[key]
            ttft_ms = call.max_ttft_ms if call.max_ttft_ms is not None else model.max_ttft_ms
            # a blocking answer with no first-token deadline and no hedge needs no chunks: one reply is cheaper
            stream = call.stream or bool(ttft_ms) or bool(model.hedge_ms)
            for deployment in weighted_order(model.all_deployments, self.rng):
                provider = self.providers.get(deployment.provider)
                if provider is None:
                    continue
                blind = unreadable(provider, kinds)
                if blind:  # images for a text-only model: asking it would only fail
                    unread.update(blind)
                    continue
                if output_cap(provider, call.max_tokens) is not None:  # too small a window (`_check_window`)
                    continue
                dropped = no_drops
                missing = unsupported(provider, asked)
                if missing:
                    droppable = {*model.drop_params, *self.catalog.providers[deployment.provider].drop_params}
                    if not droppable.issuperset(missing):  # this deployment cannot honour the call
                        refused.setdefault(key, [p for p in missing if p not in droppable])
                        continue
                    dropped = tuple(missing)  # the operator chose to drop them; each attempt says so
                extra = supported(provider, params)  # without those dropped, and defaults it does not take
                provider_call = ProviderCall(
                    model=deployment.model,
                    messages=request.messages,
                    max_tokens=request.max_tokens or project.max_tokens or model.max_tokens,
                    temperature=call.temperature if call.temperature is not None else project.temperature,
                    top_p=call.top_p,
                    stop=call.stop,
                    tools=request.tools,
                    extra=extra,
                    token_param=call.token_param,
                    stream=stream,
                )
                ttft_s = ttft_ms / 1000 if ttft_ms else None
                candidate = Candidate(key, model, deployment, provider, provider_call, ttft_s, dropped)
                (cooling if self.breakers.is_open(deployment, now) else healthy).append(candidate)
        if not healthy and not cooling and refused:
            names = sorted({p for missing in refused.values() for p in missing})
            raise InputError(
                f"{', '.join(names)}: not supported by model {model_key!r} (nor its fallbacks); "
                "an operator may drop such parameters with drop_params in the catalog",
                param=names[0],
            )
        if not healthy and not cooling and unread:
            raise _unreadable(model_key, unread)
        return healthy + cooling

    def _readable(self, model_key: str, request: GenerationRequest) -> None:
        """A 400 (`unsupported_content`) when no deployment of model `model_key` or of its fallbacks can read the
        kinds of content in the request's prompt (an image for a text-only model): `plan` would pass them all over.
        Checked before the call is admitted, so a remote image is never fetched for a model that cannot read it."""
        kinds = media_kinds(request.messages)
        if not kinds:
            return
        unread: set[str] = set()
        for key in (model_key, *self.catalog.models[model_key].fallbacks):
            for deployment in self.catalog.models[key].all_deployments:
                provider = self.providers.get(deployment.provider)
                if provider is None:
                    continue
                blind = unreadable(provider, kinds)
                if not blind:
                    return
                unread.update(blind)
        if unread:
            raise _unreadable(model_key, unread)

    def _start(
        self, request: GenerationRequest, *, keepalive: float | None = None, preset: str | None = None
    ) -> Generation:
        """Start a generation on the planned deployments, or (input moderation flagged the call) on the preset
        answer, which no model is asked for and which costs nothing."""
        if preset is not None:
            request.output_check = None  # the operator's own words need no check
        try:
            candidates = self.plan(request.model, request) if preset is None else self._preset(request, preset)
        except PromptdError:
            self.admission.release(request)
            raise
        if not candidates:
            self.admission.release(request)
            provider_name = self.catalog.models[request.model].provider
            raise ConflictError(f"provider {provider_name!r} is not available", code="provider_not_initialize")
        request.catalog_version = self.catalog_version
        generation = Generation(request, candidates, planner=self, on_done=self._done, keepalive=keepalive)
        self.tasks.add(generation)
        note_generation(generation)  # the access line's model, tokens and cost (promptd/access.py)
        return generation

    def _preset(self, request: GenerationRequest, text: str) -> list[Candidate]:
        model = self.catalog.models[request.model]
        call = ProviderCall(model=PRESET.model, messages=request.messages)
        return [Candidate(request.model, model, PRESET, PresetAnswer(text), call)]

    def _project(self, name: str) -> ProjectConfig:
        project = self.catalog.projects.get(name)
        if project is None:
            raise NotFound(f"project {name!r} does not exist")
        return project

    def _catalog_model(self, key: str) -> str:
        if key not in self.catalog.models:
            raise ConflictError(f"model {key!r} is not in the catalog", code="model_not_found")
        return key

    def _unary_model(self, origin: Origin, kind: str) -> str:
        """The catalog model a one-shot call of `kind` runs on: the one the client named (attached to the project:
        one of its `models`, or its audio models; of that type, or a chat model a client names for embeddings, as
        OpenAI-compatible servers embed with those too), else the project's own for that kind (`embedding_model`,
        `audio.text_to_speech`, `audio.speech_to_text`); a clear 400 naming `model` when there is none."""
        project = self._project(origin.project)
        setting, declared = _declared(project, kind)
        if origin.model is not None:
            key = origin.model
            audio = {project.audio.speech_to_text, project.audio.text_to_speech} - {None}
            if key not in audio:
                key, _ = self.model(origin.project, key)  # attached to the project, else 404 model_not_found
            model = self.catalog.models[key]
            if model.type != kind and not (kind == "embedding" and model.type == "chat"):
                article = "an" if kind[0] in "aeiou" else "a"
                raise InputError(f"model {key!r} is a {model.type} model, not {article} {kind} model", param="model")
            return key
        if declared is None:
            hint = f"; name one as {origin.project}/<model>" if kind == "embedding" else ""
            raise InputError(
                f"project {origin.project!r} declares no {kind} model (`{setting}` in the catalog){hint}",
                param="model",
            )
        return declared

    async def _unary(
        self,
        kind: str,
        origin: Origin,
        model_key: str,
        messages: list[Message],
        attempt: Callable[[Any, str], Awaitable[tuple[T, Usage | None]]],
        *,
        query: str | None = None,
        answer: Callable[[T], str] | None = None,
        prompt_tokens: int | None = None,
        usable: Callable[[Any], bool] | None = None,
    ) -> UnaryResult[T]:
        """One call that answers whole (embeddings, speech, transcription): admitted, tried on the model's
        deployments and fallbacks with the same retry and health policies as a chat, billed, metered and
        recorded like one. `prompt_tokens`: the prompt's exact size, when known in tokens; `usable`: which
        providers can take the call (the others' deployments are not tried)."""
        request = GenerationRequest(
            call=ChatCall(messages=messages),
            origin=origin,
            model=model_key,
            messages=messages,
            kind=kind,
            max_tokens=0,
            prompt_tokens=prompt_tokens,
            query=query,
            end_user_id=end_user_id(origin.project, origin.user) if origin.user is not None else None,
        )
        await self.admit([request], origin.key_limits)
        try:
            return await self._unary_run(request, origin, model_key, attempt, answer, usable)
        except asyncio.CancelledError:  # the caller went away mid-call (a search for a client that left)
            self.admission.release(request)  # nothing answered: its reservation goes back whole
            raise

    async def _unary_run(
        self,
        request: GenerationRequest,
        origin: Origin,
        model_key: str,
        attempt: Callable[[Any, str], Awaitable[tuple[T, Usage | None]]],
        answer: Callable[[T], str] | None,
        usable: Callable[[Any], bool] | None = None,
    ) -> UnaryResult[T]:
        order = [
            (key, deployment)
            for key in (model_key, *self.catalog.models[model_key].fallbacks)
            for deployment in weighted_order(self.catalog.models[key].all_deployments, self.rng)
            if deployment.provider in self.providers and (usable is None or usable(self.providers[deployment.provider]))
        ]
        now = time.monotonic()
        order.sort(key=lambda kd: self.breakers.is_open(kd[1], now))  # open circuits last (a stable sort)
        attempts: list[dict[str, Any]] = []
        error: PromptdError | None = ConflictError(
            f"provider {self.catalog.models[model_key].provider!r} is not available", code="provider_not_initialize"
        )
        value: T | None = None
        usage: Usage | None = None
        served = (model_key, self.catalog.models[model_key].all_deployments[0])
        queue = deque(order)
        while queue:
            key, deployment = queue.popleft()
            model = self.catalog.models[key]
            served = (key, deployment)
            for retry in range(model.retry.attempts + 1):
                began = time.perf_counter()
                entry: dict[str, Any] = {
                    "model": key,
                    "provider": deployment.provider,
                    "upstream_model": deployment.model,
                    "status": "ok",
                    "started": round(began - origin.started, 4),
                }
                attempts.append(entry)
                try:
                    value, usage = await attempt(self.providers[deployment.provider], deployment.model)
                    error = None
                except PromptdError as exc:
                    error = exc
                except Exception as exc:  # a provider bug: a provider failure, the server stays up
                    log.exception("provider %r raised an unexpected error", deployment.provider)
                    error = ProviderError(f"provider failed: {type(exc).__name__}: {exc}")
                entry["duration"] = time.perf_counter() - began
                self.breakers.observe(deployment, model.circuit, error, time.monotonic())
                if error is None:
                    break
                entry.update(status="error", error=error.message, error_code=error.code)
                step, delay = after_failure(error, model, retry, self.rng)
                if step == "retry":
                    await asyncio.sleep(delay)
                    continue
                if step in ("final", "context"):
                    queue.clear()
                break
            if error is None:
                break
        bill = bill_attempt(usage, 0, None, self.catalog.models[served[0]].price) if error is None else None
        spent, cost = total([bill] if bill is not None else [], self.catalog.models[served[0]].price)
        result = GenerationResult(
            answer=answer(value) if answer is not None and value is not None else "",
            usage=spent,
            cost=cost,
            status="error" if error is not None else "normal",
            finish_reason=None if error is not None else "stop",
            latency=time.perf_counter() - origin.started,
            ttft=None,
            error=error,
            model=served[0],
            attempts=attempts,
            upstream_s=sum(a["duration"] for a in attempts),
        )
        self._finish(request, result, served[1])
        note_generation(Finished(request, result))  # for the access line (promptd/access.py)
        if error is not None:
            raise error
        assert value is not None
        return UnaryResult(value, result, request)

    # --- after a call ---------------------------------------------------------------------------------------------

    def _observe(self, req: GenerationRequest, result: GenerationResult) -> None:
        m = self.metrics
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
            if "malformed_chunks" in attempt:
                m.malformed.inc(attempt["malformed_chunks"], provider=attempt["provider"])

    def _done(self, generation: Generation, result: GenerationResult) -> None:
        self.tasks.remove(generation)
        error_text = None
        if result.error is None and generation.stopped_by and generation.stopped_by != "stopped by request":
            error_text = generation.stopped_by
        self._finish(generation.request, result, generation.served.deployment, error_text)

    def _finish(
        self, req: GenerationRequest, result: GenerationResult, served: Deployment, stop_reason: str | None = None
    ) -> None:
        """Record one finished call, then meter and settle it, whatever `store` says (it only keeps content out).

        The record comes first: the recorder journals it with one write before the answer leaves (an answer the
        client got is never lost with a killed process). Metering, settling and tracing are left to the loop's
        turn after the answer has been written (`_account`): no one waits for them (at concurrency 1 they
        were about a seventh of the CPU between the upstream's reply and the client's answer: docs/benchmarks.md)."""
        origin, error = req.origin, result.error
        record = CallRecord(
            id=req.message_id,
            project=req.project,
            face=origin.face,
            kind=req.kind,
            model=result.model,
            provider=served.provider,
            upstream_model=served.model,
            status=result.status,
            created_at=origin.created_at,
            task_id=req.task_id,
            end_user_id=req.end_user_id,
            user=origin.user,
            key_id=origin.key_id,
            inputs=req.inputs,
            query=req.query,
            prompt=[m.to_openai() for m in req.messages] if req.kind == "chat" else None,
            files=req.call.form.files if req.call.form is not None else None,
            answer=result.answer,
            error=stop_reason if error is None else error.message,
            error_code=error.code if error is not None else None,
            finish_reason=result.finish_reason,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            prompt_price=result.cost.prompt_price,
            completion_price=result.cost.completion_price,
            total_price=result.cost.total_price,
            currency=result.cost.currency,
            latency=result.latency,
            ttft=result.ttft,
            session_id=origin.session_id,
            choice_index=req.choice_index,
            labels=origin.labels,
            tags=origin.tags,
            campaign=req.campaign,
            attempts=result.attempts,
            moderation=req.moderation,
            retriever_resources=req.call.retriever_resources,
            store=origin.store,
            catalog_version=req.catalog_version or self.catalog_version,
            request_id=req.request_id,
        )
        self.recorder.submit(*record.rows())
        # two hops: the face's wake-up is queued after this (by the generation's Done), and its answer is written
        # in that turn; the second hop puts the accounting behind it, still before any new request is read
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self._account, req, result)

    def _account(self, req: GenerationRequest, result: GenerationResult) -> None:
        """Meter, trace and settle a finished call (see `_finish`)."""
        self._observe(req, result)
        if self.tracer is not None:
            self.tracer.attempts(req, result, self.catalog)
        self.admission.settle(req, result)

    async def aclose(self) -> None:
        """Stop what still runs (in-flight streams had their grace period) and wait for their records."""
        running = self.tasks.all()
        for generation in running:
            generation.stop("server shutting down")
        await asyncio.gather(*(g.join() for g in running), return_exceptions=True)
        await self.admission.aclose()
        await self.coordinator.aclose()
        await self.moderation.aclose()
