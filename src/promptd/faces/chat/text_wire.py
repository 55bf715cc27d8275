"""OpenAI's legacy completions (`POST /v1/completions`) read as chat calls: the body, its prompts, and its other
parameters as the chat face's generation parameters. Each prompt is one user message to the project's chat model,
so what only a raw text continuation can do (`echo`, `suffix`, `logprobs`, a server-side `best_of`) and what a
text completion cannot show (tool calls, chat completions' logprobs) is a 400 naming the parameter, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from promptd.errors import InputError
from promptd.faces.chat.wire import (
    StreamOptions,
    Temperature,
    TopP,
    at_least,
    endpoint_params,
    stream_options_with_stream,
    unsupported_here,
)

__all__ = ["DEFAULT_MAX_TOKENS", "TEXT_FIELDS", "TextCompletionBody", "prompts", "text_params"]


class TextCompletionBody(msgspec.Struct):
    model: str
    prompt: str | list[Any]  # a string or strings; OpenAI's token ids (arrays of integers) are refused (`prompts`)
    max_tokens: int | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    best_of: int | None = None
    # promptd's own, as on the chat face (the OpenAI SDK sends them with extra_body)
    session_id: str | None = None
    ab_campaign: str | None = None
    labels: dict[str, str] | None = None
    metadata: dict[str, str] | None = None
    tags: list[str] | None = None
    system_prompt_args: dict[str, Any] | None = None
    max_ttft_ms: int | None = None
    store: bool | None = None


#: what the endpoint reads of a body; every other field is a generation parameter, as on the chat face
TEXT_FIELDS = frozenset(TextCompletionBody.__struct_fields__)

#: OpenAI's `max_tokens` when a legacy completion names none (vLLM's too): clients written for it rely on it
DEFAULT_MAX_TOKENS = 16

#: legacy parameters a chat model cannot honour: the value that asks for nothing (null always does), and why
_REFUSED: Mapping[str, tuple[Any, str]] = {
    "echo": (False, "the prompt is a user message to a chat model, not text the answer continues"),
    "suffix": ("", "a chat model answers a message; it writes no text to fit before a suffix"),
    "logprobs": (msgspec.UNSET, "a text completion's logprobs are not served (POST /v1/chat/completions has them)"),
}

#: chat completions' parameters that have no place in a text completion: a client mixing the two is told which to
#: use (left unread, they would go to the model as generation parameters: `messages` in place of the prompt)
_CHAT_ONLY: Mapping[str, str] = {
    "messages": "prompt (a string: the user's message)",
    "max_completion_tokens": "max_tokens",
    "top_logprobs": "none (logprobs are not served here)",
    "tools": "none (a text completion has no tool calls: use POST /v1/chat/completions)",
    "tool_choice": "none (a text completion has no tool calls: use POST /v1/chat/completions)",
    "functions": "none (a text completion has no tool calls: use POST /v1/chat/completions)",
    "function_call": "none (a text completion has no tool calls: use POST /v1/chat/completions)",
    "parallel_tool_calls": "none (a text completion has no tool calls: use POST /v1/chat/completions)",
    "use_tools": "none (a text completion sends the model no tools)",
}


def _refuse(name: str, why: str) -> InputError:
    return unsupported_here(name, why, "/v1/completions")


def prompts(prompt: str | list[Any]) -> list[str]:
    """The prompts of a body: a string is one, a list of strings one each. OpenAI's token ids (an array of
    integers, or arrays of them) are a 400: they are a tokenizer's, and promptd's models are sent text."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if prompt and all(type(p) is int or isinstance(p, list) for p in prompt):
        raise InputError(
            "prompt: token ids are not supported: promptd sends a chat model text (send the prompt as a string)",
            code="unsupported_value",
            param="prompt",
        )
    raise InputError("prompt must be a string or a non-empty list of strings", param="prompt")


def text_params(raw: bytes, body: TextCompletionBody) -> dict[str, Any]:
    """The chat call's generation parameters: every field the endpoint does not read (`presence_penalty`,
    `frequency_penalty`, `seed`, `logit_bias`, vLLM's `top_k`, …) as the chat face sends them on. A legacy
    parameter a chat model cannot honour (at any value but the one that asks nothing) is a 400, and so is a chat
    completions parameter; `best_of` is served when it equals `n` (the same call), as OpenAI's is."""
    params = endpoint_params(
        raw, TEXT_FIELDS, path="/v1/completions", refused=_REFUSED, misnamed=_CHAT_ONLY, use="on /v1/completions use {}"
    )
    n = body.n or 1
    if body.best_of is not None and body.best_of < n:
        raise InputError("best_of must be greater than or equal to n", param="best_of")
    if body.best_of is not None and body.best_of > n:
        raise _refuse("best_of", "promptd returns every completion it makes: ask for n of them instead")
    at_least(body.max_tokens, 1, "max_tokens")
    stream_options_with_stream(body.stream_options, body.stream)
    return params
