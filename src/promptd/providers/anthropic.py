"""Anthropic's Messages API (`POST /v1/messages`, streamed): OpenAI-shaped calls in, promptd events out.

Mapping: system messages become `system`; images become `image` blocks (base64 or URL); assistant
`tool_calls` become `tool_use` blocks and `tool` messages `tool_result` blocks (tool use both ways); OpenAI
function tools become `tools` with `input_schema`; `stop` becomes `stop_sequences`. Streaming events
(`message_start`, `content_block_*`, `message_delta`, `message_stop`, `error`) become text and tool-call
deltas, then one Finish with the usage and the stop reason in OpenAI's words.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from promptd.catalog.schema import AnthropicProviderConfig
from promptd.errors import ProviderBadRequest, ProviderUnavailable
from promptd.providers.http import MALFORMED_RUN, HTTPProvider, http_error, sse_data, translate_errors
from promptd.types import (
    ContentPart,
    Finish,
    Malformed,
    Message,
    ProviderCall,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)  # fmt: skip

__all__ = ["AnthropicProvider", "to_anthropic"]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                "refusal": "content_filter", "pause_turn": "stop"}  # fmt: skip


def _image(part: ContentPart) -> dict[str, Any]:
    """An image block. Anthropic has no `detail`: it sees every image at its full resolution (scaled to its limits),
    which `high` and `auto` ask for; a `low` never reaches here unless the operator drops it (providers/base.py,
    `IMAGE_DETAIL`)."""
    url = str(part["image_url"]["url"])
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        text = message.content if isinstance(message.content, str) else json.dumps(message.content)
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": text}]
    blocks: list[dict[str, Any]] = []
    if isinstance(message.content, str):
        if message.content:
            blocks.append({"type": "text", "text": message.content})
    else:
        for part in message.content:
            blocks.append(_image(part) if part.get("type") == "image_url" else {"type": "text", "text": part["text"]})
    for call in message.tool_calls or []:
        fn = call.get("function") or {}
        try:
            arguments = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError:
            arguments = {"raw": fn.get("arguments")}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""), "input": arguments})
    return blocks


def to_anthropic(call: ProviderCall, default_max_tokens: int) -> dict[str, Any]:
    """The Messages API body for an OpenAI-shaped call. Pure."""
    system = [m.content if isinstance(m.content, str) else " ".join(p.get("text", "") for p in m.content)
              for m in call.messages if m.role == "system"]  # fmt: skip
    turns: list[dict[str, Any]] = []
    for m in call.messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if turns and turns[-1]["role"] == role:  # Anthropic wants alternating turns: merge neighbours
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    last = turns[-1] if turns else None
    if last is not None and last["role"] == "assistant" and last["content"] and last["content"][-1].get("text"):
        # a prefill (a rescue continuing a partial answer) may not end with whitespace, Anthropic says
        last["content"][-1]["text"] = last["content"][-1]["text"].rstrip()
    body: dict[str, Any] = {"model": call.model, "messages": turns, "stream": True,
                            "max_tokens": call.max_tokens or default_max_tokens}  # fmt: skip
    if system:
        body["system"] = "\n\n".join(system)
    if call.temperature is not None:
        body["temperature"] = min(call.temperature, 1.0)  # Anthropic's range is 0-1
    if call.top_p is not None:
        body["top_p"] = call.top_p
    if call.stop:
        body["stop_sequences"] = call.stop
    if call.tools:
        body["tools"] = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                          "input_schema": t["function"].get("parameters") or {"type": "object"}}
                         for t in call.tools]  # fmt: skip
        choice = call.extra.get("tool_choice")
        if choice == "required":
            body["tool_choice"] = {"type": "any"}
        elif isinstance(choice, dict) and choice.get("function"):
            body["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
        elif choice in ("auto", "none"):
            body["tool_choice"] = {"type": choice}
        if call.extra.get("parallel_tool_calls") is False:
            body.setdefault("tool_choice", {"type": "auto"})["disable_parallel_tool_use"] = True
    if "top_k" in call.extra:
        body["top_k"] = call.extra["top_k"]
    schema = structured_output(call.extra.get("response_format"))
    if schema is not None:  # forced use of one tool whose input is the answer (read back as text: `stream`)
        body["tools"] = [*body.get("tools", []), {"name": OUTPUT_TOOL, "description": "Reply with this JSON.",
                                                  "input_schema": schema}]  # fmt: skip
        body["tool_choice"] = {"type": "tool", "name": OUTPUT_TOOL}
    return body


OUTPUT_TOOL = "structured_output"


def structured_output(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema an OpenAI `response_format` asks the answer to follow (`json_object`: any object), or None
    for plain text."""
    if not isinstance(response_format, dict) or response_format.get("type") in (None, "text"):
        return None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    return {"type": "object"}


