"""Read a catalog file: YAML → `${ENV}` interpolation → strict schema → cross-reference checks.

Every problem is collected and reported together, each with its key path (`projects.demo.inputs[0].type`):
the references between the entries that passed the schema are checked even when others did not.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Set
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
        },
        "smol-embed": {  # the same model making embeddings
            "provider": "local",
            "model": "smollm2-135m-instruct",
            "type": "embedding",
            "price": {"input": "0", "output": "0", "unit": "1M", "currency": "USD"},
        },
    },
    "projects": {
        "demo": {
            "mode": "completion",
            "name": "Demo",
            "description": "Answers briefly, on the embedded SmolLM2 model.",
            "models": ["smol", "smol-embed"],
            "default_model": "smol",
            "embedding_model": "smol-embed",
            "prompt": "Answer briefly: {{query}}",
            "max_tokens": 128,
            "inputs": [{"type": "paragraph", "variable": "query", "label": "Query", "required": True}],
        }
    },
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        elif err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "literal_error":
            msg = f"{msg} (not {err['input']!r})"
        elif err["type"] == "union_tag_not_found":  # only providers have a tag
            msg = "needs a `kind`: local, openai, anthropic or fake"
        elif err["type"] == "union_tag_invalid":
            msg = f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
            loc = (*loc, "kind")
        problems.append(f"{format_path(loc)}: {msg}")
    return problems


SECTIONS = ("providers", "models", "projects", "knowledge")


class _Everything(frozenset[str]):
    """The broken names of a section that is not a mapping at all: every reference into it."""

    def __contains__(self, name: object) -> bool:
        return True


def _without_unknown_keys(entry: Any, errors: list[Any]) -> Any | None:
    """`entry` without the unknown keys the errors name, or None when some other error is among them."""
    entry = copy.deepcopy(entry)
    for err in errors:
        if err["type"] != "extra_forbidden":
            return None
        *parents, key = err["loc"][2:]  # after (section, name)
        node = entry
        for part in parents:
            if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int)):
                node = node[part]
            # else: a union tag (providers.x.openai.…), not a key of the file
        if isinstance(node, dict):
            node.pop(key, None)
    return entry


def _passes(data: dict[str, Any]) -> bool:
    try:
        Catalog.model_validate(data)
    except ValidationError:
        return False
    return True


def _valid_part(data: dict[str, Any]) -> tuple[Catalog, dict[str, Set[str]]]:
    """The entries that pass the schema on their own (unknown keys left out), and the names of the others.

    Phase two runs on these, so a reference problem is reported along with the shape problems."""
    valid: dict[str, dict[Any, Any]] = {}
    broken: dict[str, Set[str]] = {}
    for section in SECTIONS:
        entries = data.get(section)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            broken[section] = _Everything()
            continue
        valid[section], bad = {}, set[str]()
        broken[section] = bad
        for name, entry in entries.items():
            try:
                Catalog.model_validate({section: {name: entry}})
            except ValidationError as exc:
                trimmed = _without_unknown_keys(entry, exc.errors())
                if trimmed is not None and _passes({section: {name: trimmed}}):
                    valid[section][name] = trimmed
                else:
                    bad.add(str(name))
            else:
                valid[section][name] = entry
    return Catalog.model_validate(valid), broken


def _anchor_documents(data: dict[str, Any], base_dir: Path) -> None:
    """Make each knowledge base's document paths absolute, relative to the catalog file's folder."""
    bases = data.get("knowledge")
    if not isinstance(bases, dict):
        return
    for entry in bases.values():
        docs = entry.get("documents") if isinstance(entry, dict) else None
        if isinstance(docs, list):
            entry["documents"] = [str((base_dir / d).resolve()) if isinstance(d, str) else d for d in docs]


def parse_catalog(
    raw: Any, environ: Mapping[str, str], *, source: str = "<catalog>", base_dir: Path | None = None
) -> Catalog:
    """Validate a catalog already read from YAML (a dict). Raises CatalogError listing every problem.
    Knowledge documents are relative to `base_dir` (the catalog file's folder; default: the current one)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CatalogError(["the catalog must be a mapping with providers, models and projects"], source=source)
    problems: list[str] = []
    data = interpolate(raw, environ, "", problems)
    # a section whose entries are all commented out reads as null: it is empty
    data = {k: {} if k in SECTIONS and v is None else v for k, v in data.items()}
    _anchor_documents(data, base_dir or Path.cwd())
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(exc))
        partial, broken = _valid_part(data)
        problems.extend(cross_check(partial, broken))
        raise CatalogError(problems, source=source) from None
    problems.extend(cross_check(catalog))
    if problems:
        raise CatalogError(problems, source=source)
    return catalog


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """'line 3, column 3: found the key 'demo' twice (while reading a mapping)'."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return str(exc)
    context = getattr(exc, "context", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")


def load_catalog(path: Path | None, environ: Mapping[str, str]) -> Catalog:
    """Load `path`, or the built-in catalog when it is None."""
    if path is None:
        return parse_catalog(BUILTIN_CATALOG, environ, source="<built-in catalog>")
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError([f"cannot read the file: {exc.strerror}"], source=source) from None
    except UnicodeDecodeError as exc:
        raise CatalogError([f"not UTF-8 text (byte {exc.start}): {exc.reason}"], source=source) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise CatalogError([f"not valid YAML: {_yaml_problem(exc)}"], source=source) from None
    return parse_catalog(raw, environ, source=source, base_dir=path.parent)
