"""The model calls knowledge makes: embeddings (to index and to search) and reranking.

Every such call goes through these two functions, so they can be routed through the engine's single entry
point (admission, metering, recording) in one place when it lands."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from promptd.engine.engine import Engine
from promptd.errors import ConflictError, ProviderError

__all__ = ["RerankProvider", "embed", "rerank"]

BATCH = 64  # texts per embeddings call


@runtime_checkable
class RerankProvider(Protocol):
    async def rerank(self, *, model: str, query: str, documents: list[str]) -> list[float]:
        """One relevance score in [0, 1] per document, in the documents' order."""
        ...


def _provider(engine: Engine, model_key: str, method: str) -> tuple[Any, str]:
    model = engine.catalog.models.get(model_key)
    if model is None:
        raise ConflictError(f"the knowledge base's model {model_key!r} is not in the catalog", code="model_not_found")
    provider = engine.providers.get(model.provider)
    if provider is None or not hasattr(provider, method):
        raise ConflictError(f"model {model_key!r} cannot {method}", code="provider_not_initialize")
    return provider, model.model


async def embed(engine: Engine, model_key: str, texts: list[str]) -> tuple[list[list[float]], int]:
    """One vector per text from the catalog model `model_key`, and the tokens it counted."""
    provider, upstream = _provider(engine, model_key, "embed")
    vectors: list[list[float]] = []
    tokens = 0
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        got, used = await provider.embed(model=upstream, texts=batch)
        if len(got) != len(batch):
            raise ProviderError(f"model {model_key!r} returned {len(got)} embeddings for {len(batch)} texts")
        vectors.extend(got)
        tokens += used
    return vectors, tokens


async def rerank(engine: Engine, model_key: str, query: str, documents: list[str]) -> list[float]:
    provider, upstream = _provider(engine, model_key, "rerank")
    scores: list[float] = await provider.rerank(model=upstream, query=query, documents=documents)
    if len(scores) != len(documents):
        raise ProviderError(f"model {model_key!r} returned {len(scores)} scores for {len(documents)} documents")
    return scores
