"""What OpenAI's own clients (the `openai` SDK, and LangChain's ChatOpenAI on top of it) expect of the OpenAI
aliases under /v1, and what the Adaptive face (/api/v1) keeps of its own shape where the two differ.

`RecordingProvider` stands for a model whose output is known ("Echo: " + the last user message) and keeps what
it was sent; `TextOnly` stands for one that reads no images (as the embedded model: tests/integration)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app

USER: Any = [{"role": "user", "content": "hello there"}]
IMAGE: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]


class TextOnly(RecordingProvider):
    """Stands for a model that reads text only: it declares no `media`."""

    media: frozenset[str] = frozenset()


@pytest.fixture
def blind(tmp_path: Path) -> Iterator[tuple[RunningServer, TextOnly, RecordingProvider]]:
    """The chat test catalog plus `blind` (text only, no fallback) and `rescued` (text only, falling back to
    `echo`, which reads anything)."""
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["providers"]["textonly"] = {"kind": "fake"}
    catalog["models"]["blind"] = {"provider": "textonly", "model": "blind"}
    catalog["models"]["rescued"] = {"provider": "textonly", "model": "blind", "fallbacks": ["echo"]}
    catalog["projects"]["demo"].update(models=["echo", "vectors", "blind", "rescued"], system_prompt_template=None)
    text_only, anything = TextOnly(), RecordingProvider()
    with serve_app(catalog, tmp_path, providers={"fake": anything, "textonly": text_only}) as server:
        yield server, text_only, anything


def test_an_image_for_a_text_only_model_is_a_400_before_any_call(
    blind: tuple[RunningServer, TextOnly, RecordingProvider],
) -> None:
    server, text_only, anything = blind
    with OpenAI(base_url=server.v1, api_key=server.key) as client:  # it would retry a 5xx twice
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="demo/blind", messages=IMAGE)
        assert refused.value.body == {  # OpenAI's shape
            "message": "messages: image_url content is not supported by model 'blind' (nor its fallbacks)",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "unsupported_content",
        }
        r = post(server, "/api/v1/chat/completions", {"model": "demo/blind", "messages": IMAGE})
        assert_adaptive_error(r, 400, "image_url content is not supported by model 'blind'")
        assert text_only.calls == [] and anything.calls == []
        # a fallback that reads images answers instead
        answered = client.chat.completions.create(model="demo/rescued", messages=IMAGE)
        assert answered.choices[0].message.content == "Echo: What is this?" and answered.model == "demo/echo"
        assert text_only.calls == [] and anything.calls[-1].messages[-1].content == IMAGE[0]["content"]
        # text goes to the text-only model as ever
        assert client.chat.completions.create(model="demo/blind", messages=USER).model == "demo/blind"
        assert len(text_only.calls) == 1
