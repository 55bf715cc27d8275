"""OpenAI's Responses API (`POST /v1/responses`) read as a chat call: its body, its input items as chat messages,
its function tools, `tool_choice` and `text.format` in chat completions' form, and its other parameters as the
chat face's generation parameters. What promptd cannot honour is a 400 naming the parameter, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from promptd.errors import InputError
from promptd.faces.chat.wire import (
    ChatMessageIn,
    Temperature,
    TopP,
    at_least,
    endpoint_params,
    image_detail,
    unsupported_here,
)
from promptd.urlguard import check_url

__all__ = [
    "CHAT_NAMES",
    "RESPONSES_FIELDS",
    "ResponsesBody",
    "chat_messages",
    "chat_tool_choice",
    "chat_tools",
    "item_ids",
    "referenced",
    "responses_params",
]


class TextConfig(msgspec.Struct):
    format: dict[str, Any] | None = None
    verbosity: str | None = None


class ResponsesBody(msgspec.Struct):
    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: TextConfig | None = None
    reasoning: dict[str, Any] | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None  # include_obfuscation: promptd pads no event, either way
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    max_tool_calls: int | None = None  # of built-in tools: promptd runs none, so any limit holds
    previous_response_id: str | None = None
    # promptd's own, as on the chat face (the OpenAI SDK sends them with extra_body)
    session_id: str | None = None
    ab_campaign: str | None = None
    labels: dict[str, str] | None = None
    tags: list[str] | None = None
    system_prompt_args: dict[str, Any] | None = None
    use_tools: bool | None = None
    max_ttft_ms: int | None = None


#: what the face reads of a body; every other field is a generation parameter, as on the chat face
RESPONSES_FIELDS = frozenset(ResponsesBody.__struct_fields__)

#: OpenAI's smallest `max_output_tokens` (a smaller one is its 400)
MIN_OUTPUT_TOKENS = 16

#: Responses API parameters promptd cannot honour: the value that asks for nothing (null always does), and why
_REFUSED: Mapping[str, tuple[Any, str]] = {
    "background": (False, "promptd runs no background responses"),
    "include": ([], "promptd adds no optional output data (no built-in tools, logprobs or encrypted reasoning)"),
    "conversation": (None, "promptd keeps no conversations: send the earlier turns in input"),
    "prompt": (None, "promptd's prompts are the catalog's templates (system_prompt_args), not stored prompts"),
    "truncation": ("disabled", "promptd never drops input to fit the context window"),
    "top_logprobs": (0, "/v1/responses returns no logprobs (POST /v1/chat/completions does)"),
    "context_management": (None, "promptd compacts no context"),
    "prompt_cache_options": (None, "promptd sets no prompt-cache breakpoints"),
    "moderation": (None, "promptd's moderation is the operator's (the catalog's), not chosen per request"),
    "background_options": (None, "promptd runs no background responses"),
    "access_programs": (None, "promptd has no access programs"),
    "image": (None, "promptd has no image context options"),
}

#: chat completions' names of what the Responses API names otherwise: a client mixing the two is told which to use
_CHAT_ONLY: Mapping[str, str] = {
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
    "verbosity": "text.verbosity",
    "n": "(one output per response)",
    "stop": "(none: the Responses API has no stop sequences)",
}

#: the chat parameters this face fills from Responses API fields, by those fields' names (for the errors of a
#: parameter a model cannot honour)
CHAT_NAMES: Mapping[str, str] = {
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "reasoning_effort": "reasoning",
    "max_completion_tokens": "max_output_tokens",
    "image_url.detail": "input_image.detail",
}


def _refuse(name: str, why: str) -> InputError:
    return unsupported_here(name, why, "/v1/responses")


def responses_params(raw: bytes, body: ResponsesBody) -> dict[str, Any]:
    """The chat call's generation parameters: every field the face does not read (`parallel_tool_calls`,
    `service_tier`, `prompt_cache_key`, `safety_identifier`, vLLM's `top_k`, …) as the chat face sends them on,
    plus `text.format` as `response_format`, `text.verbosity` as `verbosity` and `reasoning.effort` as
    `reasoning_effort`. A parameter promptd cannot honour (at any value but its default) is a 400."""
    params = endpoint_params(
        raw, RESPONSES_FIELDS, path="/v1/responses", refused=_REFUSED, misnamed=_CHAT_ONLY,
        use="the Responses API's is {}",
    )  # fmt: skip
    if body.previous_response_id is not None:
        raise _refuse(
            "previous_response_id",
            "promptd chains no responses by id: send the earlier turns in input; an earlier answer may be an "
            "item_reference to its message id",
        )
    at_least(body.max_output_tokens, MIN_OUTPUT_TOKENS, "max_output_tokens")
    text = body.text or TextConfig()
    if text.format is not None:
        fmt = _response_format(text.format)
        if fmt is not None:
            params["response_format"] = fmt
    if text.verbosity is not None:
        params["verbosity"] = text.verbosity
    for key, value in (body.reasoning or {}).items():
        if key == "effort" and value is not None:
            params["reasoning_effort"] = value
        elif value is not None:
            raise _refuse(f"reasoning.{key}", "chat completions models take a reasoning effort only")
    return params


def _response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    """`text.format` as chat completions' `response_format` (None: plain text, the default)."""
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        for key in ("name", "schema"):
            if key not in fmt:
                raise InputError(f"text.format.{key} is required for json_schema", param=f"text.format.{key}")
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise InputError(
        f"text.format.type must be text, json_object or json_schema, got {kind!r}", param="text.format.type"
    )


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The Responses API's function tools in chat completions' form (`{type, function: {…}}`); promptd's own
    `{id, enabled}` switches of the project's tools as they are. A built-in tool (web search, file search, …) is
    a 400: promptd runs none."""
    if tools is None:
        return None
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind == "function":
            if not isinstance(tool.get("name"), str):
                raise InputError(f"tools[{i}].name is required", param=f"tools[{i}].name")
            function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
            out.append({"type": "function", "function": function})
        elif kind is None:
            out.append(tool)  # {id, enabled}: checked with the chat face's tools (completions.tool_switches)
        else:
            raise InputError(
                f"tools[{i}]: built-in tools ({kind!r}) are not supported: promptd runs function tools only",
                code="unsupported_parameter",
                param=f"tools[{i}].type",
            )
    return out


def chat_tool_choice(choice: str | dict[str, Any] | None) -> Any:
    """`tool_choice` in chat completions' form: `auto`, `none` and `required` as they are, a named function as
    `{type: function, function: {name}}`; any other choice (a built-in tool, `allowed_tools`) is a 400."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InputError(
        "tool_choice must be auto, none, required or {type: function, name}", code="unsupported_parameter",
        param="tool_choice",
    )  # fmt: skip


