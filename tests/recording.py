"""A provider that records what it was asked: it stands for a model whose input a test wants to inspect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from promptd.catalog.schema import FakeProviderConfig
from promptd.providers.fake import FakeProvider
from promptd.types import ProviderCall, ProviderEvent

__all__ = ["RecordingProvider", "TextOnly"]


class RecordingProvider(FakeProvider):
    """Answers like the fake provider (configured by keyword: reply, tool_arguments, …) and keeps every call."""

    def __init__(self, **config: Any) -> None:
        super().__init__("fake", FakeProviderConfig(kind="fake", **config))
        self.calls: list[ProviderCall] = []

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        self.calls.append(call)
        async for event in super().stream(call):
            yield event


class TextOnly(RecordingProvider):
    """Stands for a model that reads text only (as the embedded model): it declares no `media`."""

    media: frozenset[str] = frozenset()
