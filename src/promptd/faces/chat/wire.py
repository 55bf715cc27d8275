"""Request bodies of the Adaptive chat API (and OpenAI's), decoded with msgspec; unknown fields are ignored."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import msgspec

from promptd.errors import InputError
from promptd.types import ContentPart, Message
from promptd.urlguard import check_url

__all__ = [
    "IMAGE_DETAILS",
    "MAX_USER_ID_LENGTH",
    "MAX_USER_LENGTH",
    "NESTED_TOO_DEEPLY",
    "OPENAI_ROLES",
    "SPEECH_FIELDS",
    "ChatBody",
    "ChatMessageIn",
    "ComparisonBody",
    "EmbeddingsBody",
    "FeedbackBody",
    "InteractionBody",
    "OutcomeBody",
    "SpeechBody",
    "StreamOptions",
    "Temperature",
    "TopP",
    "at_least",
    "chat_body",
    "decode",
    "endpoint_params",
    "free_user",
    "generation_params",
    "image_detail",
    "optional_uuid",
    "other_fields",
    "stream_options_with_stream",
    "to_messages",
    "unsupported_here",
]

T = TypeVar("T")

#: what a body nested deeper than the decoder's recursion limit is told (any free-form JSON field may be)
NESTED_TOO_DEEPLY = "JSON nested too deeply"


#: OpenAI's ranges, on both faces and the Responses API
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
TopP = Annotated[float, msgspec.Meta(ge=0, le=1)]


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatMessageIn(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    completion_id: str | None = None
    metadata: Any = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatBody(msgspec.Struct):
    messages: list[ChatMessageIn]
    model: str
    stop: str | list[str] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None  # the OpenAI SDK's newer name
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_ttft_ms: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    session_id: str | None = None
    user: str | None = None
    ab_campaign: str | None = None
    n: int | None = None
    labels: dict[str, str] | None = None
    metadata: dict[str, str] | None = None
    system_prompt_args: dict[str, Any] | None = None
    tags: list[str] | None = None
    use_tools: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    store: bool | None = None


class EmbeddingsBody(msgspec.Struct):
    input: str | list[Any]  # OpenAI's: text, texts, token ids, or arrays of token ids (faces/chat/embeddings.py)
    model: str
    encoding_format: str | None = None
    dimensions: int | None = None
    user: str | None = None
    session_id: str | None = None


class SpeechBody(msgspec.Struct):
    """OpenAI's audio/speech body, checked to OpenAI's rules; every field but `model`, `input` and `voice` also goes
    upstream as it came (`other_fields`)."""

    model: str
    input: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]  # OpenAI's limit, in characters
    voice: str | dict[str, Any] | None = None  # a voice's name, or a custom voice {"id": "voice_1234"}
    response_format: str | None = None
    speed: Annotated[float, msgspec.Meta(ge=0.25, le=4.0)] | None = None
    instructions: str | None = None
    stream_format: str | None = None


#: what the speech endpoint itself sends upstream in its own fields
SPEECH_FIELDS = frozenset({"model", "input", "voice"})


class FeedbackBody(msgspec.Struct):
    value: Any
    completion_id: str
    metric: str
    user_id: str | None = None
    reason: str | None = None
    details: str | None = None


class ComparisonBody(msgspec.Struct):
    metric: str
    preferred_completion: str | dict[str, Any]
    other_completion: str | dict[str, Any]
    project: str | None = None
    messages: list[ChatMessageIn] | None = None
    tied: str | None = None
    user_id: str | None = None


class OutcomeBody(msgspec.Struct):
    value: Any
    metric: str
    session_id: str
    project_id: str | None = None
    project: str | None = None
    user_id: str | None = None


class InteractionFeedbackIn(msgspec.Struct):
    metric: str
    value: Any
    reason: str | None = None
    details: str | None = None


class InteractionBody(msgspec.Struct):
    project: str
    messages: list[ChatMessageIn]
    completion: str
    model_service: str | None = None
    feedbacks: list[InteractionFeedbackIn] | None = None
    user: str | None = None
    session_id: str | None = None
    created_at: str | None = None
    ab_campaign: str | None = None
    labels: dict[str, str] | None = None


_AT = re.compile(r" - at `\$\.?([^`]*)`$")  # where msgspec says a value is wrong: "- at `$.messages[0].role`"
_MISSING = re.compile(r"^Object missing required field `([^`]*)`")


def _param(error: str) -> str | None:
    """The field a msgspec validation error is about, as the error's `param` (`temperature`, `messages[0].role`)."""
    at, missing = _AT.search(error), _MISSING.search(error)
    path = at.group(1) if at else ""
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or None


