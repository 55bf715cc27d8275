"""The knowledge subsystem of one app: its store, retriever and indexer, and the catalog's knowledge bases
brought into the database at start."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from promptd.catalog.schema import Catalog, KnowledgeConfig
from promptd.engine.engine import Engine
from promptd.knowledge.hits import HitCounter
from promptd.knowledge.indexer import Indexer
from promptd.knowledge.parsing import EXTENSIONS
from promptd.knowledge.prompt import Grounding
from promptd.knowledge.search import Retriever
from promptd.knowledge.store import KnowledgeStore

__all__ = ["INTERRUPTED_AFTER", "Knowledge", "catalog_dataset_id"]

log = logging.getLogger("promptd.knowledge")
NAMESPACE = uuid.UUID("0d5cbd8e-6f42-4c1e-9b0e-2a9d7c1f4e55")
#: a document still half-indexed this long after its start, at a process's start, was left by a stopped process
INTERRUPTED_AFTER = 300.0


def catalog_dataset_id(name: str) -> str:
    """The dataset id of the catalog's knowledge base `name`: stable, so every process and restart agrees."""
    return str(uuid.uuid5(NAMESPACE, f"knowledge\x00{name}"))


def _files(entry: Path) -> list[tuple[str, Path]]:
    """(document name, path) of a catalog entry: the file itself, or a folder's readable files, sorted."""
    if entry.is_file():
        return [(entry.name, entry)]
    files = sorted(p for p in entry.rglob("*") if p.is_file() and not p.name.startswith("."))
    skipped = [str(p.relative_to(entry)) for p in files if p.suffix.lower() not in EXTENSIONS]
    if skipped:
        log.warning(
            "knowledge: %s: %d file(s) of a type promptd does not read are left out: %s",
            entry,
            len(skipped),
            ", ".join(skipped[:20]) + (" …" if len(skipped) > 20 else ""),
        )
    return [(str(p.relative_to(entry)), p) for p in files if p.suffix.lower() in EXTENSIONS]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Knowledge:
    def __init__(self, db: AsyncEngine, engine: Engine, catalog: Catalog, files_dir: Path) -> None:
        self.store = KnowledgeStore(db)
        self.retriever = Retriever(self.store, engine)
        self.indexer = Indexer(self.store, engine)
        self.hits = HitCounter(self.store)
        self.catalog = catalog
        self.files_dir = files_dir  # API-uploaded documents
        engine.grounding = Grounding(self.store, self.retriever, self.hits)  # the engine's knowledge step

    async def start(self) -> None:
        requeued = await self.store.requeue_interrupted(time.time() - INTERRUPTED_AFTER)
        if requeued:
            log.warning("knowledge: %d document(s) left half-indexed by a stopped process are indexed again", requeued)
        for name, kb in self.catalog.knowledge.items():
            try:
                await self._sync(name, kb)
            except Exception:
                log.exception("knowledge: the catalog's knowledge base %r could not be loaded", name)
        self.indexer.start()
        self.hits.start()
        for document_id in await self.store.waiting_documents():
            self.indexer.submit(document_id)

    async def _sync(self, name: str, kb: KnowledgeConfig) -> None:
        """Bring the catalog's knowledge base into the database: its settings, and a document per file (a file
        whose content or chunking changed is a new document; a file gone takes its document with it)."""
        dataset_id = catalog_dataset_id(name)
        retrieval = kb.retrieval.model_dump()
        chunking = kb.chunking.model_dump()
        values: dict[str, Any] = {
            "name": name,
            "description": kb.description,
            "indexing_technique": "high_quality" if kb.retrieval.embedding_model else "economy",
            "retrieval": retrieval,
            "chunking": chunking,
        }
        same_name = await self.store.datasets_by_ref([name])
        if same_name and same_name[0]["id"] != dataset_id:
            log.error(
                "knowledge: a dataset created through the API is named %r, as a knowledge base of the catalog: "
                "rename one of them (the catalog's is not loaded)",
                name,
            )
            return
        await self.store.create_dataset({"id": dataset_id, "source": "catalog", **values}, ignore_existing=True)
        await self.store.update_dataset(dataset_id, values)
        settings = hashlib.sha256(repr((sorted(chunking.items()), kb.retrieval.embedding_model)).encode()).hexdigest()
        wanted: dict[str, tuple[str, Path, str]] = {}
        for entry in kb.documents:
            for doc_name, path in await asyncio.to_thread(_files, Path(entry)):
                digest = await asyncio.to_thread(_digest, path)
                doc_id = str(uuid.uuid5(NAMESPACE, f"{dataset_id}\x00{path}\x00{digest}\x00{settings}"))
                wanted[doc_id] = (doc_name, path, digest)
        existing, _ = await self.store.list_documents(dataset_id, page=1, limit=1_000_000, created_from="catalog")
        for doc in existing:
            if doc["id"] not in wanted:
                await self.store.delete_document(doc["id"])
        known = {d["id"] for d in existing}
        for doc_id, (doc_name, path, digest) in wanted.items():
            if doc_id in known:
                continue
            await self.store.add_document(
                {
                    "id": doc_id,
                    "dataset_id": dataset_id,
                    "name": doc_name[:255],
                    "created_from": "catalog",
                    "batch": "catalog-" + digest[:16],
                    "path": str(path),
                    "content_hash": digest,
                },
                ignore_existing=True,
            )

    async def aclose(self) -> None:
        await self.indexer.aclose()
        await self.hits.aclose()