class AnthropicProvider(HTTPProvider):
    #: OpenAI parameters it translates: tool_choice, parallel_tool_calls (disable_parallel_tool_use), top_k, and
    #: response_format (structured output through one forced tool whose input is the answer)
    accepts = frozenset({"tool_choice", "parallel_tool_calls", "top_k", "response_format"})
    media = frozenset({"image_url"})  # image blocks; nothing else beside text
    continues = True  # a final assistant turn is a prefill Anthropic continues

    def __init__(self, name: str, config: AnthropicProviderConfig) -> None:
        headers = {"anthropic-version": config.version, **config.headers}
        if config.api_key:
            headers["x-api-key"] = config.api_key
        super().__init__(name, headers=headers, timeout=config.timeout, max_connections=config.max_connections)
        self.config = config

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        url = f"{self.config.base_url}/v1/messages"
        body = _encode(to_anthropic(call, self.config.max_tokens))
        with translate_errors(self.who):
            async with self._http().post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                if resp.status >= 400:
                    raise http_error(resp.status, await resp.read(), resp.headers, self.who)
                prompt = completion = 0
                reason: str | None = None
                tool_index: dict[int, int] = {}  # Anthropic content block index → OpenAI tool call index
                structured = structured_output(call.extra.get("response_format")) is not None
                malformed = 0
                answer_block: int | None = None
                stopped = False
                async for data in sse_data(resp, self.who):
                    try:
                        event = _decode(data)
                        malformed = 0
                    except msgspec.DecodeError as exc:  # skipped and counted; a run of them is fatal
                        malformed += 1
                        if malformed >= MALFORMED_RUN:
                            raise ProviderUnavailable(
                                f"{self.who}: {malformed} malformed events in a row from upstream: {data[:200]!r}"
                            ) from exc
                        yield Malformed(data[:200].decode("utf-8", "replace"))
                        continue
                    kind = event.get("type")
                    if kind == "message_start":
                        usage = event.get("message", {}).get("usage", {})
                        prompt = int(usage.get("input_tokens") or 0)
                        completion = int(usage.get("output_tokens") or 0)
                    elif kind == "content_block_start":
                        block = event.get("content_block", {})
                        if block.get("type") == "tool_use" and structured and block.get("name") == OUTPUT_TOOL:
                            answer_block = event["index"]  # its input, as it streams, is the answer's text
                        elif block.get("type") == "tool_use":
                            index = tool_index.setdefault(event["index"], len(tool_index))
                            yield ToolCallDelta(index, block.get("id"), block.get("name"), "")
                        elif block.get("text"):
                            yield TextDelta(block["text"])
                    elif kind == "content_block_delta":
                        delta = event.get("delta", {})
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield TextDelta(delta["text"])
                        elif delta.get("type") == "input_json_delta" and event["index"] == answer_block:
                            if delta.get("partial_json"):
                                yield TextDelta(delta["partial_json"])
                        elif delta.get("type") == "input_json_delta" and event["index"] in tool_index:
                            yield ToolCallDelta(tool_index[event["index"]], None, None, delta.get("partial_json", ""))
                    elif kind == "message_delta":
                        stop = event.get("delta", {}).get("stop_reason")
                        reason = STOP_REASONS.get(stop, stop) if stop else reason
                        if structured and reason == "tool_calls":
                            reason = "stop"  # the forced output tool answered: a plain answer to the client
                        completion = int(event.get("usage", {}).get("output_tokens") or completion)
                    elif kind == "message_stop":
                        stopped = True
                        break
                    elif kind == "error":
                        err = event.get("error", {})
                        if err.get("type") in ("overloaded_error", "api_error"):
                            raise ProviderUnavailable(f"{self.who}: {err.get('type')}: {err.get('message')}")
                        raise ProviderBadRequest(f"{self.who}: {err.get('type')}: {err.get('message')}")
                if not stopped:
                    raise ProviderUnavailable(f"{self.who}: the stream ended before message_stop")
                yield Finish(reason or "stop", Usage(prompt, completion))
