"""OpenAI's chat-completions wire format, shared by every adapter that speaks it (HTTP upstreams, llama.cpp)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptd.types import ProviderCall, ProviderEvent, TextDelta, ToolCallDelta, Usage

__all__ = ["ChunkReader", "request_body"]


def request_body(call: ProviderCall, *, model: str | None = None, stream: bool = True) -> dict[str, Any]:
    """A /chat/completions body for `call`, streaming (with usage in the last chunk) or not (unset parameters
    are left out)."""
    body: dict[str, Any] = {"messages": [m.to_openai() for m in call.messages], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if model is not None:
        body["model"] = model
    if call.max_tokens is not None:
        body[call.token_param] = call.max_tokens
    for key in ("temperature", "top_p", "stop", "tools"):
        value = getattr(call, key)
        if value is not None:
            body[key] = value
    body.update(call.extra)
    return body


@dataclass(slots=True)
class ChunkReader:
    """Turns `chat.completion.chunk` dicts into events, remembering the finish reason and the usage."""

    reason: str | None = None
    usage: Usage | None = None

    def events(self, chunk: dict[str, Any]) -> list[ProviderEvent]:
        if chunk.get("usage"):
            u = chunk["usage"]
            self.usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
        out: list[ProviderEvent] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                logprobs = choice.get("logprobs")
                out.append(TextDelta(delta["content"], logprobs.get("content") if logprobs else None))
            for tc in delta.get("tool_calls") or []:
                fn = tc.get("function") or {}
                out.append(ToolCallDelta(int(tc.get("index") or 0), tc.get("id"), fn.get("name"),
                                         fn.get("arguments") or ""))  # fmt: skip
            if choice.get("finish_reason"):
                self.reason = choice["finish_reason"]
        return out
