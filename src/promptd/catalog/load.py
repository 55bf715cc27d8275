"""Read a catalog file: YAML → `${ENV}` interpolation → strict schema → cross-reference checks.

Every problem is collected and reported together, each with its key path (`projects.demo.inputs[0].type`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from promptd.catalog.resolve import cross_check
from promptd.catalog.schema import Catalog
from promptd.errors import CatalogError

__all__ = ["BUILTIN_CATALOG", "STARTER_PATH", "format_path", "interpolate", "load_catalog", "parse_catalog"]

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
STARTER_PATH = Path(__file__).with_name("starter.yaml")

#: The catalog `promptd serve` uses when none is given: the demo project on the embedded model.
BUILTIN_CATALOG: dict[str, Any] = {
    "providers": {"local": {"kind": "local"}},
    "models": {
        "smol": {
            "provider": "local",
            "model": "smollm2-135m-instruct",
            "price": {"input": "0", "output": "0", "unit": "1M", "currency": "USD"},
        }
    },
    "projects": {
        "demo": {
            "mode": "completion",
            "name": "Demo",
            "description": "Answers briefly, on the embedded SmolLM2 model.",
            "models": ["smol"],
            "default_model": "smol",
            "prompt": "Answer briefly: {{query}}",
            "max_tokens": 128,
            "inputs": [{"type": "paragraph", "variable": "query", "label": "Query", "required": True}],
        }
    },
}


def interpolate(value: Any, environ: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in every string. Unset variables without a default are problems."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set")
            return ""

        return ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}" if path else str(k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def format_path(loc: tuple[int | str, ...]) -> str:
    """('projects', 'demo', 'inputs', 0, 'type') → 'projects.demo.inputs[0].type'."""
    parts = list(loc)
    # a discriminated union puts the tag in the path (providers.x.openai.base_url): drop it
    if len(parts) >= 3 and parts[0] == "providers" and parts[2] in ("local", "openai", "anthropic", "fake"):
        del parts[2]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p == "[key]":
            out += " (key)"
        else:
            out += f".{p}" if out else str(p)
    return out or "(top level)"


def parse_catalog(raw: Any, environ: Mapping[str, str], *, source: str = "<catalog>") -> Catalog:
    """Validate a catalog already read from YAML (a dict). Raises CatalogError listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CatalogError(["the catalog must be a mapping with providers, models and projects"], source=source)
    problems: list[str] = []
    data = interpolate(raw, environ, "", problems)
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check its spelling)"
            elif err["type"] == "missing":
                msg = "is required"
            problems.append(f"{format_path(tuple(err['loc']))}: {msg}")
        raise CatalogError(problems, source=source) from None
    problems.extend(cross_check(catalog))
    if problems:
        raise CatalogError(problems, source=source)
    return catalog


def load_catalog(path: Path | None, environ: Mapping[str, str]) -> Catalog:
    """Load `path`, or the built-in catalog when it is None."""
    if path is None:
        return parse_catalog(BUILTIN_CATALOG, environ, source="<built-in catalog>")
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError([f"cannot read the file: {exc.strerror}"], source=source) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError([f"not valid YAML: {exc}"], source=source) from None
    return parse_catalog(raw, environ, source=source)
