"""OpenAI's Responses API (`POST /v1/responses`) through the OpenAI SDK's `client.responses`: the shape OpenAI's
own clients (the SDK, pydantic-ai's OpenAIResponsesModel, the Vercel AI SDK) read, and the chat face's engine
call under it (templates, limits, `store`, records) exactly as for /v1/chat/completions.

`RecordingProvider` stands for a model whose output is known ("Echo: " + the last user message, or the `reply`
or the tool call it is configured with) and keeps what it was sent; `Strict` for one that takes no generation
parameter beyond the core ones (as the embedded model for reasoning: tests/integration)."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai import OpenAI

from promptd.domain.limits import Limits
from promptd.errors import ProviderUnavailable
from promptd.types import ProviderCall, ProviderEvent, TextDelta
from tests.faces.chat.helpers import CHAT_CATALOG, rows
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app

#: the chat test catalog without its system-prompt template and project tools: what a client sends is what the
#: model gets
PLAIN: dict[str, Any] = copy.deepcopy(CHAT_CATALOG)
PLAIN["projects"]["demo"].update(system_prompt_template=None, tools={})
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


class Strict(RecordingProvider):
    """Stands for a model that takes `response_format` and nothing else beyond the core parameters."""

    accepts = frozenset({"response_format"})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, RecordingProvider]]:
    provider = RecordingProvider()
    with serve_app(PLAIN, tmp_path / "data", providers={"fake": provider}) as server:
        yield server, provider


def sdk(server: RunningServer, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key=key or server.key, max_retries=0)


def sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of an SSE body, keep-alive comments left out."""
    out = []
    for block in raw.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


# --- the answer ---------------------------------------------------------------------------------------------------


def test_a_blocking_response_in_openais_shape(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served
    with sdk(server) as client:
        r = client.responses.create(
            model="demo", input="hello there", instructions="Be brief.", metadata={"team": "a"}, user="ann"
        )
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert r.model == "demo/echo" and r.error is None and r.incomplete_details is None
    [message] = r.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id == "msg_" + r.id.removeprefix("resp_")
    assert [(p.type, p.text, p.annotations) for p in message.content] == [("output_text", "Echo: hello there", [])]
    assert r.output_text == "Echo: hello there"
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (4, 3)
    assert r.usage.total_tokens == 7 and r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    assert (r.instructions, r.metadata, r.user, r.tools, r.tool_choice) == (
        "Be brief.",
        {"team": "a"},
        "ann",
        [],
        "auto",
    )
    assert r.parallel_tool_calls is True and r.store is True and r.text.format.type == "text"
    # the instructions are the system message, before the input
    assert [(m.role, m.content) for m in provider.calls[-1].messages] == [
        ("system", "Be brief."),
        ("user", "hello there"),
    ]
    [row] = rows(server, expect=1)  # one record, as for a chat completion: the same engine call
    assert row["id"].replace("-", "") == r.id.removeprefix("resp_")
    assert (row["face"], row["user"], row["answer"], row["labels"]) == (
        "chat",
        "ann",
        "Echo: hello there",
        {"team": "a"},
    )


def test_input_items_become_the_chat_messages(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served
    image = "data:image/png;base64,iVBORw0KGgo="
    items: Any = [
        {"role": "developer", "content": "Answer in French."},
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "What is"}, {"type": "input_image", "image_url": image}],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A dot."}]},
        {"role": "user", "content": "and now?"},
    ]
    with sdk(server) as client:
        assert client.responses.create(model="demo/alt", input=items).output_text == "Echo: and now?"
    sent = provider.calls[-1]
    assert sent.model == "alt"
    assert [(m.role, m.content) for m in sent.messages] == [
        ("developer", "Answer in French."),
        ("user", [{"type": "text", "text": "What is"}, {"type": "image_url", "image_url": {"url": image}}]),
        ("assistant", "A dot."),
        ("user", "and now?"),
    ]


