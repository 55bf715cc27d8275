"""Adaptive's own Python SDK (adaptive-sdk) driving promptd, unchanged but for its base URL and key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from adaptive_sdk import Adaptive

from tests.faces.chat.helpers import CHAT_CATALOG
from tests.serving import RunningServer, serve_app


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    catalog = {**CHAT_CATALOG, "projects": {**CHAT_CATALOG["projects"]}}
    catalog["projects"]["demo"] = {**catalog["projects"]["demo"], "system_prompt_template": None}
    with serve_app(catalog, tmp_path / "data") as s:
        yield s


@pytest.fixture
def client(server: RunningServer) -> Iterator[Adaptive]:
    c = Adaptive(base_url=server.url, api_key=server.key)
    c.set_default_project("demo")
    yield c
    c.close()


def test_sdk_chat_blocking(client: Adaptive) -> None:
    session = uuid.uuid4()
    r = client.chat.create(
        messages=[{"role": "user", "content": "hello"}], session_id=session, labels={"k": "v"}, user=uuid.uuid4()
    )
    assert r.choices[0].message.content == "Echo: hello" and r.session_id == session
    assert r.usage.total_tokens == 3 and uuid.UUID(r.choices[0].completion_id)


def test_sdk_chat_streaming(client: Adaptive) -> None:
    chunks = list(
        client.chat.create(
            messages=[{"role": "user", "content": "hello"}], model="alt", stream=True, stream_include_usage=True
        )
    )
    text = "".join(c.choices[0].delta.content for c in chunks if c.choices)
    assert text == "Echo: hello"
    assert len({c.session_id for c in chunks}) == 1 and chunks[-1].usage is not None


def test_sdk_embeddings_interactions_and_preferences(client: Adaptive) -> None:
    e = client.embeddings.create(input="hello", model="echo")
    assert len(e.data) == 1 and len(e.data[0].embedding) == 8
    imported = client.interactions.create(messages=[{"role": "user", "content": "2+2"}], completion="4")
    a = client.chat.create(messages=[{"role": "user", "content": "one"}]).choices[0].completion_id
    pref = client.feedback.log_preference(
        feedback_key="helpful", preferred_completion=a, other_completion=str(imported.completion_id)
    )
    assert uuid.UUID(str(pref.comparison_id))
