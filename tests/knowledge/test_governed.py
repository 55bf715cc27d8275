"""Knowledge's own model calls are governed like every other call, through a running server on SQLite and
PostgreSQL: the embeddings that index a knowledge base and the embedding and rerank of each search go through the
engine, so they are admitted against limits and budgets, billed, metered and recorded.

- A search made for a completion is recorded under the caller's project and key (kinds `embedding` and `rerank`,
  with the completion's request id), spends against the key, but is not one more request against its RPM.
- A knowledge base's own work (indexing, dataset-API searches) is governed as `dataset:<name>`, under the
  catalog's `knowledge.<name>.limits`: when its budget is spent, indexing stops with the reason on the document,
  and a search through the dataset API is a 429 in Dify's shape.
- Input that moderation flags searches nothing.
- Each segment a prompt used counts a hit (`hit_count`).

The fake provider stands for the chat model (it echoes the prompt), the embedding model (a deterministic vector
per text, a token per word) and the rerank model (the share of the query's words in a document)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.domain.limits import Limits
from promptd.knowledge.service import catalog_dataset_id
from tests.console.helpers import admin_key
from tests.faces.dify.helpers import assert_dify_error, complete
from tests.knowledge.documents import FACTS, write_documents
from tests.knowledge.test_server import _dataset_key, _wait_indexed
from tests.serving import RunningServer, serve_app

PRICE = {"input": "1000", "output": "1000", "unit": "1M", "currency": "USD"}


def _catalog(docs: Path, knowledge_limits: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "providers": {"fake": {"kind": "fake"}},
        "models": {
            "echo": {"provider": "fake", "model": "echo", "price": PRICE},
            "emb": {"provider": "fake", "model": "emb", "type": "embedding", "price": PRICE},
            "rr": {"provider": "fake", "model": "rr", "type": "rerank", "price": PRICE},
        },
        "knowledge": {
            "facts": {
                "documents": [str(docs)],
                "retrieval": {"mode": "hybrid", "embedding_model": "emb", "rerank_model": "rr", "top_k": 2},
                "limits": knowledge_limits or {},
            },
        },
        "projects": {
            "demo": {
                "models": ["echo"],
                "prompt": "Context:\n{{#context#}}\nQuestion: {{query}}",
                "inputs": [{"type": "paragraph", "variable": "query", "required": True}],
                "knowledge": ["facts"],
                "moderation": {
                    "type": "keywords",
                    "keywords": ["forbidden"],
                    "inputs": {"enabled": True, "preset_response": "I cannot answer that."},
                },
            },
        },
    }


def _records(server: RunningServer, project: str) -> list[dict[str, Any]]:
    server.settle()
    return server.repo_call(lambda repo: repo.list_messages(project, limit=1000))  # type: ignore[no-any-return]


def _key(server: RunningServer, **limits: Any) -> tuple[str, str]:
    async def make(repo: Any) -> tuple[str, str]:
        key, info = await repo.create_key("demo", limits=Limits(**limits))
        return key, info.id

    return server.repo_call(make)  # type: ignore[no-any-return]


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    docs = write_documents(tmp_path / "docs")
    with serve_app(_catalog(docs), tmp_path / "data", database_url=database_url) as running:
        yield running


def test_indexing_and_searches_are_metered_recorded_and_limited_as_the_calls_they_serve(
    server: RunningServer,
) -> None:
    headers = _dataset_key(server)
    facts = catalog_dataset_id("facts")
    _wait_indexed(server, headers, facts, len(FACTS))

    # indexing: the knowledge base's own calls, recorded and priced under `dataset:facts`
    indexing = _records(server, "dataset:facts")
    assert indexing and all(r["kind"] == "embedding" and r["face"] == "knowledge" for r in indexing)
    assert all(r["status"] == "normal" and r["model"] == "emb" and float(r["total_price"]) > 0 for r in indexing)

    admin = admin_key(server)
    r = httpx.get(f"{server.url}/admin/v1/usage", params={"project": "dataset:facts"}, headers=server.headers(admin))
    assert r.status_code == 200, r.text
    (row,) = r.json()["data"]
    assert row["model"] == "emb" and row["requests"] == len(indexing) and float(row["cost"]) > 0
    # the scope is read like a project's usage, and is no project anywhere else
    assert httpx.get(f"{server.url}/admin/v1/projects/dataset:facts", headers=server.headers(admin)).status_code == 404

    # a search made for a completion: under the caller's key, not one more request against its RPM
    key, key_id = _key(server, rpm=2)
    asked = [complete(server, {"inputs": {"query": "Which river flows through Paris?"}, "user": "u"}, key=key)]
    asked.append(complete(server, {"inputs": {"query": "Who discovered penicillin?"}, "user": "u"}, key=key))
    assert [r.status_code for r in asked] == [200, 200], asked[0].text
    assert asked[0].json()["metadata"]["retriever_resources"][0]["document_name"] == "seine.txt"
    refused = complete(server, {"inputs": {"query": "How high is Everest?"}, "user": "u"}, key=key)
    assert refused.status_code == 429  # the third request; the four model calls of the searches did not count

    mine = [r for r in _records(server, "demo") if r["key_id"] == key_id]
    assert sorted(r["kind"] for r in mine) == ["chat", "chat", "embedding", "embedding", "rerank", "rerank"]
    assert all(r["status"] == "normal" and float(r["total_price"]) > 0 for r in mine)
    by_request: dict[str, set[str]] = {}
    for r in mine:
        by_request.setdefault(r["request_id"], set()).add(r["kind"])
    assert list(by_request.values()) == [{"chat", "embedding", "rerank"}] * 2  # each search is its call's

    metrics = httpx.get(f"{server.url}/metrics").text
    assert any(
        'project="dataset:facts"' in line and line.startswith("promptd_requests_total") for line in metrics.splitlines()
    )
    assert any('model="rr"' in line and line.startswith("promptd_requests_total") for line in metrics.splitlines())

    # each segment a prompt used counted a hit (written off the request path)
    cited = {r["segment_id"] for a in asked for r in a.json()["metadata"]["retriever_resources"]}
    deadline = time.monotonic() + 20
    while True:
        counts = {}
        for doc in _wait_indexed(server, headers, facts, len(FACTS)):
            segs = httpx.get(f"{server.v1}/datasets/{facts}/documents/{doc['id']}/segments", headers=headers)
            counts.update({s["id"]: s["hit_count"] for s in segs.json()["data"]})
        if all(counts[s] >= 1 for s in cited):
            break
        assert time.monotonic() < deadline, counts
        time.sleep(0.2)
    assert sum(counts.values()) == sum(len(a.json()["metadata"]["retriever_resources"]) for a in asked)


def test_flagged_input_searches_nothing(server: RunningServer) -> None:
    _wait_indexed(server, _dataset_key(server), catalog_dataset_id("facts"), len(FACTS))
    key, key_id = _key(server)
    r = complete(server, {"inputs": {"query": "the forbidden river of Paris"}, "user": "u"}, key=key)
    assert r.status_code == 200 and r.json()["answer"] == "I cannot answer that."
    assert r.json()["metadata"]["retriever_resources"] == [] or "retriever_resources" not in r.json()["metadata"]
    assert [x["kind"] for x in _records(server, "demo") if x["key_id"] == key_id] == ["chat"]


def test_a_knowledge_bases_budget_stops_its_indexing_and_its_searches(tmp_path: Path, database_url: str) -> None:
    docs = write_documents(tmp_path / "docs")
    catalog = _catalog(docs, {"cost_per_day": "0.000001"})  # less than one embeddings call may cost
    with serve_app(catalog, tmp_path / "data", database_url=database_url) as server:
        headers = _dataset_key(server)
        facts = catalog_dataset_id("facts")
        indexed = _wait_indexed(server, headers, facts, len(FACTS))
        assert all(d["indexing_status"] == "error" for d in indexed), indexed
        assert all("Budget reached: knowledge base 'facts'" in d["error"] for d in indexed), indexed
        assert _records(server, "dataset:facts") == []  # refused before any model call: nothing was spent

        r = httpx.post(
            f"{server.v1}/datasets/{facts}/retrieve",
            headers=headers,
            json={"query": "Paris", "retrieval_model": {"search_method": "semantic_search", "top_k": 2}},
        )
        assert_dify_error(r, 429, r.json().get("code", ""))
        assert "knowledge base 'facts'" in r.json()["message"]