def test_the_chat_faces_templates_apply(chat: tuple[RunningServer, RecordingProvider]) -> None:
    """The chat test catalog's project has a system-prompt template: its arguments come as on the chat face."""
    server, provider = chat
    with sdk(server) as client:
        r = client.responses.create(model="demo", input="hi", extra_body={"system_prompt_args": {"name": "Ann"}})
        assert r.output_text == "Echo: hi"
        assert provider.calls[-1].messages[0].content == "You help Ann."
        with pytest.raises(openai.BadRequestError) as missing:
            client.responses.create(model="demo", input="hi")
    assert "name" in missing.value.message


def test_a_stream_is_openais_events_with_sequence_numbers_and_no_done_line(
    served: tuple[RunningServer, RecordingProvider],
) -> None:
    server, _ = served
    raw = httpx.post(
        server.v1 + "/responses",
        json={"model": "demo", "input": "hello there", "stream": True},
        headers=server.headers(),
        timeout=60,
    )
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in raw.text
    events = sse(raw.text)
    assert [e for e, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == event for event, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    deltas = [d["delta"] for e, d in events if e == "response.output_text.delta"]
    assert "".join(deltas) == "Echo: hello there"
    created, completed = events[0][1]["response"], events[-1][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "Echo: hello there"
    assert completed["usage"]["output_tokens"] == 3


def test_the_sdks_stream_helpers_read_it(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = served
    with sdk(server) as client:
        streamed = list(client.responses.create(model="demo", input="hello there", stream=True))
        assert streamed[-1].type == "response.completed"
        assert streamed[-1].response.output_text == "Echo: hello there"
        with client.responses.stream(model="demo", input="hello there") as stream:
            texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
    assert "".join(texts) == final.output_text == "Echo: hello there"
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens == 3


def test_the_output_token_limit_makes_an_incomplete_response(tmp_path: Path) -> None:
    reply = " ".join(f"w{i}" for i in range(20))
    with serve_app(PLAIN, tmp_path, providers={"fake": RecordingProvider(reply=reply)}) as server, sdk(server) as c:
        r = c.responses.create(model="demo", input="go", max_output_tokens=16)
        assert r.status == "incomplete" and r.incomplete_details is not None
        assert r.incomplete_details.reason == "max_output_tokens" and r.max_output_tokens == 16
        assert r.usage is not None and r.usage.output_tokens == 16 and r.output[0].status == "incomplete"
        with c.responses.stream(model="demo", input="go", max_output_tokens=16) as stream:
            last = list(stream)[-1]
        assert last.type == "response.incomplete" and last.response.incomplete_details is not None
        assert last.response.incomplete_details.reason == "max_output_tokens"
        with pytest.raises(openai.BadRequestError) as small:
            c.responses.create(model="demo", input="go", max_output_tokens=8)  # OpenAI's least is 16
    assert small.value.code == "integer_below_min_value" and small.value.param == "max_output_tokens"


# --- function tools -----------------------------------------------------------------------------------------------


def test_a_function_tool_round_trip(tmp_path: Path) -> None:
    """The model calls the client's function; the client sends the call and its output back as input items (as
    pydantic-ai and the AI SDK do), which reach the model as chat completions' tool call and tool message."""
    provider = RecordingProvider(tool_arguments='{"city": "Paris"}')
    with serve_app(PLAIN, tmp_path, providers={"fake": provider}) as server, sdk(server) as client:
        asked: Any = [{"role": "user", "content": "Weather in Paris?"}]
        r = client.responses.create(model="demo", input=asked, tools=[WEATHER], tool_choice="required")
        assert r.status == "completed" and r.tool_choice == "required"
        [call] = r.output
        assert call.type == "function_call" and call.id.startswith("fc_")
        assert (call.call_id, call.name, call.arguments) == ("call_fake_0", "get_weather", '{"city": "Paris"}')
        assert r.tools[0].name == "get_weather"
        sent = provider.calls[-1]
        assert sent.tools == [
            {
                "type": "function",
                "function": {k: WEATHER[k] for k in ("name", "description", "parameters", "strict")},
            }
        ]
        assert sent.extra["tool_choice"] == "required"
        # the round trip: the call and its output, without tools this time (the fake model then answers)
        back = [*asked, call.model_dump(), {"type": "function_call_output", "call_id": "call_fake_0", "output": "18C"}]
        answer = client.responses.create(model="demo", input=back)
        assert answer.output_text == "Echo: Weather in Paris?"
        messages = provider.calls[-1].messages
        assert [m.role for m in messages] == ["user", "assistant", "tool"]
        assert messages[1].tool_calls == [
            {
                "id": "call_fake_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ]
        assert (messages[2].tool_call_id, messages[2].content) == ("call_fake_0", "18C")
        # a named function is chat completions' named tool_choice
        client.responses.create(
            model="demo", input="x", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}
        )
        assert provider.calls[-1].extra["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_a_streamed_function_call(tmp_path: Path) -> None:
    provider = RecordingProvider(tool_arguments='{"city": "Paris"}')
    with (
        serve_app(PLAIN, tmp_path, providers={"fake": provider}) as server,
        sdk(server) as client,
        client.responses.stream(model="demo", input="Weather?", tools=[WEATHER]) as stream,
    ):
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    [call] = final.output
    assert call.type == "function_call" and call.arguments == '{"city": "Paris"}' and call.call_id == "call_fake_0"
    assert call.parsed_arguments == {"city": "Paris"}  # the SDK parses a strict tool's


# --- text.format --------------------------------------------------------------------------------------------------


class City(pydantic.BaseModel):
    city: str


def test_text_format_json_schema_is_the_chat_faces_response_format(tmp_path: Path) -> None:
    provider = RecordingProvider(reply='{"city": "Paris"}')
    with serve_app(PLAIN, tmp_path, providers={"fake": provider}) as server, sdk(server) as client:
        parsed = client.responses.parse(model="demo", input="Where?", text_format=City)
        assert parsed.output_parsed == City(city="Paris")
        fmt = provider.calls[-1].extra["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "City"
        assert fmt["json_schema"]["strict"] is True and fmt["json_schema"]["schema"]["required"] == ["city"]
        assert parsed.text.format.type == "json_schema"
        client.responses.create(model="demo", input="JSON please", text={"format": {"type": "json_object"}})
        assert provider.calls[-1].extra["response_format"] == {"type": "json_object"}
        client.responses.create(model="demo", input="text", text={"format": {"type": "text"}})
        assert "response_format" not in provider.calls[-1].extra


# --- what is refused ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
        ({"background": True}, "background"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"conversation": "conv_123"}, "conversation"),
        ({"truncation": "auto"}, "truncation"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"max_tokens": 20}, "max_tokens"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "item_reference", "id": "rs_1"}]}, "input[0].id"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "file:///etc/passwd"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"temperature": 3}, "temperature"),
    ],
)
def test_what_promptd_cannot_honour_is_a_400_naming_it(
    served: tuple[RunningServer, RecordingProvider], extra: dict[str, Any], param: str
) -> None:
    server, provider = served
    with sdk(server) as client, pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="demo", input="hi", extra_body=extra)  # as sent, whatever the SDK's types
    body: Any = refused.value.body
    assert set(body) == {"message", "type", "param", "code"} and body["type"] == "invalid_request_error"
    assert body["param"] == param, body
    assert provider.calls == []  # refused before any model call


