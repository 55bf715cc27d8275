"""The chat face's shared fixture: promptd on the chat test catalog, with a `RecordingProvider` (it stands for a
model whose exact output is known, and keeps what it was sent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faces.chat.helpers import CHAT_CATALOG
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[tuple[RunningServer, RecordingProvider]]:
    provider = RecordingProvider()
    with serve_app(CHAT_CATALOG, tmp_path / "data", providers={"fake": provider}) as server:
        yield server, provider
