"""Catalog loading: every problem reported with its file and key path, secrets from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promptd.catalog.load import BUILTIN_CATALOG, STARTER_PATH, format_path, load_catalog, parse_catalog
from promptd.errors import CatalogError


def problems(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(CatalogError) as info:
        parse_catalog(raw, environ or {}, source="c.yaml")
    assert all(line.startswith("  c.yaml: ") for line in info.value.message.splitlines()[1:])
    return info.value.problems


def catalog(**project: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "providers": {"local": {"kind": "local"}},
        "models": {"smol": {"provider": "local", "model": "m"}},
        "projects": {"demo": {"models": ["smol"], "prompt": "{{query}}"}},
    }
    base["projects"]["demo"].update(project)
    return base


def test_the_built_in_and_starter_catalogs_are_valid() -> None:
    assert load_catalog(None, {}).projects["demo"].default == "smol"
    starter = load_catalog(STARTER_PATH, {})
    assert starter.projects["demo"].inputs[0].variable == "query"
    assert BUILTIN_CATALOG["projects"]["demo"]["prompt"] == "Answer briefly: {{query}}"


def test_shape_problems_are_all_reported_with_their_paths() -> None:
    raw = catalog(bogus=1, inputs=[{"type": "paragraf", "variable": "q"}, {"type": "select", "variable": "t"}])
    raw["models"]["smol"]["price"] = {"input": 0.1, "output": "abc", "unit": "1G"}
    raw["projects"]["bad name!"] = {"models": ["smol"], "prompt": "x"}
    found = problems(raw)
    assert "projects.demo.bogus: unknown key (check its spelling)" in found
    assert any(p.startswith("projects.demo.inputs[0].type: Input should be 'text-input'") for p in found)
    assert "projects.demo.inputs[1]: a select field needs a non-empty `options` list" in found
    assert any(p.startswith("models.smol.price.input: prices must be decimal strings") for p in found)
    assert "models.smol.price.output: 'abc' is not a decimal number" in found
    assert any(p.startswith("models.smol.price.unit:") for p in found)
    assert any(p.startswith("projects.bad name! (key):") for p in found)
    assert len(found) == 7


def test_references_are_checked() -> None:
    raw = catalog(models=["smol", "gpt"], default_model="gpt4", prompt="Hi {{who}}")
    raw["models"]["orphan"] = {"provider": "nowhere", "model": "x"}
    assert problems(raw) == [
        "models.orphan.provider: no provider named 'nowhere' (known: local)",
        "projects.demo.models[1]: no model named 'gpt'",
        "projects.demo.default_model: 'gpt4' is not in this project's models",
        "projects.demo.prompt: uses {{who}} but no input declares variable 'who'",
    ]


def test_duplicate_variables_and_misplaced_field_options_are_refused() -> None:
    twice = problems(catalog(inputs=[{"type": "paragraph", "variable": "q"}, {"type": "paragraph", "variable": "q"}]))
    assert twice == ["projects.demo.inputs: variable 'q' is declared twice"]
    misplaced = problems(catalog(inputs=[{"type": "number", "variable": "n", "max_length": 3}]))
    assert misplaced == [
        "projects.demo.inputs[0]: `max_length` is only for text-input and paragraph fields, not number"
    ]


def test_environment_references_are_interpolated() -> None:
    raw = catalog()
    raw["providers"]["openai"] = {"kind": "openai", "api_key": "${KEY}", "base_url": "${URL:-http://h/v1}"}
    loaded = parse_catalog(raw, {"KEY": "sk-1"})
    openai = loaded.providers["openai"]
    assert openai.kind == "openai" and openai.api_key == "sk-1" and openai.base_url == "http://h/v1"
    assert problems(raw, {}) == ["providers.openai.api_key: environment variable KEY is not set"]


def test_speech_models_must_have_the_right_type() -> None:
    raw = catalog(audio={"speech_to_text": "smol", "text_to_speech": "nope"})
    assert problems(raw) == [
        "projects.demo.audio.speech_to_text: 'smol' is a chat model, not speech_to_text",
        "projects.demo.audio.text_to_speech: no model named 'nope'",
    ]


def test_files_that_are_missing_or_not_yaml_are_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the file"):
        load_catalog(tmp_path / "missing.yaml", {})
    broken = tmp_path / "broken.yaml"
    broken.write_text("projects: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(broken, {})
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(CatalogError, match="must be a mapping"):
        load_catalog(listing, {})


def test_paths_are_written_the_way_operators_read_them() -> None:
    assert format_path(("projects", "demo", "inputs", 0, "type")) == "projects.demo.inputs[0].type"
    assert format_path(("providers", "x", "openai", "base_url")) == "providers.x.base_url"
    assert format_path(()) == "(top level)"
