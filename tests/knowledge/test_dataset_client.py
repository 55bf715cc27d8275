"""Dify's knowledge-base client, as it calls the dataset API, through a running server (SQLite and PostgreSQL).

`KnowledgeBase` below sends exactly the requests of the `KnowledgeBaseClient` in Dify's repository
(sdks/python-client, not yet published on PyPI: dify-client 0.1.10 has none), with its defaults: documents by
text ask for `indexing_technique: high_quality` and `process_rule: {mode: automatic}`, files go as multipart with
the arguments as a JSON `data` field, segments are updated with `POST {"segment": …}`, and hit testing is
`/hit-testing`. Updating a document (by text, by file, or `original_document_id`) keeps its id and replaces its
segments."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.knowledge.store import KnowledgeStore
from tests.knowledge.test_server import _dataset_key
from tests.serving import RunningServer, serve_app

CATALOG: dict[str, Any] = {
    "providers": {"fake": {"kind": "fake"}},
    "models": {"echo": {"provider": "fake", "model": "echo"}},
    "projects": {"demo": {"models": ["echo"], "prompt": "{{query}}"}},
}


class KnowledgeBase:
    """The requests of Dify's KnowledgeBaseClient, for one dataset."""

    def __init__(self, base_url: str, key: str, dataset_id: str | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        self.dataset_id = dataset_id

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def create_dataset(self, name: str) -> httpx.Response:
        return self.send("POST", "/datasets", json={"name": name})

    def create_document_by_text(self, name: str, text: str) -> httpx.Response:
        body = {"indexing_technique": "high_quality", "process_rule": {"mode": "automatic"}, "name": name, "text": text}
        return self.send("POST", f"/datasets/{self.dataset_id}/document/create_by_text", json=body)

    def update_document_by_text(self, document_id: str, name: str, text: str) -> httpx.Response:
        path = f"/datasets/{self.dataset_id}/documents/{document_id}/update_by_text"
        return self.send("POST", path, json={"name": name, "text": text})

    def create_document_by_file(self, path: Path, original_document_id: str | None = None) -> httpx.Response:
        data: dict[str, Any] = {"process_rule": {"mode": "automatic"}, "indexing_technique": "high_quality"}
        if original_document_id is not None:
            data["original_document_id"] = original_document_id
        return self.send(
            "POST",
            f"/datasets/{self.dataset_id}/document/create_by_file",
            data={"data": json.dumps(data)},
            files={"file": (path.name, path.read_bytes())},
        )

    def update_document_by_file(self, document_id: str, path: Path) -> httpx.Response:
        return self.send(
            "POST",
            f"/datasets/{self.dataset_id}/documents/{document_id}/update_by_file",
            data={"data": json.dumps({})},
            files={"file": (path.name, path.read_bytes())},
        )

    def batch_indexing_status(self, batch: str) -> httpx.Response:
        return self.send("GET", f"/datasets/{self.dataset_id}/documents/{batch}/indexing-status")

    def list_documents(self, keyword: str) -> httpx.Response:
        params = {"page": 1, "limit": 20, "keyword": keyword}
        return self.send("GET", f"/datasets/{self.dataset_id}/documents", params=params)

    def query_segments(self, document_id: str) -> httpx.Response:
        path = f"/datasets/{self.dataset_id}/documents/{document_id}/segments"
        return self.send("GET", path, params={"status": "completed"})

    def update_document_segment(self, document_id: str, segment_id: str, segment: dict[str, Any]) -> httpx.Response:
        path = f"/datasets/{self.dataset_id}/documents/{document_id}/segments/{segment_id}"
        return self.send("POST", path, json={"segment": segment})

    def hit_testing(self, query: str) -> httpx.Response:
        return self.send("POST", f"/datasets/{self.dataset_id}/hit-testing", json={"query": query})

    def delete_document(self, document_id: str) -> httpx.Response:
        return self.send("DELETE", f"/datasets/{self.dataset_id}/documents/{document_id}")

    def delete_dataset(self) -> httpx.Response:
        return self.send("DELETE", f"/datasets/{self.dataset_id}")

    def indexed(self, answer: httpx.Response) -> dict[str, Any]:
        """Wait for the batch of a create or update answer; its document's status."""
        assert answer.status_code == 200, answer.text
        batch = answer.json()["batch"]
        deadline = time.monotonic() + 60
        while True:
            (status,) = self.batch_indexing_status(batch).json()["data"]
            if status["indexing_status"] in ("completed", "error"):
                return status  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, status
            time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    with serve_app(CATALOG, tmp_path / "data", database_url=database_url) as running:
        yield running


def _hits(kb: KnowledgeBase, query: str) -> list[str]:
    r = kb.hit_testing(query)
    assert r.status_code == 200, r.text
    return [rec["segment"]["content"] for rec in r.json()["records"]]


def test_difys_knowledge_base_client_creates_updates_searches_and_deletes(
    server: RunningServer, tmp_path: Path
) -> None:
    key = _dataset_key(server)["Authorization"].removeprefix("Bearer ")
    with KnowledgeBase(server.v1, key) as kb:
        _use(kb, server, tmp_path)


def _use(kb: KnowledgeBase, server: RunningServer, tmp_path: Path) -> None:
    r = kb.create_dataset("handbook")
    assert r.status_code == 200, r.text
    assert r.json()["indexing_technique"] is None  # as in Dify: set by the first document
    kb.dataset_id = r.json()["id"]

    created = kb.create_document_by_text("holidays", "Staff get twenty-five days of paid holiday a year.")
    # the client asks for high_quality; a dataset without an embedding model says it indexed for full text
    assert created.headers["X-Promptd-Ignored"] == "indexing_technique"
    assert kb.send("GET", f"/datasets/{kb.dataset_id}").json()["indexing_technique"] == "economy"

    # a dataset given documents before promptd kept its technique reports the one they were indexed with
    async def forget_technique(repo: Any) -> None:
        await KnowledgeStore(repo.engine).update_dataset(str(kb.dataset_id), {"indexing_technique": None})

    server.repo_call(forget_technique)
    assert kb.send("GET", f"/datasets/{kb.dataset_id}").json()["indexing_technique"] == "economy"
    doc_id = created.json()["document"]["id"]
    assert kb.indexed(created)["indexing_status"] == "completed"
    assert [d["id"] for d in kb.list_documents("holi").json()["data"]] == [doc_id]
    assert _hits(kb, "paid holiday") == ["Staff get twenty-five days of paid holiday a year."]

    (segment,) = kb.query_segments(doc_id).json()["data"]
    changed = {"content": "Staff get thirty days of holiday.", "enabled": True}
    r = kb.update_document_segment(doc_id, segment["id"], changed)
    assert r.status_code == 200 and r.json()["data"]["content"] == "Staff get thirty days of holiday.", r.text

    # update by text: the same document, new content, its segments replaced
    updated = kb.update_document_by_text(doc_id, "holidays", "Holiday is now thirty-five days, carried over freely.")
    assert updated.json()["document"]["id"] == doc_id and updated.json()["batch"] != created.json()["batch"]
    assert kb.indexed(updated)["indexing_status"] == "completed"
    assert _hits(kb, "holiday") == ["Holiday is now thirty-five days, carried over freely."]

    # a document an indexer has now is not updated under it
    async def being_indexed(repo: Any) -> bool:
        store = KnowledgeStore(repo.engine)
        await store.set_document(doc_id, indexing_status="parsing")
        refused = await store.reindex_document(doc_id, {"name": "holidays.txt"})
        await store.set_document(doc_id, indexing_status="completed")
        return refused

    assert server.repo_call(being_indexed) is False

    # by file, then the file replaced by update_by_file and by original_document_id
    policy = tmp_path / "expenses.md"
    policy.write_text("# Expenses\n\nTrain tickets are refunded in second class.")
    by_file = kb.create_document_by_file(policy)
    file_doc = by_file.json()["document"]["id"]
    assert kb.indexed(by_file)["indexing_status"] == "completed"
    assert any("second class" in h for h in _hits(kb, "train tickets"))
    policy.write_text("# Expenses\n\nTrain tickets are refunded in first class.")
    again = kb.update_document_by_file(file_doc, policy)
    assert again.json()["document"]["id"] == file_doc and kb.indexed(again)["indexing_status"] == "completed"
    assert [h for h in _hits(kb, "train tickets") if "class" in h] == [
        "# Expenses\n\nTrain tickets are refunded in first class."
    ]
    policy.write_text("Taxis are refunded after 22:00.")
    replaced = kb.create_document_by_file(policy, original_document_id=file_doc)
    assert replaced.json()["document"]["id"] == file_doc and kb.indexed(replaced)["indexing_status"] == "completed"
    assert _hits(kb, "taxis refunded") == ["Taxis are refunded after 22:00."]
    assert len(kb.list_documents("").json()["data"]) == 2  # updated in place, not added

    assert kb.delete_document(doc_id).status_code == 204
    assert kb.delete_dataset().status_code == 204
