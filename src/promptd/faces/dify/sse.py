"""Dify's SSE framing: `data: <json>\n\n` per event and a bare `event: ping\n\n` keep-alive."""

from __future__ import annotations

from typing import Any

import msgspec

from promptd.engine.request import GenerationRequest, GenerationResult

__all__ = ["PING", "event", "message_frame", "metadata", "usage_metadata"]

PING = b"event: ping\n\n"
_encode = msgspec.json.Encoder().encode
encode = _encode


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def message_frame(head: dict[str, Any]) -> tuple[bytes, bytes]:
    """The bytes around the answer text of a stream's `message` events, computed once per stream: each event
    is then prefix + the text as JSON + suffix, the very bytes `event()` would make of the whole dict."""
    empty = event({"event": "message", **head, "answer": "", "from_variable_selector": None})
    cut = empty.rindex(b'"answer":""') + len(b'"answer":')
    return empty[:cut], empty[cut + 2 :]


def usage_metadata(result: GenerationResult) -> dict[str, Any]:
    """The `usage` object of Dify's metadata: tokens, decimal-string prices, currency and latency (seconds)."""
    u, prices = result.usage, result.cost.dify_fields()
    return {
        "prompt_tokens": u.prompt_tokens,
        "prompt_unit_price": prices["prompt_unit_price"],
        "prompt_price_unit": prices["prompt_price_unit"],
        "prompt_price": prices["prompt_price"],
        "completion_tokens": u.completion_tokens,
        "completion_unit_price": prices["completion_unit_price"],
        "completion_price_unit": prices["completion_price_unit"],
        "completion_price": prices["completion_price"],
        "total_tokens": u.total_tokens,
        "total_price": prices["total_price"],
        "currency": prices["currency"],
        "latency": result.latency,
        "time_to_first_token": result.ttft,
        "time_to_generate": None if result.ttft is None else result.latency - result.ttft,
    }


def metadata(result: GenerationResult) -> dict[str, Any]:
    """The `metadata` of a blocking answer and of `message_end`, as Dify's completion app sends it: no
    annotation reply and no retriever resources (JS clients call `metadata.retriever_resources.map`)."""
    return {"annotation_reply": None, "retriever_resources": [], "usage": usage_metadata(result)}


def header(req: GenerationRequest) -> dict[str, Any]:
    return {
        "message_id": req.message_id,
        "created_at": int(req.created_at),
        "task_id": req.task_id,
        "id": req.message_id,
    }
