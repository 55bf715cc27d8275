"""Knowledge bases in the catalog: documents relative to the catalog file, and every reference checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promptd.catalog.load import load_catalog, parse_catalog
from promptd.errors import CatalogError


def _raw(**kb: Any) -> dict[str, Any]:
    return {
        "providers": {"fake": {"kind": "fake"}},
        "models": {
            "chat": {"provider": "fake", "model": "c"},
            "emb": {"provider": "fake", "model": "e", "type": "embedding"},
        },
        "knowledge": {"kb": kb},
        "projects": {
            "demo": {"models": ["chat"], "prompt": "{{#context#}} {{context}} {{query}}", "knowledge": ["kb"]}
        },
    }


def test_documents_are_relative_to_the_catalog_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("A")
    path = tmp_path / "promptd.yaml"
    path.write_text(
        "providers: {fake: {kind: fake}}\n"
        "models: {chat: {provider: fake, model: c}}\n"
        "knowledge: {kb: {documents: [docs], chunking: {size: 200, overlap: 20}}}\n"
        "projects: {demo: {models: [chat], prompt: '{{context}} {{query}}', knowledge: [kb]}}\n"
    )
    catalog = load_catalog(path, {})
    assert catalog.knowledge["kb"].documents == [str(tmp_path / "docs")]
    assert catalog.knowledge["kb"].retrieval.mode == "full_text"
    assert catalog.projects["demo"].knowledge == ["kb"]


def test_knowledge_problems_are_reported(tmp_path: Path) -> None:
    raw = _raw(
        documents=[str(tmp_path / "missing")],
        chunking={"size": 100, "overlap": 100},
        retrieval={"mode": "vector"},
    )
    with pytest.raises(CatalogError) as info:
        parse_catalog(raw, {}, source="c.yaml")
    text = "\n".join(info.value.problems)
    assert "knowledge.kb.chunking: `overlap` (100) must be smaller than `size` (100)" in text
    assert "knowledge.kb.retrieval: mode vector needs an `embedding_model`" in text

    raw = _raw(documents=[str(tmp_path / "missing")], retrieval={"mode": "hybrid", "embedding_model": "chat"})
    raw["projects"]["demo"]["knowledge"] = ["kb", "nope"]
    with pytest.raises(CatalogError) as info:
        parse_catalog(raw, {}, source="c.yaml")
    assert info.value.problems == [
        f"knowledge.kb.documents[0]: no such file or folder: {tmp_path / 'missing'}",
        "knowledge.kb.retrieval.embedding_model: 'chat' is a chat model, not embedding",
        "projects.demo.knowledge[1]: no knowledge base named 'nope' (known: kb; or a dataset id)",
    ]


def test_context_variable_needs_attached_knowledge() -> None:
    raw = _raw()
    raw["projects"]["demo"]["knowledge"] = []
    with pytest.raises(CatalogError) as info:
        parse_catalog(raw, {}, source="c.yaml")
    assert info.value.problems == ["projects.demo.prompt: uses {{context}} but no input declares variable 'context'"]
    raw["projects"]["demo"]["knowledge"] = ["0d5cbd8e-6f42-4c1e-9b0e-2a9d7c1f4e55"]  # a dataset made through the API
    assert parse_catalog(raw, {}).projects["demo"].knowledge_query == "query"