def test_null_and_default_values_are_not_refused(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served
    defaults: Any = {
        "background": False,
        "include": [],
        "truncation": "disabled",
        "top_logprobs": 0,
        "parallel_tool_calls": True,
        "store": True,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": None,
        "previous_response_id": None,
        "conversation": None,
        "max_tool_calls": 3,
        "stream_options": None,
        "prompt_cache_key": None,
    }
    with sdk(server) as client:
        assert client.responses.create(model="demo", input="hi", **defaults).status == "completed"
    assert provider.calls[-1].extra == {"parallel_tool_calls": True}  # what the chat face sends on


def test_a_parameter_the_model_cannot_honour_is_named_as_the_responses_api_names_it(tmp_path: Path) -> None:
    catalog = copy.deepcopy(PLAIN)
    catalog["providers"]["strict"] = {"kind": "fake"}
    catalog["models"]["tight"] = {"provider": "strict", "model": "tight"}
    catalog["projects"]["demo"]["models"] = ["echo", "vectors", "tight"]
    providers = {"fake": RecordingProvider(), "strict": Strict()}
    with serve_app(catalog, tmp_path, providers=providers) as server, sdk(server) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="demo/tight", input="hi", reasoning={"effort": "low"})
        assert refused.value.param == "reasoning" and "reasoning_effort" not in refused.value.message
        with pytest.raises(openai.BadRequestError) as verbose:
            client.responses.create(model="demo/tight", input="hi", text={"verbosity": "high"})
        assert verbose.value.param == "text.verbosity"
        # at OpenAI's default it asks for nothing; on a model that takes any parameter it is sent on
        assert (
            client.responses.create(model="demo/tight", input="hi", text={"verbosity": "medium"}).status == "completed"
        )
        client.responses.create(model="demo/echo", input="hi", reasoning={"effort": "low"}, text={"verbosity": "low"})
        assert providers["fake"].calls[-1].extra == {"reasoning_effort": "low", "verbosity": "low"}
    assert providers["strict"].calls[-1].extra == {}