def decode(raw: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InputError(f"invalid request body: {str(exc).replace('$.', '')}", param=_param(str(exc))) from None
    except msgspec.DecodeError:
        raise InputError("invalid request body: not a JSON object") from None
    except RecursionError:  # msgspec decodes nested arrays and objects recursively
        raise InputError(f"invalid request body: {NESTED_TOO_DEEPLY}") from None


#: the message roles OpenAI's API takes (Adaptive's are free strings)
OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def chat_body(raw: bytes, *, openai: bool) -> ChatBody:
    """A chat call's body. On the OpenAI alias (`openai`) it is held to OpenAI's rules: its messages' roles are
    OpenAI's, `max_tokens` (or `max_completion_tokens`) is at least 1, and `stream_options` comes with `stream`.
    Adaptive's schema lets `max_tokens` be 0 (the default) and says nothing of `stream_options` without a stream."""
    body = decode(raw, ChatBody)
    least = 1 if openai else 0
    for field in ("max_tokens", "max_completion_tokens"):
        at_least(getattr(body, field), least, field)
    if openai:
        stream_options_with_stream(body.stream_options, body.stream)
        for i, m in enumerate(body.messages):
            if m.role not in OPENAI_ROLES:
                where = f"messages[{i}].role"
                raise InputError(
                    f"{where} must be one of {', '.join(sorted(OPENAI_ROLES))}, got {m.role!r}", param=where
                )
    return body


def at_least(value: int | None, least: int, field: str) -> None:
    """OpenAI's 400 for an integer `field` below its minimum."""
    if value is not None and value < least:
        raise InputError(
            f"Invalid '{field}': integer below minimum value. Expected a value >= {least}, but got {value} instead.",
            code="integer_below_min_value",
            param=field,
        )


def stream_options_with_stream(options: StreamOptions | None, stream: bool | None) -> None:
    """OpenAI's 400 for `stream_options` without `stream`."""
    if options is not None and not stream:
        raise InputError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )


