"""The stream of a Responses API answer: `event: <type>` / `data: {...}` pairs with a `sequence_number`, as
OpenAI's API sends them, and no `[DONE]` line (its stream ends with `response.completed`, `response.incomplete`
or `response.failed`).

    response.created, response.in_progress
    response.output_item.added (message), response.content_part.added,
        response.output_text.delta …, response.output_text.done, response.content_part.done,
    response.output_item.done
    response.output_item.added (function_call), response.function_call_arguments.delta …,
        response.function_call_arguments.done, response.output_item.done
    response.completed | response.incomplete | response.failed

The commit point is the chat face's (faces/chat/completions.py): nothing is sent, `response.created` included,
until the first delta, or a keep-alive comment once `stream_commit_wait` has passed; an error before that is
answered with its real HTTP status in OpenAI's shape. After it, a failure is `response.failed` with the error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from promptd.engine.generation import Generation
from promptd.engine.request import Done, GenerationResult, KeepAlive
from promptd.errors import PromptdError
from promptd.faces.chat.errors import chat_status
from promptd.faces.chat.responses_items import call_item, finished, message_item, outcome, response_usage, text_part
from promptd.types import TextDelta, ToolCallDelta

__all__ = ["stream_events"]

_encode = msgspec.json.Encoder().encode


class _Output:
    """The output items of a streamed response as the model makes them, and the events that tell it: a message
    item is open while text comes, a function_call item while its arguments do; one is closed (its `.done`
    events) when the next begins or the answer ends."""

    def __init__(self, head: dict[str, Any]) -> None:
        self.head = head
        self.sequence = 0
        self.items: list[dict[str, Any]] = []  # in output order; the open ones are changed as they grow
        self.text: tuple[int, list[str]] | None = None  # the open message: its index and its text so far
        self.call: tuple[int, dict[str, Any]] | None = None  # the open function call, by the model's call index
        self.calls: dict[int, int] = {}  # the model's call index → output index
        self.messages = 0

    def event(self, kind: str, **fields: Any) -> bytes:
        data = _encode({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def add_text(self, delta: str) -> list[bytes]:
        out = self.close_call()
        if self.text is None:
            item = message_item(self.head, "", "in_progress", self.messages)
            self.messages += 1
            self.items.append(item)
            self.text = (len(self.items) - 1, [])
            index = self.text[0]
            out.append(self.event("response.output_item.added", output_index=index, item=item))
            out.append(
                self.event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=text_part(""),
                )
            )
        index, texts = self.text
        if delta:
            texts.append(delta)
            out.append(
                self.event(
                    "response.output_text.delta",
                    item_id=self.items[index]["id"],
                    output_index=index,
                    content_index=0,
                    delta=delta,
                    logprobs=[],
                )
            )
        return out

    def close_text(self, status: str = "completed") -> list[bytes]:
        if self.text is None:
            return []
        index, texts = self.text
        self.text = None
        item = self.items[index]
        text = "".join(texts)
        item.update(status=status, content=[text_part(text)])
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            self.event("response.output_text.done", **where, text=text, logprobs=[]),
            self.event("response.content_part.done", **where, part=text_part(text)),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def add_call(self, delta: ToolCallDelta) -> list[bytes]:
        out = self.close_text()
        if self.call is None or self.call[0] != delta.index:
            out += self.close_call()
            call = {"id": delta.id, "function": {"name": delta.name or "", "arguments": ""}}
            item = call_item(self.head, len(self.calls), call, "in_progress")
            self.items.append(item)
            self.calls[delta.index] = len(self.items) - 1
            self.call = (delta.index, item)
            out.append(self.event("response.output_item.added", output_index=len(self.items) - 1, item=item))
        item = self.call[1]
        if delta.name and item["name"] != delta.name:
            item["name"] += delta.name  # a name in pieces (a first piece was the item's name)
        if delta.arguments:
            item["arguments"] += delta.arguments
            out.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.calls[delta.index],
                    delta=delta.arguments,
                )
            )
        return out

    def close_call(self) -> list[bytes]:
        if self.call is None:
            return []
        index, item = self.calls[self.call[0]], self.call[1]
        self.call = None
        item["status"] = "completed"
        return [
            self.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            ),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def end(self, result: GenerationResult, held: list[str] | None) -> list[bytes]:
        """The last events of an answer: a held text (output moderation checked it: the text, or the operator's
        replacement), an empty message when the model said nothing at all, the open items closed, then
        `response.completed` or `response.incomplete`."""
        status, _ = outcome(result)
        out: list[bytes] = []
        if (held is not None and result.answer) or (not self.items and not result.tool_calls):
            out += self.add_text(result.answer if held is not None else "")
        out += self.close_text("incomplete" if status == "incomplete" else "completed") + self.close_call()
        answer = finished(self.head, result, self.items)
        out.append(self.event(f"response.{status}", response=answer))
        return out

    def failed(self, error: PromptdError, result: GenerationResult) -> bytes:
        """`response.failed`: the error in OpenAI's words (`rate_limit_exceeded`, `invalid_prompt` for a
        request the model refused, else `server_error`), the items sent so far, and the tokens spent."""
        status = chat_status(error)
        code = "rate_limit_exceeded" if status == 429 else "invalid_prompt" if status < 500 else "server_error"
        answer = {
            **self.head,
            "status": "failed",
            "error": {"code": code, "message": error.message},
            "output": [item for item in self.items if item["status"] != "in_progress"],
            "usage": response_usage(result),
        }
        return self.event("response.failed", response=answer)


async def stream_events(generation: Generation, head: dict[str, Any], *, commit_wait: float) -> AsyncIterator[bytes]:
    """The events of one streamed response (`head`: the response object's shared fields). Output moderation
    checks a whole answer, and a delta sent cannot be taken back: such an answer's text is held, and sent once
    checked (as it came, or the replacement, with `incomplete_details.reason` `content_filter`)."""
    output = _Output(head)
    held: list[str] | None = [] if generation.request.output_check else None
    project = str(head["model"]).partition("/")[0]
    committed = finished_ = False
    started = generation.request.started

    def commit() -> list[bytes]:
        nonlocal committed
        if committed:
            return []
        committed = True
        head["model"] = f"{project}/{generation.began_on}"  # the model that answers (a fallback, maybe)
        return [output.event("response.created", response=head), output.event("response.in_progress", response=head)]

    try:
        while True:
            event = await generation.next_event()
            if isinstance(event, TextDelta):
                if held is not None:
                    held.append(event.text)
                    continue
                yield b"".join(commit() + output.add_text(event.text))  # one write per delta, its events together
            elif isinstance(event, ToolCallDelta):
                yield b"".join(commit() + output.add_call(event))
            elif isinstance(event, KeepAlive):
                if committed or time.perf_counter() - started >= commit_wait:
                    yield b"".join(commit()) + b": keep-alive\n\n"
            elif isinstance(event, Done):
                finished_ = True
                result = event.result
                if result.error is not None:
                    if not committed:
                        raise result.error  # nothing sent yet: the client gets the real status (EventStream)
                    yield output.failed(result.error, result)
                    return
                yield b"".join(commit() + output.end(result, held))
                return
    finally:
        if not finished_:  # the client went away mid-stream
            generation.stop("client disconnected")
