"""The docs keep up with the code: every catalog key and every setting appears in docs/configuration.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pydantic import BaseModel

from promptd.catalog import schema
from promptd.settings import Settings

DOC = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()


def _models() -> list[type[BaseModel]]:
    return [
        obj
        for obj in vars(schema).values()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == schema.__name__
    ]


def test_every_catalog_key_is_documented() -> None:
    missing = sorted({f"{m.__name__}.{name}" for m in _models() for name in m.model_fields if f"`{name}`" not in DOC})
    assert not missing, f"document these catalog keys in docs/configuration.md: {missing}"


def test_every_setting_is_documented() -> None:
    missing = [f.name for f in dataclasses.fields(Settings) if f"`{f.name}`" not in DOC]
    assert not missing, f"document these settings in docs/configuration.md: {missing}"
