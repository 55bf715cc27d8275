"""Moderation of a completion app's inputs and answers, as Dify's `sensitive_word_avoidance` does it.

Three kinds, chosen by the project's `moderation.type`:

- ``keywords``: a list of words; any input value, the query or the answer containing one (case-insensitive)
  is flagged;
- ``openai_moderation``: an OpenAI-compatible `POST {base_url}/moderations` of a catalog provider;
- ``api``: Dify's moderation API extension, `POST {url}` with a bearer key and a `point` of
  `app.moderation.input` (`{app_id, inputs, query}`) or `app.moderation.output` (`{app_id, text}`), answering
  `{flagged, action, preset_response, inputs, query}` / `{flagged, action, preset_response, text}`.

Flagged input with action ``direct_output`` is answered with the preset response and the model is not called;
action ``overridden`` (API extension only) replaces the inputs and query the model sees. Flagged output is
replaced by the preset response (or, ``overridden``, by the extension's text). A moderation service that
fails is reported (503 ``moderation_unavailable``): it never lets a request through unmoderated.

The faces call `Moderation.for_project(...)` once per request; the verdicts are kept on a `ModerationState`
that becomes the record's `moderation` column.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from promptd.catalog.schema import Catalog, Deployment, ModerationConfig, Timeouts
from promptd.engine.request import GenerationRequest
from promptd.errors import ModerationUnavailable, PromptdError
from promptd.metrics import Metrics
from promptd.providers.base import ModerationProvider, Provider
from promptd.providers.client import HTTPClient, ProtocolError
from promptd.types import Finish, ProviderCall, ProviderEvent, TextDelta, Usage

__all__ = [
    "PRESET",
    "Guard",
    "Moderation",
    "ModerationState",
    "Moderator",
    "PresetAnswer",
    "Verdict",
    "dify_config",
    "guard_input",
]

log = logging.getLogger("promptd.moderation")

Stage = Literal["input", "output"]
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Verdict:
    flagged: bool
    action: str = ""  # "direct_output" | "overridden" when flagged
    preset_response: str = ""
    inputs: dict[str, Any] | None = None  # overridden inputs (input stage)
    query: str | None = None  # overridden query (input stage)
    text: str | None = None  # overridden answer (output stage)
    categories: list[str] = field(default_factory=list)

    def record(self, kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": kind, "flagged": self.flagged}
        if self.flagged:
            out["action"] = self.action
        if self.categories:
            out["categories"] = self.categories
        return out


@dataclass(slots=True)
class ModerationState:
    """What moderation decided for one request: the record's `moderation` column ({input?, output?})."""

    record: dict[str, Any] = field(default_factory=dict)
    replaced: str | None = None  # the answer that replaced a flagged one

    def column(self) -> dict[str, Any] | None:
        return self.record or None


