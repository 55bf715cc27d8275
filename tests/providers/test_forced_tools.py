"""A forced tool call's grammar, prompt and reading, without the model (tests/integration/test_local_chat.py runs
them on the real one)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptd.errors import ProviderBadRequest, ProviderError
from promptd.providers.forced_tools import ForcedCall, ForcedReader, forced_call
from promptd.types import ToolCallDelta


def tool(name: str, description: str = "", **parameters: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "description": description}
    if parameters:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


CITY = tool(
    "City",
    "A city",
    type="object",
    properties={"name": {"type": "string"}, "where": {"type": "object", "properties": {"country": {}}}},
)
WEATHER = tool("get_weather", type="object", properties={"city": {"$ref": "#/$defs/C"}}, **{"$defs": {"C": {}}})
NAMED = {"type": "function", "function": {"name": "City"}}


def schema_of(grammar_line: str) -> dict[str, Any]:
    return json.loads(grammar_line.split("%json ", 1)[1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("choice", [None, "auto", "none"])
def test_a_choice_that_forces_no_call_changes_nothing(choice: Any) -> None:
    assert forced_call([CITY], choice) is None


def test_a_named_function_is_held_to_its_parameters_as_closed_compact_json() -> None:
    forced = forced_call([WEATHER, CITY], NAMED)
    assert forced is not None and forced.functions == ("City",)
    header, start = forced.grammar.splitlines()
    assert header == "%llguidance {}" and start.startswith("start: %json ")
    schema = schema_of(start)
    assert schema["additionalProperties"] is False  # the declared arguments, nothing more
    assert schema["properties"]["where"]["additionalProperties"] is False
    assert schema["x-guidance"]["whitespace_flexible"] is False and schema["x-guidance"]["lenient"] is True
    assert CITY["function"]["parameters"].get("additionalProperties") is None  # the client's tools untouched
    assert forced.hint == "Answer with a call to the function City (A city): write its arguments as JSON."


def test_required_with_one_tool_is_a_call_of_that_tool() -> None:
    forced = forced_call([CITY], "required")
    assert forced is not None and forced.functions == ("City",)


def test_required_among_several_picks_one_by_name_then_its_arguments() -> None:
    forced = forced_call([CITY, WEATHER], "required")
    assert forced is not None and forced.functions == ("City", "get_weather")
    lines = forced.grammar.splitlines()
    assert lines[1] == "start: call_0 | call_1"
    assert lines[2] == 'call_0: "{\\"name\\": \\"City\\", \\"arguments\\": " args_0 "}"'
    assert schema_of(lines[5])["$defs"] == {"C": {}}  # each function's own definitions stay with it
    assert forced.hint.endswith("\n- City (A city)\n- get_weather")


def test_a_function_without_parameters_takes_an_empty_object() -> None:
    forced = forced_call([tool("ping")], "required")
    assert forced is not None
    assert schema_of(forced.grammar) == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
        "x-guidance": schema_of(forced.grammar)["x-guidance"],
    }


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        ([CITY], {"type": "function", "function": {"name": "Town"}}, "'Town', which is not among the tools"),
        ([], "required", "no function tools"),
        (None, NAMED, "'City', which is not among the tools"),
    ],
)
def test_a_call_that_cannot_be_made_is_a_bad_request(tools: Any, choice: Any, message: str) -> None:
    with pytest.raises(ProviderBadRequest, match=message):
        forced_call(tools, choice)


def test_the_hint_joins_the_system_message_or_opens_the_conversation() -> None:
    forced = ForcedCall(("City",), "G", "HINT")
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [CITY], "tool_choice": "required", "stop": ["x"]}
    made = forced.apply({**body, "response_format": {"type": "json_object"}, "temperature": 0})
    assert made == {
        "messages": [{"role": "system", "content": "HINT"}, {"role": "user", "content": "hi"}],
        "grammar": "G",
        "temperature": 0,
    }
    with_system = forced.apply({"messages": [{"role": "system", "content": "Be brief."}, *body["messages"]]})
    assert with_system["messages"][0] == {"role": "system", "content": "Be brief.\n\nHINT"}
    assert body["messages"] == [{"role": "user", "content": "hi"}]  # the call's own body untouched


def read(forced: ForcedCall, pieces: list[str], reason: str) -> tuple[list[ToolCallDelta], str]:
    reader = ForcedReader(forced, id="call_1")
    out = [delta for piece in pieces for delta in reader.feed(piece)]
    rest, finished = reader.finish(reason)
    return out + rest, finished


def arguments(deltas: list[ToolCallDelta]) -> str:
    return "".join(d.arguments for d in deltas)


def test_a_named_call_streams_its_arguments_as_they_come() -> None:
    forced = forced_call([CITY], NAMED)
    assert forced is not None
    deltas, reason = read(forced, ['{"name', '": "Paris"', "}"], "stop")
    assert reason == "tool_calls" and [d.arguments for d in deltas] == ['{"name', '": "Paris"', "}"]
    assert (deltas[0].id, deltas[0].name) == ("call_1", "City") and all(d.id is None for d in deltas[1:])
    assert {d.index for d in deltas} == {0}


def test_a_pick_among_several_gives_the_picked_name_and_only_the_arguments() -> None:
    forced = forced_call([CITY, WEATHER], "required")
    assert forced is not None
    pieces = ['{"name": "get_', 'weather", "argu', 'ments": {"city": "Paris"}', "}"]
    deltas, reason = read(forced, pieces, "stop")
    assert reason == "tool_calls" and (deltas[0].id, deltas[0].name) == ("call_1", "get_weather")
    assert arguments(deltas) == '{"city": "Paris"}'
    assert len(deltas) > 1  # streamed: the arguments' own closing brace waited only for the next piece


def test_a_call_cut_short_ends_with_length_and_the_arguments_so_far() -> None:
    named = forced_call([CITY], NAMED)
    several = forced_call([CITY, WEATHER], "required")
    assert named is not None and several is not None
    deltas, reason = read(named, ['{"name": "Pa'], "length")
    assert reason == "length" and arguments(deltas) == '{"name": "Pa' and deltas[0].name == "City"
    deltas, reason = read(several, ['{"name": "City", "arguments": {"name": "Pa'], "length")
    assert reason == "length" and arguments(deltas) == '{"name": "Pa'
    assert read(several, ['{"name": "Ci'], "length") == ([], "length")  # cut before it picked: no call
    deltas, reason = read(several, ['{"name": "City", "arguments": '], "length")
    assert reason == "length" and deltas == [ToolCallDelta(0, "call_1", "City", "")]


@pytest.mark.parametrize(
    ("choice", "pieces", "reason"),
    [
        (NAMED, ["Paris is ", "in France."], "stop"),  # the grammar was not applied: prose
        ("required", ['{"name": "Town", '], "stop"),
        (NAMED, ['{"name": "Pa'], "stop"),  # ended, yet not whole
        ("required", ["Sure"], "length"),
    ],
)
def test_output_that_did_not_follow_the_grammar_is_a_provider_error(
    choice: Any, pieces: list[str], reason: str
) -> None:
    forced = forced_call([CITY, WEATHER], choice)
    assert forced is not None
    with pytest.raises(ProviderError, match="did not follow the forced tool call"):
        read(forced, pieces, reason)
