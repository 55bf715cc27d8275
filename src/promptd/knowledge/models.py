"""The model calls knowledge makes: embeddings (to index and to search) and reranking. Each goes through the
engine's entry points (`Engine.embed`, `Engine.rerank`), so it is admitted against limits and budgets, routed,
billed, metered and recorded like any call, under the origin it is made for:

- a search within a project's call: the caller's origin, marked `internal` (`for_call`, engine/call.py: its
  tokens and cost count against the key's and project's limits, but it is not one more request);
- a knowledge base's own work (indexing, a search through the dataset API): the scope `dataset:<name>`
  (`knowledge_origin`), limited by the catalog's `knowledge.<name>.limits` or `dataset_limits`."""

from __future__ import annotations

from promptd.domain.limits import Limits
from promptd.engine.call import EmbeddingCall, Origin, RerankCall, dataset_scope
from promptd.engine.engine import Engine

__all__ = ["BATCH", "embed", "knowledge_origin", "rerank"]

BATCH = 64  # texts per embeddings call


def knowledge_origin(
    dataset_name: str, *, face: str, key_id: str | None = None, limits: Limits | None = None
) -> Origin:
    """The origin of knowledge base `dataset_name`'s own calls: indexing (face "knowledge"), or a dataset-API
    search or segment (face "dify", with the dataset key)."""
    return Origin(face=face, project=dataset_scope(dataset_name), key_id=key_id, key_limits=limits or Limits())


async def embed(engine: Engine, model_key: str, texts: list[str], origin: Origin) -> tuple[list[list[float]], int]:
    """One vector per text from the catalog model `model_key`, and the tokens it counted."""
    vectors: list[list[float]] = []
    tokens = 0
    for start in range(0, len(texts), BATCH):
        done = await engine.embed(EmbeddingCall(texts=texts[start : start + BATCH]), origin, model=model_key)
        vectors.extend(done.value)
        tokens += done.result.usage.prompt_tokens
    return vectors, tokens


async def rerank(engine: Engine, model_key: str, query: str, documents: list[str], origin: Origin) -> list[float]:
    """One relevance score per document, in their order, from the catalog model `model_key`."""
    done = await engine.rerank(RerankCall(query=query, documents=documents), origin, model=model_key)
    return done.value