def extension_id(config: ModerationConfig) -> str:
    """The `api_based_extension_id` reported for an API extension: stable, and no secret in it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, config.api.url if config.api else ""))


def dify_config(config: ModerationConfig | None) -> dict[str, Any]:
    """`sensitive_word_avoidance` of Dify's /parameters: {enabled, type, config}; Dify's default when it is
    off is literally {"enabled": false, "type": "", "configs": []} (AppModelConfig.sensitive_word_avoidance_dict)."""
    if config is None:
        return {"enabled": False, "type": "", "configs": []}
    body: dict[str, Any] = {
        "inputs_config": {"enabled": config.inputs.enabled, "preset_response": config.inputs.preset_response},
        "outputs_config": {"enabled": config.outputs.enabled, "preset_response": config.outputs.preset_response},
    }
    if config.type == "keywords":
        body["keywords"] = "\n".join(config.keywords)
    elif config.type == "api":
        body["api_based_extension_id"] = extension_id(config)
    return {"enabled": True, "type": config.type, "config": body}


def _flat(inputs: Mapping[str, Any], query: str | None) -> list[str]:
    values = [str(v) for v in inputs.values() if v is not None and v != ""]
    if query:
        values.append(query)
    return values


class Moderator:
    """One project's moderation."""

    def __init__(self, project: str, config: ModerationConfig, owner: Moderation) -> None:
        self.project = project
        self.config = config
        self._owner = owner
        self._keywords = [k.lower() for k in config.keywords if k]

    @property
    def checks_input(self) -> bool:
        return self.config.inputs.enabled

    @property
    def checks_output(self) -> bool:
        return self.config.outputs.enabled

    async def check_input(self, inputs: Mapping[str, Any], query: str | None, state: ModerationState) -> Verdict:
        """The verdict on a request's inputs and query (input moderation must be enabled)."""
        verdict = await self._count("input", self._input(inputs, query))
        state.record["input"] = verdict.record(self.config.type)
        return verdict

    async def check_output(self, text: str, state: ModerationState) -> str:
        """The answer to give: `text` itself, or what replaces it when it is flagged."""
        verdict = await self._count("output", self._output(text))
        state.record["output"] = verdict.record(self.config.type)
        if not verdict.flagged:
            return text
        replaced = verdict.text if verdict.action == "overridden" and verdict.text is not None else None
        state.replaced = replaced if replaced is not None else verdict.preset_response
        return state.replaced

    async def _count(self, stage: Stage, check: Any) -> Verdict:
        labels = {"project": self.project, "stage": stage, "type": self.config.type}
        try:
            verdict: Verdict = await check
        except ModerationUnavailable:
            self._owner.metrics.moderation.inc(outcome="error", **labels)
            raise
        self._owner.metrics.moderation.inc(outcome="flagged" if verdict.flagged else "passed", **labels)
        return verdict

    async def _input(self, inputs: Mapping[str, Any], query: str | None) -> Verdict:
        preset = self.config.inputs.preset_response
        if self.config.type == "keywords":
            return Verdict(self._has_keyword(_flat(inputs, query)), "direct_output", preset)
        if self.config.type == "openai_moderation":
            flagged, categories = await self._openai("\n".join(_flat(inputs, query)))
            return Verdict(flagged, "direct_output", preset, categories=categories)
        reply = await self._api("app.moderation.input", {"inputs": dict(inputs), "query": query or ""})
        verdict = _api_verdict(reply, preset)
        if verdict.action == "overridden":
            new_inputs, new_query = reply.get("inputs"), reply.get("query")
            if new_inputs is not None and not isinstance(new_inputs, dict):
                raise ModerationUnavailable("The moderation API answered `inputs` that is not an object.")
            if new_query is not None and not isinstance(new_query, str):
                raise ModerationUnavailable("The moderation API answered `query` that is not a string.")
            verdict.inputs, verdict.query = new_inputs, new_query
        return verdict

    async def _output(self, text: str) -> Verdict:
        preset = self.config.outputs.preset_response
        if self.config.type == "keywords":
            return Verdict(self._has_keyword([text]), "direct_output", preset)
        if self.config.type == "openai_moderation":
            flagged, categories = await self._openai(text)
            return Verdict(flagged, "direct_output", preset, categories=categories)
        reply = await self._api("app.moderation.output", {"text": text})
        verdict = _api_verdict(reply, preset)
        if verdict.action == "overridden":
            new_text = reply.get("text")
            if not isinstance(new_text, str):
                raise ModerationUnavailable("The moderation API overrode the answer without a `text` string.")
            verdict.text = new_text
        return verdict

    def _has_keyword(self, values: list[str]) -> bool:
        lowered = [v.lower() for v in values]
        return any(k in v for v in lowered for k in self._keywords)

    async def _openai(self, text: str) -> tuple[bool, list[str]]:
        name = self.config.provider or ""
        provider = self._owner.providers.get(name)
        if not isinstance(provider, ModerationProvider):
            raise ModerationUnavailable(f"provider {name!r} cannot moderate")
        try:
            return await provider.moderate(model=self.config.model, text=text)
        except PromptdError as exc:
            log.warning("moderation by provider %r failed: %s", name, exc.message)
            raise ModerationUnavailable(f"The moderation service failed: {exc.message}") from exc

    async def _api(self, point: str, params: dict[str, Any]) -> dict[str, Any]:
        api = self.config.api
        assert api is not None  # checked by the catalog
        headers = {"Content-Type": "application/json"}
        if api.api_key:
            headers["Authorization"] = f"Bearer {api.api_key}"
        body = _encode({"point": point, "params": {"app_id": self.project, **params}})
        client = self._owner.client(api.timeout_s)
        try:
            async with client.request("POST", api.url, body, headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (OSError, ProtocolError, ValueError) as exc:  # refused, timed out, reset, not HTTP
            log.warning("moderation API %s unreachable: %s", api.url, exc)
            raise ModerationUnavailable(f"The moderation API is unreachable: {type(exc).__name__}") from exc
        if status >= 400:
            log.warning("moderation API %s answered %s", api.url, status)
            raise ModerationUnavailable(f"The moderation API answered HTTP {status}.")
        try:
            reply = _decode(raw)
        except msgspec.DecodeError:
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("flagged"), bool):
            raise ModerationUnavailable("The moderation API answered without a boolean `flagged`.")
        return reply


