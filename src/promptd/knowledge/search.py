"""Retrieval: full text (FTS5 / tsvector), vectors (numpy cosine over float32 blobs), hybrid by reciprocal rank
fusion, an optional rerank model, then the score threshold and top_k."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from promptd.engine.call import Origin
from promptd.engine.engine import Engine
from promptd.errors import InputError
from promptd.knowledge import models
from promptd.knowledge.store import KnowledgeStore, query_terms

__all__ = ["RRF_K", "Hit", "Retrieval", "Retriever", "fuse", "to_blob", "unit"]

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al., 2009)
MODES = ("full_text", "vector", "hybrid")
Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Retrieval:
    """How one dataset is searched (the catalog's `retrieval`, or a request's override)."""

    mode: str = "full_text"
    top_k: int = 3
    score_threshold: float | None = None
    embedding_model: str | None = None
    rerank_model: str | None = None

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> Retrieval:
        return cls(**{k: value[k] for k in cls.__dataclass_fields__ if k in value})

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Hit:
    segment: dict[str, Any]  # the segment's row, with document_name
    score: float
    dataset: dict[str, Any]


def unit(vector: Sequence[float]) -> Vector:
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def to_blob(vector: Sequence[float]) -> bytes:
    """A unit vector's float32 little-endian bytes, as stored."""
    return unit(vector).astype("<f4").tobytes()


def fuse(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: each id scores the sum of 1 / (k + rank) over the rankings it is in (rank from 1),
    divided by the best possible sum (first in every ranking), so scores fall in (0, 1]. Best first."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, ident in enumerate(ranking, start=1):
            scores[ident] = scores.get(ident, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1)
    return sorted(((i, s / best) for i, s in scores.items()), key=lambda x: -x[1])


class _Matrix:
    __slots__ = ("ids", "matrix", "revision")

    def __init__(self, revision: int, ids: list[str], matrix: Vector) -> None:
        self.revision, self.ids, self.matrix = revision, ids, matrix


class Retriever:
    """Searches datasets. Each dataset's vectors are held in memory as one matrix, reloaded when the dataset's
    revision (bumped by every segment change, by any process) moves."""

    def __init__(self, store: KnowledgeStore, engine: Engine) -> None:
        self.store = store
        self.engine = engine
        self._matrices: dict[str, _Matrix] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _matrix(self, dataset_id: str) -> _Matrix:
        revision = await self.store.revision(dataset_id)
        cached = self._matrices.get(dataset_id)
        if cached is not None and cached.revision == revision:
            return cached
        async with self._locks.setdefault(dataset_id, asyncio.Lock()):
            cached = self._matrices.get(dataset_id)
            if cached is not None and cached.revision == revision:
                return cached
            revision, rows = await self.store.embeddings(dataset_id)
            ids = [r[0] for r in rows]
            matrix = (
                np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
                if rows and len({len(r[1]) for r in rows}) == 1
                else np.zeros((0, 0), dtype=np.float32)
            )
            if rows and matrix.shape[0] == 0:
                raise InputError(f"dataset {dataset_id}: its segments' embeddings differ in size; re-index it")
            built = self._matrices[dataset_id] = _Matrix(revision, ids, matrix)
            return built

    async def _vector(self, dataset_id: str, query_vector: Vector, limit: int) -> list[tuple[str, float]]:
        m = await self._matrix(dataset_id)
        if not m.ids:
            return []
        if m.matrix.shape[1] != query_vector.shape[0]:
            raise InputError(
                f"the query's embedding has {query_vector.shape[0]} dimensions, the dataset's {m.matrix.shape[1]}"
            )
        scores = m.matrix @ query_vector
        n = min(limit, len(m.ids))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [(m.ids[i], max(0.0, float(scores[i]))) for i in top]

    async def search(self, dataset: dict[str, Any], query: str, settings: Retrieval, origin: Origin) -> list[Hit]:
        """The dataset's best segments for `query`; its model calls (embedding, rerank) are made for `origin`."""
        if settings.mode not in MODES:
            raise InputError(f"unknown retrieval mode {settings.mode!r}", param="retrieval_model")
        if settings.mode != "full_text" and not settings.embedding_model:
            raise InputError(f"dataset {dataset['name']!r} has no embedding model for {settings.mode} search")
        wide = settings.rerank_model is not None or settings.mode == "hybrid"
        limit = max(settings.top_k * 4, 20) if wide else settings.top_k
        text_hits: list[tuple[str, float]] = []
        vector_hits: list[tuple[str, float]] = []
        if settings.mode in ("full_text", "hybrid"):
            text_hits = await self.store.full_text(dataset["id"], query_terms(query), limit)
        if settings.mode in ("vector", "hybrid"):
            assert settings.embedding_model is not None
            vectors, _ = await models.embed(self.engine, settings.embedding_model, [query], origin)
            vector_hits = await self._vector(dataset["id"], unit(vectors[0]), limit)
        if settings.mode == "hybrid":
            ranked = fuse([[i for i, _ in text_hits], [i for i, _ in vector_hits]])
        else:
            ranked = text_hits or vector_hits
        rows = await self.store.segments_by_id([i for i, _ in ranked])
        ranked = [(i, s) for i, s in ranked if i in rows]
        if settings.rerank_model is not None and ranked:
            scores = await models.rerank(
                self.engine, settings.rerank_model, query, [rows[i]["content"] for i, _ in ranked], origin
            )
            ranked = sorted(zip((i for i, _ in ranked), scores, strict=True), key=lambda x: -x[1])
        if settings.score_threshold is not None:
            ranked = [(i, s) for i, s in ranked if s >= settings.score_threshold]
        return [Hit(rows[i], round(s, 6), dataset) for i, s in ranked[: settings.top_k]]
