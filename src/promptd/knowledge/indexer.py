"""Ingestion off the request path: a queue in the server process that parses, chunks, embeds and stores each
document, moving its `indexing_status` through waiting → parsing → splitting → indexing → completed (or error)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from promptd.engine.call import Origin
from promptd.engine.engine import Engine
from promptd.errors import BudgetExceeded, LimitExceeded, LimitsUnavailable
from promptd.knowledge import models
from promptd.knowledge.chunking import clean_text, split_text
from promptd.knowledge.parsing import extract_text
from promptd.knowledge.search import Retrieval, to_blob
from promptd.knowledge.store import KnowledgeStore

__all__ = ["BATCH", "Indexer"]

log = logging.getLogger("promptd.knowledge")
BATCH = 64  # segments embedded and written per step (the document's progress moves by this much)
RATE_WAITS = 10  # how many rate-limit refusals one batch waits out before its document fails


class Indexer:
    def __init__(self, store: KnowledgeStore, engine: Engine) -> None:
        self.store = store
        self.engine = engine
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="promptd-knowledge-indexer")

    def submit(self, document_id: str) -> None:
        self.queue.put_nowait(document_id)

    async def _run(self) -> None:
        while True:
            document_id = await self.queue.get()
            try:
                await self.index(document_id)
            except Exception:  # the document's own failures are recorded on it; this is the store failing
                log.exception("knowledge: indexing document %s failed", document_id)

    async def index(self, document_id: str) -> None:
        doc = await self.store.claim_document(document_id)
        if doc is None:
            return  # another process took it, or it was deleted
        try:
            await self._index(doc)
        except Exception as exc:
            log.warning("knowledge: document %s (%s) could not be indexed: %s", doc["id"], doc["name"], exc)
            await self.store.set_document(doc["id"], indexing_status="error", error=str(exc) or type(exc).__name__)

    async def _index(self, doc: dict[str, Any]) -> None:
        dataset = await self.store.get_dataset(doc["dataset_id"])
        if dataset is None:
            return
        raw = await asyncio.to_thread(extract_text, Path(doc["path"]), doc["name"])
        await self.store.set_document(doc["id"], parsing_completed_at=time.time())
        text = clean_text(raw)
        await self.store.set_document(
            doc["id"], cleaning_completed_at=time.time(), indexing_status="splitting", word_count=len(text)
        )
        chunking = doc["chunking"] or dataset["chunking"]
        pieces = split_text(text, size=chunking["size"], overlap=chunking["overlap"], separator=chunking["separator"])
        if not pieces:
            raise ValueError("the document has no text")
        await self.store.set_document(
            doc["id"], splitting_completed_at=time.time(), indexing_status="indexing", total_segments=len(pieces)
        )
        retrieval = Retrieval.of(dataset["retrieval"])
        origin = models.knowledge_origin(dataset["name"], face="knowledge")  # its embeddings are governed as its own
        tokens = 0
        for start in range(0, len(pieces), BATCH):
            batch = pieces[start : start + BATCH]
            rows: list[dict[str, Any]] = [{"position": start + i + 1, "content": c} for i, c in enumerate(batch)]
            if retrieval.embedding_model:
                vectors, used = await self._embed(retrieval.embedding_model, batch, origin)
                tokens += used
                for row, vector in zip(rows, vectors, strict=True):
                    row["embedding"] = to_blob(vector)
            await self.store.add_segments(dataset["id"], doc["id"], rows)
            await self.store.set_document(doc["id"], completed_segments=start + len(batch))
        await self.store.set_document(doc["id"], indexing_status="completed", completed_at=time.time(), tokens=tokens)

    async def _embed(self, model: str, texts: list[str], origin: Origin) -> tuple[list[list[float]], int]:
        """The batch's embeddings; a rate limit (not a budget) or limits that cannot be checked right now are
        waited out (`RATE_WAITS` times at most, each as long as the refusal says), as the document's indexing
        is not in a hurry. A budget, or a limit still refusing after that, fails the document with its reason."""
        for waited in range(RATE_WAITS + 1):
            try:
                return await models.embed(self.engine, model, texts, origin)
            except BudgetExceeded:
                raise
            except (LimitExceeded, LimitsUnavailable) as exc:
                if waited == RATE_WAITS:
                    raise
                delay = exc.retry_after if isinstance(exc, LimitExceeded) else 2.0
                log.info("knowledge: indexing waits %.1f s for the knowledge base's limits: %s", delay, exc)
                await asyncio.sleep(min(max(delay, 0.1), 60.0))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
