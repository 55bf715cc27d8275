"""The parts of a Responses API answer, as OpenAI's API sends them: the response object's fields, its output
items (`message`, `function_call`), its status and usage, built from what the engine reports (no I/O); shared by the
blocking answer (faces/chat/responses.py) and the stream (faces/chat/responses_stream.py).
"""

from __future__ import annotations

import time
from typing import Any

from promptd.engine.call import Origin
from promptd.engine.request import GenerationResult
from promptd.faces.chat.completions import usage_body
from promptd.faces.chat.responses_wire import ResponsesBody

__all__ = ["call_item", "finished", "head", "message_item", "outcome", "response_usage", "text_part"]


def head(body: ResponsesBody, params: dict[str, Any], origin: Origin, hex_id: str) -> dict[str, Any]:
    """The response object's fields that its events all share, as OpenAI's API sends them: what was asked for,
    and `session_id` (promptd's, as on the chat face)."""
    text = body.text
    return {
        "id": "resp_" + hex_id,
        "object": "response",
        "created_at": int(origin.created_at),
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "model": "",
        "output": [],
        "parallel_tool_calls": params.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "prompt_cache_key": params.get("prompt_cache_key"),
        "reasoning": {"effort": params.get("reasoning_effort"), "summary": None},
        "safety_identifier": params.get("safety_identifier"),
        "service_tier": params.get("service_tier"),
        "store": origin.store,
        "temperature": body.temperature,
        "text": {
            "format": text.format if text is not None and text.format is not None else {"type": "text"},
            "verbosity": text.verbosity if text is not None else None,
        },
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "tools": [t for t in body.tools or [] if t.get("type") == "function"],
        "top_logprobs": 0,
        "top_p": body.top_p,
        "truncation": "disabled",
        "usage": None,
        "user": body.user,
        "metadata": body.metadata or {},
        "session_id": origin.session_id,
    }


def outcome(result: GenerationResult) -> tuple[str, dict[str, str] | None]:
    """The response's `status` and `incomplete_details`: incomplete for the token limit (`max_output_tokens`) or
    a filter (`content_filter`: the upstream's, or output moderation replacing the answer), else completed."""
    if result.replaced or result.finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    if result.finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _hex(head: dict[str, Any]) -> str:
    return str(head["id"]).removeprefix("resp_")


def message_item(head: dict[str, Any], text: str, status: str, n: int = 0) -> dict[str, Any]:
    """The response's assistant message (`n`: a second one, after function calls, in a stream)."""
    item_id = f"msg_{_hex(head)}" if n == 0 else f"msg_{_hex(head)}_{n}"
    content = [text_part(text)] if status != "in_progress" else []
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def call_item(head: dict[str, Any], index: int, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A function call of the answer (`call`: chat completions' tool call), as a `function_call` item."""
    function = call.get("function") or {}
    return {
        "id": f"fc_{_hex(head)}_{index}",
        "type": "function_call",
        "status": status,
        "arguments": function.get("arguments") or "",
        "call_id": call.get("id") or f"call_{_hex(head)}_{index}",
        "name": function.get("name") or "",
    }


def response_usage(result: GenerationResult) -> dict[str, Any]:
    """OpenAI's usage (no cached or reasoning tokens are reported by chat upstreams: 0), with the cost in the
    chat face's fields."""
    usage = result.usage
    prices = {k: v for k, v in usage_body([result]).items() if not k.endswith("_tokens")}
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
        **prices,
    }


def finished(head: dict[str, Any], result: GenerationResult, output: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole response once `result` is in: its status, output, usage and the model that answered."""
    status, incomplete = outcome(result)
    return {
        **head,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "incomplete_details": incomplete,
        "model": f"{str(head['model']).partition('/')[0]}/{result.model}",  # a fallback's, maybe
        "output": output,
        "usage": response_usage(result),
    }