# --- ids ----------------------------------------------------------------------------------------------------------

_MESSAGE_ID = re.compile(r"^msg_([0-9a-f]{32})(?:_[0-9]+)?$")


def item_ids(message_id: str) -> str:
    """The hex of a record's id (a UUID), from which a response's ids are made: `resp_<hex>` for the response,
    `msg_<hex>` for its message, `fc_<hex>_<i>` for its function calls. A message id names the record again."""
    return message_id.replace("-", "")


def _record_id(item_id: Any) -> str | None:
    """The record (message) id an assistant message's item id names, or None if it names none of promptd's."""
    match = _MESSAGE_ID.match(item_id) if isinstance(item_id, str) else None
    if match is None:
        return None
    h = match.group(1)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def referenced(items: str | list[dict[str, Any]] | None) -> dict[str, str]:
    """The `item_reference` items of `input`: their ids, each to the record id it names (an id that names none of
    promptd's assistant messages is a 400)."""
    if not isinstance(items, list):
        return {}
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        if item.get("type") != "item_reference":
            continue
        record = _record_id(item.get("id"))
        if record is None:
            raise InputError(
                f"input[{i}].id: an item_reference names an assistant message promptd answered (msg_…), "
                f"got {item.get('id')!r}",
                param=f"input[{i}].id",
            )
        out[item["id"]] = record
    return out


# --- input items → chat messages ------------------------------------------------------------------------------------

_ROLES = frozenset({"user", "system", "developer", "assistant"})


