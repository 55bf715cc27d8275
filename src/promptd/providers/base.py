"""The provider contract, and the table that maps a catalog `kind` to its adapter.

A provider streams one completion as `TextDelta`/`ToolCallDelta` events and ends with exactly one `Finish`.
Closing the iterator early (`aclose()`, or cancelling the task that iterates it) must stop the upstream
generation and release its resources. Failures are raised as `promptd.errors.ProviderError` subclasses,
translated where they enter (the adapter), never as a foreign library's exception.

What a provider can honour is declared on its class, and checked before any call is made (`Engine.plan` passes
over a deployment that cannot honour a request): `accepts`, the generation parameters it takes (`unsupported`),
`media`, the kinds of content part beside text it reads (`unreadable`), and `max_output_tokens`, the most
completion tokens it can give (`output_cap`). `None` means any: an OpenAI-compatible server's upstream judges
for itself. An image part's `detail` asking for a low-detail view is checked as one more parameter
(`IMAGE_DETAIL`, `low_detail_asked`).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from promptd.types import Message, ProviderCall, ProviderEvent, Transcript

__all__ = [
    "IMAGE_DETAIL",
    "PARAM_DEFAULTS",
    "PROVIDER_KINDS",
    "EmbeddingProvider",
    "ModerationProvider",
    "Provider",
    "RerankProvider",
    "SpeechProvider",
    "TokenEmbeddingProvider",
    "load_provider_class",
    "low_detail_asked",
    "output_cap",
    "supported",
    "unreadable",
    "unsupported",
]


@runtime_checkable
class Provider(Protocol):
    def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        """Stream one completion. Deltas, then one Finish."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        """Return one vector per text, and the number of input tokens."""
        ...


@runtime_checkable
class TokenEmbeddingProvider(Protocol):
    """An embedding provider that also takes token ids (OpenAI's `input` as arrays of integers). Token ids are
    the upstream model's own tokenizer's, so only an adapter that sends them to that upstream declares this."""

    async def embed_tokens(self, *, model: str, tokens: list[list[int]]) -> tuple[list[list[float]], int]:
        """Return one vector per token array, and the number of input tokens."""
        ...


@runtime_checkable
class RerankProvider(Protocol):
    async def rerank(self, *, model: str, query: str, documents: list[str]) -> tuple[list[float], int]:
        """One relevance score in [0, 1] per document, in the documents' order, and the number of input tokens."""
        ...


@runtime_checkable
class SpeechProvider(Protocol):
    async def transcribe(
        self,
        *,
        model: str,
        filename: str,
        data: bytes,
        mime_type: str,
        params: Sequence[tuple[str, str]] = (),
        translate: bool = False,
    ) -> Transcript:
        """The transcript of an audio file (`translate`: in English), in the `response_format` of `params` (json
        when none); every other param goes upstream as it came. An answer not in the format asked is a
        `ProviderBadRequest` naming `response_format`, never another format."""
        ...

    async def speak(
        self, *, model: str, text: str, voice: str | dict[str, Any], params: Mapping[str, Any] | None = None
    ) -> tuple[bytes, str]:
        """Return (audio bytes, MIME type): in `params`' `response_format` when it names one (else a
        `ProviderBadRequest` naming it); every other param goes upstream as it came."""
        ...


@runtime_checkable
class ModerationProvider(Protocol):
    async def moderate(self, *, model: str, text: str) -> tuple[bool, list[str]]:
        """Whether `text` is flagged, and the categories that flagged it (OpenAI's `/moderations`)."""
        ...


#: OpenAI's defaults of generation parameters: a call that sends one is the same call as one that leaves it out,
#: so no provider is refused for it (null, which means unset in OpenAI's API, never reaches here: the chat face
#: leaves such fields out). `response_format: {"type": "text"}` and an empty `logit_bias` change nothing either.
PARAM_DEFAULTS: Mapping[str, Any] = {
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logprobs": False,
    "parallel_tool_calls": True,
    "service_tier": "auto",
    "modalities": ["text"],
    "response_format": {"type": "text"},
    "logit_bias": {},
    "verbosity": "medium",
}


def _is_default(name: str, value: Any) -> bool:
    if name not in PARAM_DEFAULTS:
        return False
    default = PARAM_DEFAULTS[name]
    if isinstance(default, bool) or isinstance(value, bool):  # `false` is not `0`, nor `0` `false`
        return value is default
    return bool(value == default)


def unsupported(provider: Any, params: Mapping[str, Any]) -> list[str]:
    """The generation parameters (OpenAI names, beyond the core ones every provider takes: messages, max tokens,
    temperature, top_p, stop, tools) that `provider` cannot honour. A provider that declares `accepts = None`
    (an OpenAI-compatible server: the upstream judges what it is sent) takes them all; one that declares a set
    takes those, sent on or translated to its own form. A parameter at OpenAI's default (`PARAM_DEFAULTS`) asks for
    nothing, so it is never one of them."""
    accepts: frozenset[str] | None = getattr(provider, "accepts", None)
    if accepts is None:
        return []
    return sorted(name for name, value in params.items() if name not in accepts and not _is_default(name, value))


#: OpenAI's `image_url.detail` as a parameter a provider honours or not. Every image part keeps its `detail`, and an
#: OpenAI-compatible upstream (`accepts = None`) reads it there. A provider without the control (Anthropic) sees
#: each image at its own full resolution, scaled to its limits: what `high` asks, and `auto` leaves to it; `low`, a
#: cheap 512-pixel view, it cannot give, unless it lists this name in `accepts`.
IMAGE_DETAIL = "image_url.detail"


def low_detail_asked(messages: Sequence[Message]) -> dict[str, Any]:
    """`{IMAGE_DETAIL: "low"}` when an image part of `messages` asks for a low-detail view, else nothing: checked
    with the call's generation parameters (`unsupported`: refused, or dropped by the operator, like them), never
    sent as one (the parts carry it)."""
    for m in messages:
        if not isinstance(m.content, str):
            for part in m.content:
                image = part.get("image_url") if part.get("type") == "image_url" else None
                if isinstance(image, dict) and image.get("detail") == "low":
                    return {IMAGE_DETAIL: "low"}
    return {}


def supported(provider: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of `params` that `provider` takes: what it is sent (the others are at their default, or
    dropped by the operator: `unsupported` has vetted them)."""
    accepts: frozenset[str] | None = getattr(provider, "accepts", None)
    if accepts is None or not params:
        return params
    return {name: value for name, value in params.items() if name in accepts}


def unreadable(provider: Any, kinds: frozenset[str]) -> list[str]:
    """The kinds of content part (`image_url`, `video_url`, …, from `types.media_kinds`) that `provider` cannot
    read: those outside its declared `media` (None: it reads whatever it is sent)."""
    media: frozenset[str] | None = getattr(provider, "media", None)
    if not kinds or media is None:
        return []
    return sorted(kinds - media)


def output_cap(provider: Any, max_tokens: int | None) -> int | None:
    """The most completion tokens `provider` can give, when `max_tokens` asks for more (else None). A provider
    that knows its model's window declares `max_output_tokens`; one that does not (None) is sent any value."""
    cap: int | None = getattr(provider, "max_output_tokens", None)
    return cap if cap is not None and max_tokens is not None and max_tokens > cap else None


#: catalog `kind` → "module:Class". A new provider is one file plus one line here.
PROVIDER_KINDS: Mapping[str, str] = {
    "local": "promptd.providers.local:LocalProvider",
    "openai": "promptd.providers.openai_compat:OpenAICompatProvider",
    "anthropic": "promptd.providers.anthropic:AnthropicProvider",
    "fake": "promptd.providers.fake:FakeProvider",
}


def load_provider_class(kind: str) -> Any:
    module_name, _, attr = PROVIDER_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), attr)
