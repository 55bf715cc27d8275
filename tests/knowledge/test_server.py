"""Knowledge end to end through a running server, on SQLite and PostgreSQL: the catalog's knowledge base is
indexed at start, a completion cites it, and Dify's dataset API manages datasets, documents and segments.

The fake provider stands in for the chat model (it echoes the rendered prompt, so the test sees the context the
prompt was given) and for the embedding model (a deterministic vector per text: identical texts match)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.knowledge.service import catalog_dataset_id
from tests.console.helpers import admin_key, get
from tests.faces.dify.helpers import assert_dify_error, complete, stored_message, stream
from tests.knowledge.documents import FACTS, write_documents, write_docx
from tests.serving import RunningServer, serve_app

RESOURCE_FIELDS = {
    "position",
    "dataset_id",
    "dataset_name",
    "document_id",
    "document_name",
    "segment_id",
    "score",
    "content",
}


def _catalog(docs: Path) -> dict[str, Any]:
    return {
        "providers": {"fake": {"kind": "fake"}},
        "models": {
            "echo": {"provider": "fake", "model": "echo"},
            "emb": {"provider": "fake", "model": "emb", "type": "embedding"},
            "rr": {"provider": "fake", "model": "rr", "type": "rerank"},
        },
        "knowledge": {
            "facts": {
                "description": "Public-domain facts",
                "documents": [str(docs)],
                "chunking": {"size": 300, "overlap": 30},
                "retrieval": {"mode": "full_text", "top_k": 2},
            },
        },
        "projects": {
            "demo": {
                "models": ["echo"],
                "prompt": "Context:\n{{#context#}}\nQuestion: {{query}}",
                "inputs": [{"type": "paragraph", "variable": "query", "required": True}],
                "knowledge": ["facts"],
            },
            "helper": {"mode": "chat", "models": ["echo"], "knowledge": ["facts"]},
        },
    }


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    docs = write_documents(tmp_path / "docs")
    with serve_app(_catalog(docs), tmp_path / "data", database_url=database_url) as running:
        yield running


def _dataset_key(server: RunningServer) -> dict[str, str]:
    async def make(repo: Any) -> str:
        key, _ = await repo.create_key("*", role="dataset")
        return str(key)

    key = str(server.repo_call(make))
    assert key.startswith("dataset-")
    return {"Authorization": f"Bearer {key}"}


def _wait_indexed(server: RunningServer, headers: dict[str, str], dataset_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(f"{server.v1}/datasets/{dataset_id}/documents", headers=headers, params={"limit": 100})
        assert r.status_code == 200, r.text
        docs: list[dict[str, Any]] = r.json()["data"]
        if len(docs) == count and all(d["indexing_status"] in ("completed", "error") for d in docs):
            return docs
        assert time.monotonic() < deadline, docs
        time.sleep(0.05)


def test_catalog_knowledge_fills_the_prompt_and_is_cited(server: RunningServer) -> None:
    headers = _dataset_key(server)
    facts = catalog_dataset_id("facts")
    docs = _wait_indexed(server, headers, facts, len(FACTS))
    assert {d["name"] for d in docs} == set(FACTS)
    assert all(d["indexing_status"] == "completed" and d["display_status"] == "available" for d in docs), docs

    r = complete(server, {"inputs": {"query": "Which river flows through Paris?"}, "user": "u1"})
    assert r.status_code == 200, r.text
    body = r.json()
    cited = body["metadata"]["retriever_resources"]
    assert cited and set(cited[0]) >= RESOURCE_FIELDS
    assert cited[0]["document_name"] == "seine.txt" and cited[0]["dataset_name"] == "facts"
    assert cited[0]["dataset_id"] == facts and cited[0]["position"] == 1 and 0 < cited[0]["score"] < 1
    assert FACTS["seine.txt"] in body["answer"]  # the echoed prompt carries the segment in place of {{#context#}}
    assert "{{" not in body["answer"]
    row = stored_message(server, body["message_id"])
    assert row["retriever_resources"] == cited
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'promptd_knowledge_retrieval_seconds_count{project="demo"} 1' in metrics
    # the console's request detail reads them from the management API
    detail = get(server, admin_key(server), f"/messages/{body['message_id']}")
    assert detail.status_code == 200 and detail.json()["retriever_resources"] == cited

    events = stream(server, {"inputs": {"query": "Who discovered penicillin?"}, "user": "u1"})
    end = [e for e in events if isinstance(e, dict) and e.get("event") == "message_end"]
    assert end and end[0]["metadata"]["retriever_resources"][0]["document_name"] == "penicillin.docx"

    # the PDF and the HTML were read too
    for question, name in (("pharaoh Khufu pyramid", "pyramid.pdf"), ("largest planet", "jupiter.html")):
        got = complete(server, {"inputs": {"query": question}, "user": "u1"}).json()
        assert got["metadata"]["retriever_resources"][0]["document_name"] == name

    # nothing matches: no context, and an empty citation list (the project attaches knowledge)
    none = complete(server, {"inputs": {"query": "zzzz qqqq"}, "user": "u1"}).json()
    assert none["metadata"]["retriever_resources"] == []

    # the chat API: the last user message is searched, the context goes in the system prompt, the record cites
    chat_key = server.new_key("helper")
    r = httpx.post(
        f"{server.url}/api/v1/chat/completions",
        headers={"Authorization": f"Bearer {chat_key}"},
        json={"model": "helper", "messages": [{"role": "user", "content": "How high is Mount Everest?"}]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    row = stored_message(server, r.json()["choices"][0]["completion_id"], project="helper")
    assert row["prompt"][0]["role"] == "system" and "highest mountain" in row["prompt"][0]["content"]
    assert row["retriever_resources"][0]["document_name"] == "everest.md"


def test_dataset_api(server: RunningServer) -> None:
    headers = _dataset_key(server)
    v1 = server.v1
    # an app key does not open the dataset API, nor a dataset key the app API
    assert_dify_error(httpx.get(f"{v1}/datasets", headers=server.headers()), 401, "unauthorized")
    assert_dify_error(
        complete(server, {"inputs": {"query": "x"}, "user": "u"}, key=headers["Authorization"][7:]), 401, "unauthorized"
    )

    r = httpx.post(f"{v1}/datasets", headers=headers, json={"name": "notes", "description": "mine"})
    assert r.status_code == 200, r.text
    ds = r.json()
    assert ds["name"] == "notes" and ds["document_count"] == 0
    assert ds["retrieval_model_dict"]["search_method"] == "full_text_search"
    assert_dify_error(
        httpx.post(f"{v1}/datasets", headers=headers, json={"name": "notes"}), 409, "dataset_name_duplicate"
    )
    assert_dify_error(
        httpx.get(f"{v1}/datasets/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=headers), 404, "not_found"
    )
    listed = httpx.get(f"{v1}/datasets", headers=headers).json()
    assert {d["name"] for d in listed["data"]} == {"notes", "facts"} and listed["total"] == 2

    base = f"{v1}/datasets/{ds['id']}"
    r = httpx.post(
        f"{base}/document/create-by-text",
        headers=headers,
        json={
            "name": "tea",
            "text": "Tea originated in China. " * 20 + "\n\nThe Boston Tea Party happened in 1773.",
            "indexing_technique": "economy",
            "process_rule": {"mode": "custom", "rules": {"segmentation": {"separator": "\\n\\n", "max_tokens": 50}}},
        },
    )
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["document"]["indexing_status"] == "waiting" and created["batch"]
    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(f"{base}/documents/{created['batch']}/indexing-status", headers=headers).json()["data"][0]
        if status["indexing_status"] == "completed":
            break
        assert status["indexing_status"] in ("waiting", "parsing", "splitting", "indexing"), status
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["total_segments"] == status["completed_segments"] >= 3  # 200 characters a segment
    assert status["completed_at"] is not None and status["splitting_completed_at"] is not None
    doc_id = created["document"]["id"]

    # by file: a .docx, read off the request path
    path = server.settings.data_dir / "fleming.docx"
    write_docx(path, FACTS["penicillin.docx"])
    r = httpx.post(
        f"{base}/document/create_by_file",
        headers=headers,
        files={"file": ("fleming.docx", path.read_bytes(), "application/octet-stream")},
        data={"data": '{"indexing_technique": "economy", "process_rule": {"mode": "automatic"}}'},
    )
    assert r.status_code == 200, r.text
    file_doc = r.json()["document"]
    assert_dify_error(
        httpx.post(f"{base}/document/create_by_file", headers=headers, files={"file": ("x.exe", b"MZ")}),
        415,
        "unsupported_file_type",
    )
    assert_dify_error(
        httpx.post(f"{base}/document/create_by_file", headers=headers, data={"a": "b"}), 400, "no_file_uploaded"
    )
    _wait_indexed(server, headers, ds["id"], 2)

    segs = httpx.get(f"{base}/documents/{doc_id}/segments", headers=headers).json()
    assert segs["doc_form"] == "text_model" and segs["total"] >= 3
    assert [s["position"] for s in segs["data"]] == sorted(s["position"] for s in segs["data"])
    r = httpx.post(
        f"{base}/documents/{doc_id}/segments",
        headers=headers,
        json={"segments": [{"content": "Earl Grey is flavoured with bergamot.", "keywords": ["bergamot"]}]},
    )
    assert r.status_code == 200, r.text
    seg = r.json()["data"][0]
    assert seg["keywords"] == ["bergamot"] and seg["word_count"] == len("Earl Grey is flavoured with bergamot.")

    def search(query: str, **model: Any) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"query": query, **({"retrieval_model": model} if model else {})}
        resp = httpx.post(f"{base}/retrieve", headers=headers, json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["query"] == {"content": query}
        return list(resp.json()["records"])

    hits = search("bergamot")
    assert hits[0]["segment"]["id"] == seg["id"] and hits[0]["segment"]["document"]["name"] == "tea.txt"
    r = httpx.post(
        f"{base}/documents/{doc_id}/segments/{seg['id']}",
        headers=headers,
        json={"segment": {"content": "Darjeeling grows in the Himalayan foothills."}},
    )
    assert r.status_code == 200 and r.json()["data"]["content"].startswith("Darjeeling")
    assert search("bergamot") == []  # the index follows the edit
    assert search("Himalayan")[0]["segment"]["id"] == seg["id"]
    assert search("fleming penicillin")[0]["segment"]["document"]["id"] == file_doc["id"]
    assert len(search("tea", top_k=1, search_method="keyword_search")) == 1
    assert search("tea", score_threshold_enabled=True, score_threshold=0.99) == []
    # a rerank model reorders the candidates; its scores (the fake's: share of query words present) are kept
    reranked = search("Boston Tea Party", reranking_enable=True, reranking_model={"reranking_model_name": "rr"})
    assert "Boston Tea Party" in reranked[0]["segment"]["content"] and reranked[0]["score"] == 1.0
    assert all(r["score"] < 1.0 for r in reranked[1:])
    assert_dify_error(
        httpx.post(
            f"{base}/retrieve",
            headers=headers,
            json={"query": "x", "retrieval_model": {"search_method": "semantic_search"}},
        ),
        400,
        "invalid_param",
    )
    r = httpx.delete(f"{base}/documents/{doc_id}/segments/{seg['id']}", headers=headers)
    assert r.status_code == 204
    assert search("Himalayan") == []
    assert_dify_error(httpx.get(f"{base}/documents/{doc_id}/segments/{seg['id']}", headers=headers), 404, "not_found")

    # the catalog's knowledge base is changed in the catalog, not here
    facts = catalog_dataset_id("facts")
    assert_dify_error(httpx.delete(f"{v1}/datasets/{facts}", headers=headers), 403, "forbidden")

    assert httpx.delete(f"{base}/documents/{doc_id}", headers=headers).status_code == 204
    assert search("Boston") == []
    assert httpx.delete(base, headers=headers).status_code == 204
    assert_dify_error(httpx.get(base, headers=headers), 404, "not_found")


def test_vector_and_hybrid_retrieval(server: RunningServer) -> None:
    headers = _dataset_key(server)
    v1 = server.v1
    r = httpx.post(
        f"{v1}/datasets",
        headers=headers,
        json={
            "name": "vectors",
            "indexing_technique": "high_quality",
            "embedding_model": "emb",
            "retrieval_model": {"search_method": "hybrid_search", "top_k": 3},
        },
    )
    assert r.status_code == 200, r.text
    ds = r.json()
    assert ds["embedding_model"] == "emb" and ds["retrieval_model_dict"]["search_method"] == "hybrid_search"
    assert ds["indexing_technique"] == "high_quality"
    base = f"{v1}/datasets/{ds['id']}"
    lines = [f"Line number {i} says something about topic {i}." for i in range(12)]
    r = httpx.post(
        f"{base}/document/create_by_text",
        headers=headers,
        json={
            "name": "lines",
            "text": "\n\n".join(lines),
            "process_rule": {
                "mode": "custom",
                "rules": {"segmentation": {"separator": "\\n\\n", "max_tokens": 15, "chunk_overlap": 0}},
            },
        },
    )
    assert r.status_code == 200, r.text
    _wait_indexed(server, headers, ds["id"], 1)
    assert httpx.get(base, headers=headers).json()["indexing_technique"] == "high_quality"
    segs = httpx.get(f"{base}/documents/{r.json()['document']['id']}/segments", headers=headers).json()["data"]
    assert len(segs) == 12
    target = segs[7]["content"]
    # the fake embedding gives identical texts the same vector: vector search finds the segment with score 1
    got = httpx.post(
        f"{base}/retrieve",
        headers=headers,
        json={"query": target, "retrieval_model": {"search_method": "semantic_search", "top_k": 2}},
    ).json()
    assert got["records"][0]["segment"]["content"] == target and got["records"][0]["score"] == pytest.approx(
        1.0, abs=1e-5
    )
    # hybrid: first in both rankings → fused score 1
    got = httpx.post(f"{base}/retrieve", headers=headers, json={"query": target}).json()
    assert got["records"][0]["segment"]["content"] == target and got["records"][0]["score"] == pytest.approx(1.0)
    assert len(got["records"]) == 3