def optional_uuid(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InputError(f"{field} must be a UUID, got {value!r}", param=field) from None


#: The longest `user` the store keeps (messages.user is VARCHAR(255)); feedback rows keep 64 (`user_id`)
MAX_USER_LENGTH = 255
MAX_USER_ID_LENGTH = 64


def free_user(value: str | None, field: str = "user", *, limit: int = MAX_USER_LENGTH) -> str | None:
    """OpenAI's `user`: any string the client chooses (an e-mail, a UUID, a hash), kept as sent. Refused only
    when the store could not keep it: longer than `limit`, or holding NUL (PostgreSQL text cannot)."""
    if value is None:
        return None
    if len(value) > limit:
        raise InputError(f"{field} must be at most {limit} characters", param=field)
    if "\x00" in value:
        raise InputError(f"{field} must not contain NUL characters", param=field)
    return value


#: OpenAI's `image_url.detail`: how closely the model looks at an image (`auto` leaves it to the model)
IMAGE_DETAILS = ("auto", "low", "high")


def image_detail(value: Any, param: str) -> str:
    """An image part's `detail`, if it is one of OpenAI's; else OpenAI's 400 naming it (`param`)."""
    if value not in IMAGE_DETAILS:
        raise InputError(
            f"Invalid value: {value!r}. Supported values are: 'auto', 'low', and 'high'.",
            code="invalid_value",
            param=param,
        )
    return str(value)


def _part(part: dict[str, Any], where: str) -> ContentPart:
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image  # Adaptive's flat string, or OpenAI's {url}
        if isinstance(url, str) and url:  # http, https or data only: never file:///etc/passwd upstream
            out: dict[str, Any] = {"url": check_url(url, f"{where}.image_url.url")}
            detail = image.get("detail") if isinstance(image, dict) else None
            if detail is not None:  # null is unset, as in OpenAI's API
                out["detail"] = image_detail(detail, f"{where}.image_url.detail")
            return {"type": "image_url", "image_url": out}
    raise InputError(f"{where}: a content part is {{type: text, text}} or {{type: image_url, image_url}}")


def to_messages(messages: list[ChatMessageIn]) -> list[Message]:
    if not messages:
        raise InputError("messages must not be empty", param="messages")
    out = []
    for i, m in enumerate(messages):
        content: str | list[ContentPart]
        if m.content is None:
            if not m.tool_calls:
                raise InputError(f"messages[{i}].content is required", param="messages")
            content = ""
        elif isinstance(m.content, str):
            content = m.content
        else:
            content = [_part(p, f"messages[{i}].content[{j}]") for j, p in enumerate(m.content)]
        out.append(Message(m.role, content, name=m.name, tool_calls=m.tool_calls, tool_call_id=m.tool_call_id))
    return out


#: what the chat face itself reads of a body; every other field is a generation parameter for the model
CHAT_FIELDS = frozenset(ChatBody.__struct_fields__)
_raw_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_INT64 = (-(2**63), 2**63 - 1)  # OpenAI's `seed` is an int64: a larger one is a 400, as there


def generation_params(raw: bytes, read: frozenset[str] = CHAT_FIELDS) -> dict[str, Any]:
    """The body's fields the face does not read itself (`read`; for chat completions: `seed`, `response_format`,
    `logprobs`, vLLM's `top_k`, …), decoded, to be sent on to the model (`other_fields`)."""
    params = other_fields(raw, read)
    seed = params.get("seed")
    if seed is not None and (type(seed) is not int or not _INT64[0] <= seed <= _INT64[1]):  # not a bool either
        raise InputError("seed must be an integer between -2**63 and 2**63 - 1", param="seed")
    if "logit_bias" in params:
        _check_logit_bias(params["logit_bias"])
    return params


def unsupported_here(name: str, why: str, path: str) -> InputError:
    """The 400 for a parameter the endpoint at `path` cannot honour, and why."""
    return InputError(f"{name}: not supported on {path} ({why})", code="unsupported_parameter", param=name)


def endpoint_params(
    raw: bytes,
    read: frozenset[str],
    *,
    path: str,
    refused: Mapping[str, tuple[Any, str]],
    misnamed: Mapping[str, str],
    use: str,
) -> dict[str, Any]:
    """`generation_params` for an endpoint served on the chat call (/v1/responses, /v1/completions): a parameter
    of `refused` (name → the value that asks for nothing, and why) at any other value is a 400, and so is one of
    chat completions' that the endpoint names otherwise or has not (`misnamed`: name → what to send instead,
    said as `use` formats it)."""
    params = generation_params(raw, read)
    for name, (default, why) in refused.items():
        if name in params and params.pop(name) != default:
            raise unsupported_here(name, why, path)
    for name, instead in misnamed.items():
        if name in params:
            raise InputError(
                f"{name} is a chat completions parameter; {use.format(instead)}", code="unknown_parameter", param=name
            )
    return params


def _check_logit_bias(bias: Any) -> None:
    """OpenAI's `logit_bias`: token ids (as strings of digits) to a bias from -100 to 100. Anything else is a 400
    there, and is refused here before it reaches a model (llama.cpp would read a word as a key, tokenized)."""
    if not isinstance(bias, dict):
        raise InputError("Invalid 'logit_bias': expected an object of token ids to numbers.", param="logit_bias")
    for key, value in bias.items():
        if not key.isascii() or not key.isdigit():
            raise InputError(
                f"Invalid key in 'logit_bias': {key}. You should only be submitting non-negative integers.",
                param="logit_bias",
            )
        if type(value) not in (int, float) or not -100 <= value <= 100:
            raise InputError(
                f"Invalid 'logit_bias[{key}]': expected a number from -100 to 100, but got {value!r} instead.",
                param="logit_bias",
            )


def other_fields(raw: bytes, read: frozenset[str]) -> dict[str, Any]:
    """The body's fields outside `read` (those the face reads itself), decoded: no field is dropped because the
    face does not know it, except a null one, which in OpenAI's API means unset (the OpenAI SDK sends
    `"service_tier": null` for `service_tier=None`). Only the top level is scanned; the values the face reads are
    not decoded twice."""
    try:
        fields = _raw_fields.decode(raw)
        decoded = {k: msgspec.json.decode(v) for k, v in fields.items() if k not in read}
    except RecursionError:
        raise InputError(f"invalid request body: {NESTED_TOO_DEEPLY}") from None
    except msgspec.DecodeError:
        raise InputError("invalid request body: not a JSON object") from None
    return {k: v for k, v in decoded.items() if v is not None}
