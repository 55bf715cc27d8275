"""Knowledge benchmarks: ingestion rate, retrieval latency (p50/p99) at 10k and 100k segments, and recall@5 on
the labelled set in bench/knowledge_set.py; on SQLite and PostgreSQL. In-process (no HTTP): the figures are the
knowledge subsystem's own. Results: docs/benchmarks.md.

    python -m bench.knowledge --db sqlite --segments 10000
    python -m bench.knowledge --db postgresql+asyncpg://postgres@127.0.0.1:5432/bench --segments 100000
    python -m bench.knowledge --db sqlite --recall [--embed-local]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from bench.knowledge_set import PARAGRAPHS, QUESTIONS

from promptd.catalog.schema import Catalog
from promptd.knowledge.indexer import Indexer
from promptd.knowledge.search import Retrieval, Retriever
from promptd.knowledge.store import KnowledgeStore
from promptd.store.db import create_engine, migrate

VOCAB = 20_000
DIMS = 384  # a common sentence-embedding size (e.g. all-MiniLM-L6-v2)


def _words(rng: random.Random, n: int) -> list[str]:
    """Zipf-like pseudo-words, as word frequencies are in text."""
    return [f"w{int(VOCAB ** rng.random())}" for _ in range(n)]


def _db(url: str) -> str:
    return url.split("+")[0]


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000


async def _fresh(url: str) -> Any:
    db = create_engine(url)
    await migrate(db)
    return db


async def scale(url: str, segments: int, queries: int) -> None:
    rng = random.Random(7)
    db = await _fresh(url)
    store = KnowledgeStore(db)
    indexer = Indexer(store, engine=None)  # type: ignore[arg-type]  # full text only: no model is called
    dataset = str(uuid.uuid4())
    chunking = {"size": 500, "overlap": 50, "separator": "\n\n"}
    await store.create_dataset(
        {
            "id": dataset,
            "name": f"bench-{dataset[:8]}",
            "source": "api",
            "indexing_technique": "economy",
            "retrieval": Retrieval(top_k=5).to_json(),
            "chunking": chunking,
        }
    )
    per_doc = 200
    with tempfile.TemporaryDirectory() as tmp:
        docs = []
        for d in range(segments // per_doc):
            paragraphs = ["Topic " + " ".join(_words(rng, 60)) + "." for _ in range(per_doc)]
            path = Path(tmp) / f"doc{d}.txt"
            path.write_text("\n\n".join(paragraphs))
            doc_id = str(uuid.uuid4())
            await store.add_document(
                {
                    "id": doc_id,
                    "dataset_id": dataset,
                    "name": path.name,
                    "created_from": "api",
                    "batch": "b",
                    "path": str(path),
                    "content_hash": "x",
                }
            )
            docs.append(doc_id)
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        start = time.perf_counter()
        for doc_id in docs:
            await indexer.index(doc_id)
        took = time.perf_counter() - start
    count, _ = await store.dataset_counts(dataset)
    indexed, _ = await store.list_documents(dataset, page=1, limit=len(docs))
    stored = sum(d["total_segments"] for d in indexed)
    print(
        f"ingest  {_db(url):10} docs={count} segments~{stored:.0f} {size / 1e6:.1f} MB "
        f"in {took:.1f} s: {stored / took:,.0f} segments/s, {size / 1e6 / took:.2f} MB/s"
    )
    retriever = Retriever(store, engine=None)  # type: ignore[arg-type]
    ds = await store.get_dataset(dataset)
    assert ds is not None
    settings = Retrieval(top_k=5)
    lat: list[float] = []
    for _ in range(queries):
        q = " ".join(f"w{rng.randint(50, 5000)}" for _ in range(3))
        t = time.perf_counter()
        await retriever.search(ds, q, settings)
        lat.append(time.perf_counter() - t)
    print(f"fulltext {_db(url):10} {stored:.0f} segments: p50 {_pct(lat, 50):.2f} ms  p99 {_pct(lat, 99):.2f} ms")

    # vectors: DIMS-dimensional unit vectors on a second dataset, searched in process
    vdataset = str(uuid.uuid4())
    await store.create_dataset(
        {
            "id": vdataset,
            "name": f"vec-{vdataset[:8]}",
            "source": "api",
            "indexing_technique": "high_quality",
            "retrieval": Retrieval(mode="vector", top_k=5, embedding_model="x").to_json(),
            "chunking": chunking,
        }
    )
    vdoc = str(uuid.uuid4())
    await store.add_document(
        {
            "id": vdoc,
            "dataset_id": vdataset,
            "name": "v",
            "created_from": "api",
            "batch": "b",
            "path": "-",
            "content_hash": "x",
        }
    )
    nprng = np.random.default_rng(7)
    start = time.perf_counter()
    for base in range(0, segments, 1000):
        vecs = nprng.standard_normal((1000, DIMS)).astype("<f4")
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        await store.add_segments(
            vdataset,
            vdoc,
            [
                {"position": base + i + 1, "content": f"segment {base + i}", "embedding": vecs[i].tobytes()}
                for i in range(1000)
            ],
        )
    vtook = time.perf_counter() - start
    first = time.perf_counter()
    query = nprng.standard_normal(DIMS).astype(np.float32)
    await retriever._vector(vdataset, query / np.linalg.norm(query), 5)
    load = time.perf_counter() - first
    vlat: list[float] = []
    for _ in range(queries):
        q = nprng.standard_normal(DIMS).astype(np.float32)
        t = time.perf_counter()
        await retriever._vector(vdataset, q / np.linalg.norm(q), 5)
        vlat.append(time.perf_counter() - t)
    print(
        f"vector   {_db(url):10} {segments} x {DIMS}d: stored {segments / vtook:,.0f} segments/s; "
        f"first search (loads the matrix) {load * 1000:.0f} ms; "
        f"p50 {_pct(vlat, 50):.2f} ms  p99 {_pct(vlat, 99):.2f} ms"
    )
    await db.dispose()


async def recall(url: str, embed_local: bool) -> None:
    db = await _fresh(url)
    store = KnowledgeStore(db)
    engine: Any = None
    modes = ["full_text"]
    if embed_local:
        from promptd.providers.local import LocalProvider

        catalog = Catalog.model_validate(
            {
                "providers": {"local": {"kind": "local"}},
                "models": {"smol": {"provider": "local", "model": "smol", "type": "embedding"}},
            }
        )
        engine = SimpleNamespace(
            catalog=catalog, providers={"local": LocalProvider("local", catalog.providers["local"])}
        )
        modes += ["vector", "hybrid"]
    for mode in modes:
        dataset = str(uuid.uuid4())
        settings = Retrieval(mode=mode, top_k=5, embedding_model="smol" if mode != "full_text" else None)
        await store.create_dataset(
            {
                "id": dataset,
                "name": f"recall-{dataset[:8]}",
                "source": "api",
                "indexing_technique": "economy",
                "retrieval": settings.to_json(),
                "chunking": {"size": 1000, "overlap": 0, "separator": "\n\n"},
            }
        )
        indexer = Indexer(store, engine)
        with tempfile.TemporaryDirectory() as tmp:
            for key, text in PARAGRAPHS.items():
                path = Path(tmp) / f"{key}.txt"
                path.write_text(text)
                doc_id = str(uuid.uuid4())
                await store.add_document(
                    {
                        "id": doc_id,
                        "dataset_id": dataset,
                        "name": path.name,
                        "created_from": "api",
                        "batch": "b",
                        "path": str(path),
                        "content_hash": "x",
                    }
                )
                await indexer.index(doc_id)
        retriever = Retriever(store, engine)
        ds = await store.get_dataset(dataset)
        assert ds is not None
        at1 = at5 = 0
        for question, label in QUESTIONS:
            hits = await retriever.search(ds, question, settings)
            names = [h.segment["document_name"].removesuffix(".txt") for h in hits]
            at1 += bool(names[:1] == [label])
            at5 += label in names[:5]
        n = len(QUESTIONS)
        print(
            f"recall   {_db(url):10} {mode:9} {len(PARAGRAPHS)} paragraphs, {n} questions: "
            f"recall@1 {at1 / n:.2f}  recall@5 {at5 / n:.2f}"
        )
    if engine is not None:
        await engine.providers["local"].aclose()
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite", help="sqlite, or a PostgreSQL URL (a scratch database)")
    parser.add_argument("--segments", type=int, default=0)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--recall", action="store_true")
    parser.add_argument("--embed-local", action="store_true", help="also vector and hybrid on SmolLM2 embeddings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db if args.db != "sqlite" else f"sqlite+aiosqlite:///{tmp}/bench.db"
        if args.segments:
            asyncio.run(scale(url, args.segments, args.queries))
        if args.recall:
            asyncio.run(recall(url, args.embed_local))


if __name__ == "__main__":
    main()
