"""A forced tool call on a model with no tool calling of its own: the embedded model (llama.cpp puts no tools in
SmolLM2's prompt, and would answer prose). Pure, no I/O.

`tool_choice: "required"` or `{"type": "function", "function": {"name": …}}` becomes a grammar the output must
follow (llguidance's, which llama.cpp runs): the named function's arguments as JSON (its `parameters` schema), or,
when the model may pick one of several, `{"name": "<one of them>", "arguments": {…}}`. The model is told which
functions it calls (the prompt would not say), and its output is read back as one tool call while it streams.
A call cut short by `max_tokens` ends with `length` and the arguments so far, as OpenAI's does.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptd.errors import ProviderBadRequest, ProviderError
from promptd.types import ToolCallDelta

__all__ = ["ForcedCall", "ForcedReader", "forced_call"]

#: llguidance's JSON options: compact JSON (fewer tokens, no runaway whitespace), and schema keywords it cannot
#: enforce (a `format` it does not know) ignored rather than the whole grammar refused
GUIDANCE = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", ", "lenient": True}
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_ONES = ("items", "additionalProperties", "not", "if", "then", "else")


def _closed(schema: Any) -> None:
    """Objects take only the properties they declare unless they say otherwise (a tool's arguments, not more)."""
    if not isinstance(schema, dict):
        return
    if (schema.get("type") == "object" or "properties" in schema) and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for key in _SCHEMA_LISTS:
        for sub in schema.get(key) or []:
            _closed(sub)
    for key in _SCHEMA_MAPS:
        subs = schema.get(key)
        if isinstance(subs, dict):
            for sub in subs.values():
                _closed(sub)
    for key in _SCHEMA_ONES:
        _closed(schema.get(key))


def _arguments_schema(function: Mapping[str, Any]) -> str:
    schema = copy.deepcopy(function.get("parameters") or {"type": "object", "properties": {}})
    _closed(schema)
    schema["x-guidance"] = GUIDANCE
    return json.dumps(schema)


def _prefix(name: str) -> str:
    """What the output of a pick among several functions starts with, once it has picked `name`."""
    return '{"name": ' + json.dumps(name) + ', "arguments": '


@dataclass(frozen=True, slots=True)
class ForcedCall:
    """The call a `tool_choice` forces: the functions it may be (one: that one), the grammar, what the model is
    told."""

    functions: tuple[str, ...]
    grammar: str
    hint: str

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """A /chat/completions body for llama.cpp that makes the call: the grammar instead of tools (and of any
        other constraint on the output), the hint in the system message."""
        dropped = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "json_schema", "stop")
        body = {k: v for k, v in body.items() if k not in dropped}  # stop words end content: a call has none
        body["grammar"] = self.grammar
        messages = [dict(m) for m in body["messages"]]
        first = messages[0] if messages else None
        if first is not None and first.get("role") == "system" and isinstance(first.get("content"), str):
            first["content"] = f"{first['content']}\n\n{self.hint}"
        else:
            messages.insert(0, {"role": "system", "content": self.hint})
        body["messages"] = messages
        return body


def forced_call(tools: list[dict[str, Any]] | None, tool_choice: Any) -> ForcedCall | None:
    """The call `tool_choice` forces among `tools`, or None when it forces none (absent, "auto", "none")."""
    functions = {
        t["function"]["name"]: t["function"]
        for t in tools or []
        if t.get("type") == "function" and isinstance(t.get("function"), dict) and t["function"].get("name")
    }
    if tool_choice == "required":
        names = list(functions)
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        if name not in functions:
            raise ProviderBadRequest(f"tool_choice names the function {name!r}, which is not among the tools")
        names = [name]
    else:
        return None
    if not names:
        raise ProviderBadRequest("tool_choice requires a tool call, but no function tools were given")

    def described(name: str) -> str:
        about = str(functions[name].get("description") or "").strip()
        return f"{name} ({about})" if about else name

    if len(names) == 1:
        grammar = "%llguidance {}\nstart: %json " + _arguments_schema(functions[names[0]])
        hint = f"Answer with a call to the function {described(names[0])}: write its arguments as JSON."
    else:
        rules = [f"start: {' | '.join(f'call_{i}' for i in range(len(names)))}"]
        for i, name in enumerate(names):
            rules.append(f'call_{i}: {json.dumps(_prefix(name))} args_{i} "}}"')
            rules.append(f"args_{i}: %json {_arguments_schema(functions[name])}")
        grammar = "%llguidance {}\n" + "\n".join(rules)
        listed = "\n".join(f"- {described(n)}" for n in names)
        hint = f'Answer with a call to one of these functions, as JSON {{"name": …, "arguments": {{…}}}}:\n{listed}'
    return ForcedCall(tuple(names), grammar, hint)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class ForcedReader:
    """Reads the output of a forced call back as one tool call (index 0), streamed as the text comes: the first
    fragment carries the id and the name, the next ones more of the arguments."""

    forced: ForcedCall
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:24])
    text: str = ""
    name: str | None = None
    start: int = 0  # where the arguments begin in `text`
    sent: int = 0  # how much of the arguments has gone out

    def __post_init__(self) -> None:
        if len(self.forced.functions) == 1:
            self.name = self.forced.functions[0]

    def feed(self, text: str) -> list[ToolCallDelta]:
        self.text += text
        if self.name is None and not self._picked():
            return []
        args = self.text[self.start :]
        if len(self.forced.functions) > 1 and args.endswith("}"):
            args = args[:-1]  # perhaps the end of the wrapper: it goes out when more comes
        elif self.sent == 0 and args.lstrip() and not args.lstrip().startswith("{"):
            raise self._unfollowed()
        return self._send(args)

    def finish(self, reason: str) -> tuple[list[ToolCallDelta], str]:
        """The rest of the call when the model stopped for `reason`, and the finish reason to report:
        `tool_calls` when the call is whole, else the model's (`length`: cut short)."""
        whole = _is_json(self.text)
        if self.name is None:  # cut short before it picked a function (or it never followed the grammar)
            if whole or reason != "length":
                raise self._unfollowed()
            return [], reason
        args = self.text[self.start :]
        if whole and len(self.forced.functions) > 1:
            args = args.rstrip()[:-1]  # the wrapper's closing brace
        if not whole and reason != "length":
            raise self._unfollowed()
        out = self._send(args)
        if self.sent == 0:  # nothing yet: still one call, with empty arguments
            out = [ToolCallDelta(0, self.id, self.name, "")]
        return out, "tool_calls" if whole else reason

    def _picked(self) -> bool:
        """Whether the output has picked its function (then `name` and `start` are set)."""
        for name in self.forced.functions:
            prefix = _prefix(name)
            if self.text.startswith(prefix):
                self.name, self.start = name, len(prefix)
                return True
        if not any(_prefix(n).startswith(self.text) for n in self.forced.functions):
            raise self._unfollowed()
        return False

    def _send(self, args: str) -> list[ToolCallDelta]:
        if len(args) <= self.sent:
            return []
        fragment, first = args[self.sent :], self.sent == 0
        self.sent = len(args)
        return [ToolCallDelta(0, self.id if first else None, self.name if first else None, fragment)]

    def _unfollowed(self) -> ProviderError:
        return ProviderError(
            "local model: its output did not follow the forced tool call (a tool's parameters schema it could not "
            f"enforce?): {self.text[:80]!r}"
        )