def _api_verdict(reply: dict[str, Any], preset: str) -> Verdict:
    if not reply["flagged"]:
        return Verdict(False)
    action = reply.get("action")
    if action not in ("direct_output", "overridden"):
        raise ModerationUnavailable(f"The moderation API answered an unknown action {action!r}.")
    answer = reply.get("preset_response")
    return Verdict(True, action, answer if isinstance(answer, str) and answer else preset)


@dataclass(slots=True)
class Guard:
    """One request's moderation, as a face uses it: the input verdict taken before the engine, then attached
    to the request (its record column, and the check of the whole answer)."""

    moderator: Moderator
    state: ModerationState = field(default_factory=ModerationState)
    preset: str | None = None  # flagged input: the answer to give instead of calling the model
    overridden: bool = False  # the API extension replaced the inputs or query
    query: str | None = None  # the query the API extension put instead of the request's

    def attach(self, req: GenerationRequest) -> None:
        req.moderation = self.state.record
        if self.moderator.checks_output:
            state = self.state
            check = self.moderator.check_output

            async def output_check(text: str) -> str:
                return await check(text, state)

            req.output_check = output_check


async def guard_input(moderation: Moderation, project: str, inputs: dict[str, Any], query: str | None) -> Guard | None:
    """The request's moderation (None when the project has none). Flagged input sets `preset`; an override by
    the API extension rewrites `inputs` in place and returns the new query in `Guard.state`."""
    moderator = moderation.for_project(project)
    if moderator is None:
        return None
    guard = Guard(moderator)
    if not moderator.checks_input:
        return guard
    verdict = await moderator.check_input(inputs, query, guard.state)
    if verdict.flagged and verdict.action == "direct_output":
        guard.preset = verdict.preset_response
    elif verdict.flagged:
        guard.overridden = True
        if verdict.inputs is not None:
            inputs.update({k: v for k, v in verdict.inputs.items() if k in inputs})
        if verdict.query is not None:
            guard.query = verdict.query
    return guard


#: the deployment a preset answer is recorded as: no provider, no upstream model
PRESET = Deployment(provider="moderation", model="preset")


class PresetAnswer:
    """A provider that answers the preset response of flagged input, whole, for nothing: the model is never
    called (Dify's `direct_output`), and the answer flows to the client, the metrics and the record like any."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        yield TextDelta(self.text)
        yield Finish("stop", Usage())

    async def aclose(self) -> None:
        return None


class Moderation:
    """Every project's moderator, and the HTTP client the API extensions are called with (one per app)."""

    def __init__(self, catalog: Catalog, providers: Mapping[str, Provider], metrics: Metrics) -> None:
        self.providers = providers
        self.metrics = metrics
        self._moderators = {
            name: Moderator(name, p.moderation, self) for name, p in catalog.projects.items() if p.moderation
        }
        self._clients: dict[float, HTTPClient] = {}

    def for_project(self, project: str) -> Moderator | None:
        return self._moderators.get(project)

    def client(self, timeout_s: float) -> HTTPClient:
        client = self._clients.get(timeout_s)
        if client is None or client.closed:
            timeouts = Timeouts(connect=min(timeout_s, 5.0), read=timeout_s, total=timeout_s)
            client = self._clients[timeout_s] = HTTPClient(headers={}, timeout=timeouts, max_connections=64)
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            if not client.closed:
                await client.aclose()
