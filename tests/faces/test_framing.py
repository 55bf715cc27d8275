"""The streaming faces frame each content delta as prefix + JSON text + suffix, computed once per stream: the
bytes must be exactly those of encoding the whole event, whatever the text holds."""

from __future__ import annotations

import pytest

from promptd.faces.chat.completions import _content_frame, _delta
from promptd.faces.dify.sse import encode, event, message_frame

TEXTS = ["", " tok", 'a "quote" and a \\ backslash', "line\nbreak\ttab", "é ü 中文", "😀", "\u2028\u2029", "\x00\x1f"]


@pytest.mark.parametrize("text", TEXTS)
def test_dify_message_frame_gives_the_bytes_of_the_whole_event(text: str) -> None:
    head = {"message_id": "m-1", "created_at": 1700000000, "task_id": "t-1", "id": "m-1"}
    before, after = message_frame(head)
    whole = event({"event": "message", **head, "answer": text, "from_variable_selector": None})
    assert before + encode(text) + after == whole


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("index", [0, 3])
def test_chat_content_frame_gives_the_bytes_of_the_whole_chunk(text: str, index: int) -> None:
    head = {"id": "chatcmpl-1", "created": 1700000000, "model": 'demo/"m"', "session_id": "s-1"}
    before, after = _content_frame(head, index, "c-1")
    assert before + encode(text) + after == _delta(head, index, "c-1", None, content=text)