def test_errors_are_openais(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = served
    with sdk(server) as client:
        with pytest.raises(openai.NotFoundError) as unknown:
            client.responses.create(model="demo/nope", input="hi")
        assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")
    with sdk(server, key="app-wrong") as client, pytest.raises(openai.AuthenticationError) as bad:
        client.responses.create(model="demo", input="hi")
    assert bad.value.code == "invalid_api_key"


# --- limits, store, item references -------------------------------------------------------------------------------


def test_a_limit_is_a_429_blocking_and_streaming(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served

    async def make(repo: Any) -> str:
        key, _ = await repo.create_key("demo", limits=Limits(rpm=1))
        return str(key)

    key = str(server.repo_call(make))
    with sdk(server, key) as client:
        client.responses.create(model="demo", input="hi")
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as limited:
                client.responses.create(model="demo", input="hi", stream=stream)
            assert limited.value.code == "rate_limit_exceeded"
            assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert len(provider.calls) == 1


def test_an_earlier_answer_is_an_item_reference_to_its_message(
    served: tuple[RunningServer, RecordingProvider],
) -> None:
    """What the Vercel AI SDK sends for an assistant turn by default (`store` true): the message's id, which
    promptd reads back from the store (the record may not be written yet: it is waited for)."""
    server, provider = served
    with sdk(server) as client:
        first = client.responses.create(model="demo", input="hello there")
        turn: Any = [
            {"role": "user", "content": "hello there"},
            {"type": "item_reference", "id": first.output[0].id},
            {"role": "user", "content": "again"},
        ]
        assert client.responses.create(model="demo", input=turn).output_text == "Echo: again"
        assert [(m.role, m.content) for m in provider.calls[-1].messages] == [
            ("user", "hello there"),
            ("assistant", "Echo: hello there"),
            ("user", "again"),
        ]
        other = server.new_key("demo")  # another key of the project does not read this key's answers
        with sdk(server, other) as stranger, pytest.raises(openai.NotFoundError) as hidden:
            stranger.responses.create(model="demo", input=turn)
        assert hidden.value.param == "input"


def test_store_false_keeps_the_content_out(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = served
    with sdk(server) as client:
        kept = client.responses.create(model="demo", input="keep me")
        secret = client.responses.create(model="demo", input="secret words", store=False)
        assert secret.store is False and secret.output_text == "Echo: secret words"
        streamed = list(client.responses.create(model="demo", input="secret stream", store=False, stream=True))
        assert streamed[-1].type == "response.completed"
        stored = rows(server)
        assert [r["id"].replace("-", "") for r in stored] == [kept.id.removeprefix("resp_")]
        assert "secret" not in json.dumps(stored, default=str)
        # so an answer given with store false cannot be referenced later
        turn: Any = [{"type": "item_reference", "id": secret.output[0].id}, {"role": "user", "content": "and?"}]
        with pytest.raises(openai.NotFoundError) as gone:
            client.responses.create(model="demo", input=turn)
        assert "store false" in gone.value.message
    usage = httpx.get(server.url + "/metrics").text  # metered all the same
    assert 'promptd_requests_total{face="chat",model="echo",project="demo",status="normal"} 3.0' in usage


# --- moderation and failures --------------------------------------------------------------------------------------

MODERATION = {
    "type": "keywords",
    "keywords": ["Forbidden", "secret plan"],
    "inputs": {"enabled": True, "preset_response": "[question withheld]"},
    "outputs": {"enabled": True, "preset_response": "[answer withheld]"},
}


def test_moderation_applies_and_a_replaced_answer_is_incomplete_for_content_filter(tmp_path: Path) -> None:
    catalog = copy.deepcopy(PLAIN)
    catalog["projects"]["demo"]["moderation"] = MODERATION
    provider = RecordingProvider(reply="here is the secret plan in full")
    with serve_app(catalog, tmp_path, providers={"fake": provider}) as server, sdk(server) as client:
        r = client.responses.create(model="demo", input="the plan?")
        assert r.output_text == "[answer withheld]" and r.status == "incomplete"
        assert r.incomplete_details is not None and r.incomplete_details.reason == "content_filter"
        with client.responses.stream(model="demo", input="the plan?") as stream:
            events = list(stream)
        texts = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert texts == ["[answer withheld]"]  # never a word of the flagged answer
        assert events[-1].type == "response.incomplete"
        assert events[-1].response.incomplete_details is not None
        assert events[-1].response.incomplete_details.reason == "content_filter"
        asked = len(provider.calls)
        assert client.responses.create(model="demo", input="Forbidden words").output_text == "[question withheld]"
        assert len(provider.calls) == asked  # flagged input: no model call


class BreaksMidStream(RecordingProvider):
    """Stands for an upstream that fails after its first token."""

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        self.calls.append(call)
        yield TextDelta("Hello")
        raise ProviderUnavailable("the upstream went away")


def test_a_failure_before_the_first_token_is_its_real_status_and_after_it_response_failed(tmp_path: Path) -> None:
    catalog = copy.deepcopy(PLAIN)
    catalog["providers"]["breaks"] = {"kind": "fake"}
    catalog["models"]["breaks"] = {"provider": "breaks", "model": "breaks"}
    catalog["projects"]["demo"]["models"] = ["echo", "vectors", "breaks"]
    providers = {"fake": RecordingProvider(fail="rate_limited"), "breaks": BreaksMidStream()}
    with serve_app(catalog, tmp_path, providers=providers) as server, sdk(server) as client:
        with pytest.raises(openai.RateLimitError):  # nothing was sent: the stream is the upstream's 429
            client.responses.create(model="demo/echo", input="hi", stream=True)
        with client.responses.stream(model="demo/breaks", input="hi") as stream:
            events = list(stream)
            with pytest.raises(RuntimeError):  # the SDK: no response.completed
                stream.get_final_response()
    assert [e.type for e in events][-3:] == [
        "response.content_part.added",
        "response.output_text.delta",
        "response.failed",
    ]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error.code, failed.error.message) == ("server_error", "the upstream went away")
