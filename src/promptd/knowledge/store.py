"""The knowledge tables, reached through one repository: datasets, documents, segments, full-text search."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptd.store.tables import knowledge_datasets as datasets
from promptd.store.tables import knowledge_documents as documents
from promptd.store.tables import knowledge_segments as segments

__all__ = ["DuplicateName", "KnowledgeStore", "query_terms"]

#: words too common to say anything about a segment (the full-text query ORs the others)
_STOPWORDS = (
    "a an and are as at be by can did do does for from had has have how i if in into is it its me my no not of on "
    "or our so than that the their them then there these they this to was we were what when where which who whom "
    "why will with you your"
)
STOPWORDS = frozenset(_STOPWORDS.split())
_WORD = re.compile(r"\w+", re.UNICODE)
IN_PROGRESS = ("parsing", "splitting", "indexing")


def query_terms(query: str, limit: int = 32) -> list[str]:
    """The distinct words of a query worth searching for, lowercased, stopwords out, at most `limit`."""
    return list(dict.fromkeys(w for w in _WORD.findall(query.lower()) if w not in STOPWORDS))[:limit]


class DuplicateName(Exception):
    """A dataset with this name exists."""


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


class KnowledgeStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    # --- datasets -------------------------------------------------------------------------------------------------

    async def create_dataset(self, values: dict[str, Any], *, ignore_existing: bool = False) -> None:
        now = time.time()
        values = {"created_at": now, "updated_at": now, "description": "", **values}
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(datasets).values(**values))
        except IntegrityError:
            if not ignore_existing:
                raise DuplicateName(values["name"]) from None

    async def get_dataset(self, dataset_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(datasets).where(datasets.c.id == dataset_id))).first()
        return _row(row) if row is not None else None

    async def datasets_by_ref(self, refs: Sequence[str]) -> list[dict[str, Any]]:
        """The datasets named by id or by name, in the order of `refs` (missing ones left out)."""
        if not refs:
            return []
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(datasets).where(datasets.c.id.in_(refs) | datasets.c.name.in_(refs)))
            ).all()
        found = {r.id: _row(r) for r in rows} | {r.name: _row(r) for r in rows}
        return [found[ref] for ref in refs if ref in found]

    async def list_datasets(self, *, page: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(datasets))).scalar_one()
            rows = (
                await conn.execute(
                    select(datasets).order_by(datasets.c.created_at.desc()).offset((page - 1) * limit).limit(limit)
                )
            ).all()
        return [_row(r) for r in rows], total

    async def dataset_counts(self, dataset_id: str) -> tuple[int, int]:
        """(documents, characters) of a dataset."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(documents.c.word_count), 0)).where(
                        documents.c.dataset_id == dataset_id
                    )
                )
            ).one()
        return int(row[0]), int(row[1])

    async def update_dataset(self, dataset_id: str, values: dict[str, Any]) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(datasets).where(datasets.c.id == dataset_id).values(**values, updated_at=time.time())
                )
        except IntegrityError:
            raise DuplicateName(values.get("name", "")) from None

    async def delete_dataset(self, dataset_id: str) -> None:
        async with self.engine.begin() as conn:
            # explicit, not by cascade: SQLite only cascades with foreign keys on, and the FTS triggers must run
            await conn.execute(delete(segments).where(segments.c.dataset_id == dataset_id))
            await conn.execute(delete(documents).where(documents.c.dataset_id == dataset_id))
            await conn.execute(delete(datasets).where(datasets.c.id == dataset_id))

    # --- documents ------------------------------------------------------------------------------------------------

    async def add_document(self, values: dict[str, Any], *, ignore_existing: bool = False) -> bool:
        """Insert a document at the next position; False when `ignore_existing` and its id exists already."""
        try:
            async with self.engine.begin() as conn:
                position = (
                    await conn.execute(
                        select(func.coalesce(func.max(documents.c.position), 0)).where(
                            documents.c.dataset_id == values["dataset_id"]
                        )
                    )
                ).scalar_one()
                await conn.execute(
                    insert(documents).values(
                        position=position + 1, created_at=time.time(), indexing_status="waiting", **values
                    )
                )
        except IntegrityError:
            if ignore_existing:
                return False
            raise
        return True

    async def get_document(self, dataset_id: str, document_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(documents).where(documents.c.dataset_id == dataset_id, documents.c.id == document_id)
                )
            ).first()
        return _row(row) if row is not None else None

    async def document_by_id(self, document_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(documents).where(documents.c.id == document_id))).first()
        return _row(row) if row is not None else None

    async def list_documents(
        self, dataset_id: str, *, page: int, limit: int, keyword: str | None = None, created_from: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        where = [documents.c.dataset_id == dataset_id]
        if keyword:
            where.append(documents.c.name.contains(keyword, autoescape=True))
        if created_from:
            where.append(documents.c.created_from == created_from)
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(documents).where(*where))).scalar_one()
            rows = (
                await conn.execute(
                    select(documents)
                    .where(*where)
                    .order_by(documents.c.created_at.desc(), documents.c.position.desc())
                    .offset((page - 1) * limit)
                    .limit(limit)
                )
            ).all()
        return [_row(r) for r in rows], total

    async def batch_documents(self, dataset_id: str, batch: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(documents).where(documents.c.dataset_id == dataset_id, documents.c.batch == batch)
                )
            ).all()
        return [_row(r) for r in rows]

    async def delete_document(self, document_id: str) -> None:
        async with self.engine.begin() as conn:
            dataset_id = (
                await conn.execute(select(documents.c.dataset_id).where(documents.c.id == document_id))
            ).scalar()
            await conn.execute(delete(segments).where(segments.c.document_id == document_id))
            await conn.execute(delete(documents).where(documents.c.id == document_id))
            if dataset_id is not None:
                await self._bump(conn, dataset_id)

    async def reindex_document(self, document_id: str, values: dict[str, Any]) -> bool:
        """Give a document new `values` (its name, file, chunking, batch) and index it again from the start: its
        segments go, it waits for the indexer (one transaction: no search sees it half-replaced). False, and
        nothing changed, when an indexer has it now (a run in progress must not write into the new content)."""
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                update(documents)
                .where(documents.c.id == document_id, documents.c.indexing_status.not_in(IN_PROGRESS))
                .values(
                    **values,
                    indexing_status="waiting",
                    error=None,
                    word_count=0,
                    tokens=0,
                    total_segments=0,
                    completed_segments=0,
                    processing_started_at=None,
                    parsing_completed_at=None,
                    cleaning_completed_at=None,
                    splitting_completed_at=None,
                    completed_at=None,
                )
            )
            if changed.rowcount != 1:
                return False
            dataset_id = (
                await conn.execute(select(documents.c.dataset_id).where(documents.c.id == document_id))
            ).scalar()
            await conn.execute(delete(segments).where(segments.c.document_id == document_id))
            if dataset_id is not None:
                await self._bump(conn, dataset_id)
        return True

    async def claim_document(self, document_id: str) -> dict[str, Any] | None:
        """Move a waiting document to `parsing` and return it, or None when another worker has it (or it is gone)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(documents)
                .where(documents.c.id == document_id, documents.c.indexing_status == "waiting")
                .values(indexing_status="parsing", processing_started_at=time.time(), error=None)
            )
            if result.rowcount != 1:
                return None
            row = (await conn.execute(select(documents).where(documents.c.id == document_id))).first()
        return _row(row) if row is not None else None

    async def set_document(self, document_id: str, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(documents).where(documents.c.id == document_id).values(**values))

    async def add_hits(self, counts: dict[str, int]) -> None:
        """Add to segments' `hit_count` (segment id → times retrieved); segments gone meanwhile are skipped. The
        segments' revision is not bumped: a hit changes no search."""
        by_count: dict[int, list[str]] = {}
        for ident, n in counts.items():
            by_count.setdefault(n, []).append(ident)
        async with self.engine.begin() as conn:
            for n, ids in by_count.items():
                await conn.execute(
                    update(segments).where(segments.c.id.in_(ids)).values(hit_count=segments.c.hit_count + n)
                )

    async def waiting_documents(self) -> list[str]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(documents.c.id)
                    .where(documents.c.indexing_status == "waiting")
                    .order_by(documents.c.created_at)
                )
            ).all()
        return [r.id for r in rows]

    async def requeue_interrupted(self, before: float) -> int:
        """Documents left half-indexed by a process that stopped (started before `before`): back to waiting."""
        async with self.engine.begin() as conn:
            stale = (
                await conn.execute(
                    select(documents.c.id).where(
                        documents.c.indexing_status.in_(IN_PROGRESS), documents.c.processing_started_at < before
                    )
                )
            ).all()
            for r in stale:
                await conn.execute(delete(segments).where(segments.c.document_id == r.id))
                await conn.execute(
                    update(documents)
                    .where(documents.c.id == r.id)
                    .values(indexing_status="waiting", completed_segments=0)
                )
        return len(stale)

    # --- segments -------------------------------------------------------------------------------------------------

    async def _bump(self, conn: AsyncConnection, dataset_id: str) -> None:
        await conn.execute(update(datasets).where(datasets.c.id == dataset_id).values(revision=datasets.c.revision + 1))

    async def add_segments(self, dataset_id: str, document_id: str, rows: list[dict[str, Any]]) -> list[str]:
        """Insert segments (each: position, content, and optionally answer, keywords, embedding, tokens)."""
        now = time.time()
        values = [
            {
                "id": r.get("id") or _uuid(),
                "seq": secrets.randbits(62),
                "dataset_id": dataset_id,
                "document_id": document_id,
                "answer": None,
                "keywords": None,
                "embedding": None,
                "tokens": 0,
                "index_node_hash": None,
                "word_count": len(r["content"]),
                "created_at": now,
                "updated_at": now,
                **r,
            }
            for r in rows
        ]
        if not values:
            return []
        async with self.engine.begin() as conn:
            await conn.execute(insert(segments), values)
            await self._bump(conn, dataset_id)
        return [v["id"] for v in values]

    async def next_segment_position(self, document_id: str) -> int:
        async with self.engine.connect() as conn:
            top = (
                await conn.execute(
                    select(func.coalesce(func.max(segments.c.position), 0)).where(segments.c.document_id == document_id)
                )
            ).scalar_one()
        return int(top) + 1

    async def list_segments(
        self, document_id: str, *, page: int, limit: int, keyword: str | None = None, enabled: bool | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        where = [segments.c.document_id == document_id]
        if keyword:
            where.append(segments.c.content.contains(keyword, autoescape=True))
        if enabled is not None:
            where.append(segments.c.enabled == enabled)
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(segments).where(*where))).scalar_one()
            rows = (
                await conn.execute(
                    select(segments).where(*where).order_by(segments.c.position).offset((page - 1) * limit).limit(limit)
                )
            ).all()
        return [_row(r) for r in rows], total

    async def get_segment(self, document_id: str, segment_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(segments).where(segments.c.document_id == document_id, segments.c.id == segment_id)
                )
            ).first()
        return _row(row) if row is not None else None

    async def update_segment(self, dataset_id: str, segment_id: str, values: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(segments).where(segments.c.id == segment_id).values(**values, updated_at=time.time())
            )
            await self._bump(conn, dataset_id)

    async def delete_segment(self, dataset_id: str, segment_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(segments).where(segments.c.id == segment_id))
            await self._bump(conn, dataset_id)

    async def refresh_document_counts(self, document_id: str) -> None:
        """The document's segment count and size, after segments were added or removed by hand."""
        async with self.engine.begin() as conn:
            count, chars = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(segments.c.word_count), 0)).where(
                        segments.c.document_id == document_id
                    )
                )
            ).one()
            await conn.execute(
                update(documents)
                .where(documents.c.id == document_id)
                .values(total_segments=count, completed_segments=count, word_count=chars)
            )

    async def segments_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Segments with their document's name, by id (enabled ones, of enabled documents)."""
        if not ids:
            return {}
        cols = [c for c in segments.c if c.name != "embedding"]
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(*cols, documents.c.name.label("document_name"), documents.c.data_source_type)
                    .join(documents, documents.c.id == segments.c.document_id)
                    .where(segments.c.id.in_(list(ids)), segments.c.enabled.is_(True), documents.c.enabled.is_(True))
                )
            ).all()
        return {r.id: _row(r) for r in rows}

    async def revision(self, dataset_id: str) -> int:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(datasets.c.revision).where(datasets.c.id == dataset_id))).scalar()
        return int(value or 0)

    async def embeddings(self, dataset_id: str) -> tuple[int, list[tuple[str, bytes]]]:
        """(revision, [(segment id, embedding blob)]) of a dataset's enabled segments that have one."""
        async with self.engine.connect() as conn:
            rev = (await conn.execute(select(datasets.c.revision).where(datasets.c.id == dataset_id))).scalar()
            rows = (
                await conn.execute(
                    select(segments.c.id, segments.c.embedding).where(
                        segments.c.dataset_id == dataset_id,
                        segments.c.enabled.is_(True),
                        segments.c.embedding.is_not(None),
                    )
                )
            ).all()
        return int(rev or 0), [(r.id, r.embedding) for r in rows]

    async def full_text(self, dataset_id: str, terms: list[str], limit: int) -> list[tuple[str, float]]:
        """(segment id, score in [0, 1)) best first, for segments that contain any of `terms`. SQLite: FTS5's
        BM25 b, scored b / (1 + b); PostgreSQL: ts_rank_cd normalised the same way (its option 32)."""
        if not terms:
            return []
        async with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                sql = text(
                    "SELECT s.id, ts_rank_cd(s.tsv, q, 32) AS score "
                    "FROM knowledge_segments s, to_tsquery('english', :q) q "
                    "WHERE s.dataset_id = :dataset AND s.enabled AND s.tsv @@ q "
                    "ORDER BY score DESC LIMIT :limit"
                )
                q = " | ".join(terms)
            else:
                sql = text(
                    "SELECT s.id, -bm25(knowledge_segments_fts) AS b FROM knowledge_segments_fts f "
                    "JOIN knowledge_segments s ON s.seq = f.rowid "
                    "WHERE knowledge_segments_fts MATCH :q AND s.dataset_id = :dataset AND s.enabled "
                    "ORDER BY bm25(knowledge_segments_fts) LIMIT :limit"
                )
                q = " OR ".join(f'"{t}"' for t in terms)
            rows = (await conn.execute(sql, {"q": q, "dataset": dataset_id, "limit": limit})).all()
        if self.dialect == "postgresql":
            return [(r[0], float(r[1])) for r in rows]
        return [(r[0], max(0.0, float(r[1])) / (1 + max(0.0, float(r[1])))) for r in rows]


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())