def chat_messages(
    items: str | list[dict[str, Any]] | None, instructions: str | None, answers: Mapping[str, str]
) -> list[ChatMessageIn]:
    """`instructions` and `input` as chat messages: `instructions` first, as a system message; a string as the
    user's message; message items by role; `function_call` items as an assistant message's tool calls (those in a
    row, or after an assistant message, joined in one); `function_call_output` items as tool messages; an
    `item_reference` as the assistant message it names (`answers`: its text, by item id)."""
    if items is None or items == [] or items == "":
        raise InputError("input is required and must not be empty", param="input")
    out: list[ChatMessageIn] = [ChatMessageIn(role="system", content=instructions)] if instructions else []
    if isinstance(items, str):
        return [*out, ChatMessageIn(role="user", content=items)]
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        where = f"input[{i}]"
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            _add_call(out, item, where)
        elif kind == "function_call_output":
            call_id = _call_id(item, where)
            out.append(ChatMessageIn(role="tool", content=_tool_output(item, where), tool_call_id=call_id))
        elif kind == "item_reference":
            out.append(ChatMessageIn(role="assistant", content=answers[item["id"]]))
        else:
            raise InputError(
                f"{where}.type {kind!r} is not supported: input items are messages, function calls, their outputs "
                "and item references",
                code="unsupported_parameter",
                param=f"{where}.type",
            )
    return out


def _message(item: dict[str, Any], where: str) -> ChatMessageIn:
    role = item.get("role")
    if role not in _ROLES:
        raise InputError(
            f"{where}.role must be one of {', '.join(sorted(_ROLES))}, got {role!r}", param=f"{where}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        return ChatMessageIn(role=role, content=content)
    if not isinstance(content, list):
        raise InputError(f"{where}.content must be a string or a list of parts", param=f"{where}.content")
    parts = [_part(p, role, f"{where}.content[{j}]") for j, p in enumerate(content)]
    if role == "assistant":  # output_text parts: one text, as most chat upstreams take an assistant's content
        return ChatMessageIn(role=role, content="".join(p["text"] for p in parts))
    return ChatMessageIn(role=role, content=parts)


def _part(part: Any, role: str, where: str) -> dict[str, Any]:
    """A content part in chat completions' form: text, or an image by URL (http, https or data)."""
    kind = part.get("type") if isinstance(part, dict) else None
    texts = ("output_text", "refusal") if role == "assistant" else ("input_text",)
    if kind in texts:
        text = part.get("text" if kind != "refusal" else "refusal")
        if not isinstance(text, str):
            raise InputError(f"{where}.text must be a string", param=f"{where}.text")
        return {"type": "text", "text": text}
    if kind == "input_image" and role != "assistant":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InputError(
                f"{where}: an input_image is given by image_url (promptd has no file ids)", param=f"{where}.image_url"
            )
        try:  # http, https or data only: never file:///etc/passwd upstream
            image: dict[str, Any] = {"url": check_url(url, f"{where}.image_url")}
        except InputError as exc:
            raise InputError(exc.message, param=f"{where}.image_url") from None
        if part.get("detail") is not None:  # null is unset, as in OpenAI's API
            image["detail"] = image_detail(part["detail"], f"{where}.detail")
        return {"type": "image_url", "image_url": image}
    allowed = " or ".join(texts) + ("" if role == "assistant" else " or input_image")
    raise InputError(
        f"{where}: a {role} message's content part is {allowed}, got {kind!r}",
        code="unsupported_content",
        param=f"{where}.type",
    )


def _call_id(item: dict[str, Any], where: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InputError(f"{where}.call_id is required", param=f"{where}.call_id")
    return call_id


def _add_call(out: list[ChatMessageIn], item: dict[str, Any], where: str) -> None:
    name, arguments = item.get("name"), item.get("arguments")
    if not isinstance(name, str) or not isinstance(arguments, str):
        raise InputError(f"{where}: a function_call has a name and arguments (a string)", param=where)
    call = {"id": _call_id(item, where), "type": "function", "function": {"name": name, "arguments": arguments}}
    last = out[-1] if out else None
    if last is not None and last.role == "assistant" and (last.tool_calls or isinstance(last.content, str)):
        last.tool_calls = [*(last.tool_calls or []), call]
    else:
        out.append(ChatMessageIn(role="assistant", content=None, tool_calls=[call]))


def _tool_output(item: dict[str, Any], where: str) -> str:
    output = item.get("output")
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(isinstance(p, dict) and p.get("type") == "input_text" for p in output):
        return "".join(str(p.get("text", "")) for p in output)
    raise InputError(
        f"{where}.output must be a string or input_text parts (a chat model reads text from a tool)",
        code="unsupported_content",
        param=f"{where}.output",
    )
