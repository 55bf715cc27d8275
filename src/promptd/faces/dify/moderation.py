"""Moderation on Dify's wire: a flagged input's preset answer (blocking or streamed), and `message_replace`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response

from promptd.domain.pricing import price_usage
from promptd.engine.request import GenerationRequest, GenerationResult
from promptd.faces.dify.auth import App
from promptd.faces.dify.sse import encode, event, header, usage_metadata
from promptd.faces.streaming import EventStream
from promptd.moderation import Guard, direct_output_rows
from promptd.types import Usage

__all__ = ["direct_answer", "replace_event"]


def replace_event(head: dict[str, Any], answer: str) -> bytes:
    """Dify's `message_replace`: the answer so far is to be replaced by this one (output moderation)."""
    return event({"event": "message_replace", **head, "answer": answer, "reason": "output_moderation"})


def direct_answer(app: App, req: GenerationRequest, guard: Guard, *, streaming: bool) -> Response:
    """The answer to a request whose input moderation flagged it: the preset response, no model called (as
    Dify's `direct_output`). It is recorded like any answer, with no tokens and no cost."""
    assert guard.preset is not None
    answer = guard.preset
    app.svc.recorder.submit(*direct_output_rows(req, answer, guard.state))
    model = app.svc.catalog.models[req.model]
    usage = Usage()
    result = GenerationResult(answer, usage, price_usage(usage, model.price), "normal", "stop", 0.0, None)
    metadata = {"usage": usage_metadata(result)}
    head = header(req)
    if streaming:

        async def frames() -> AsyncIterator[bytes]:
            yield event({"event": "message", **head, "answer": answer, "from_variable_selector": None})
            yield event({"event": "message_end", **head, "metadata": metadata, "files": None})

        return EventStream(frames())
    body = {
        "event": "message",
        "task_id": req.task_id,
        "id": req.message_id,
        "message_id": req.message_id,
        "mode": "completion",
        "answer": answer,
        "metadata": metadata,
        "created_at": int(req.created_at),
    }
    return Response(encode(body), media_type="application/json")
