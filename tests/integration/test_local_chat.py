"""The chat API on the real embedded model, through the OpenAI SDK: shape and token counts, not wording."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from promptd.catalog.load import BUILTIN_CATALOG
from tests.serving import RunningServer, serve_app

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_app(BUILTIN_CATALOG, tmp_path_factory.mktemp("chat") / "data") as s:
        yield s


@pytest.fixture
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.url + "/api/v1", api_key=server.key)


def test_blocking_chat_with_two_choices(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, n=2
    )
    assert len(r.choices) == 2 and all(c.message.content for c in r.choices)
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 32 and r.usage.prompt_tokens > 0


def test_streaming_chat(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo/smol",
        messages=[{"role": "user", "content": "Count to 5."}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 24
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_local_embeddings(client: OpenAI) -> None:
    r = client.embeddings.create(model="demo", input=["a cat", "a dog"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 576 and r.usage.prompt_tokens > 0


def test_local_embeddings_take_text_only(server: RunningServer) -> None:
    """Token ids are another tokenizer's (tiktoken's, from LangChain): the local model cannot read them."""
    client = OpenAI(base_url=server.url + "/v1", api_key=server.key)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="demo", input=[[9906, 1917]])
    assert info.value.param == "input" and "takes text only" in info.value.message


def test_adaptive_sdk_on_the_real_model(server: RunningServer) -> None:
    from adaptive_sdk import Adaptive

    client = Adaptive(base_url=server.url, api_key=server.key)
    try:
        r = client.chat.create(messages=[{"role": "user", "content": "Say hi."}], project="demo", max_tokens=12)
        assert r.choices[0].message.content.strip() and r.usage.completion_tokens <= 12
        chunks = list(
            client.chat.create(
                messages=[{"role": "user", "content": "Say hi."}], project="demo", max_tokens=12, stream=True
            )
        )
        assert "".join(c.choices[0].delta.content for c in chunks if c.choices).strip()
    finally:
        client.close()


def test_structured_output_is_enforced_offline(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "The capital of France and its population, as JSON."}],
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    answer = json.loads(r.choices[0].message.content or "")  # llama.cpp's grammar keeps it valid JSON
    assert set(answer) == {"city", "population"} and isinstance(answer["population"], int)


CITY = {
    "type": "function",
    "function": {
        "name": "City",
        "description": "A city and the country it is in",
        "parameters": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
            "required": ["name", "country"],
        },
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
ASK_CITY = [{"role": "user", "content": "Paris is the capital of France."}]


def test_a_named_tool_choice_is_a_call_of_that_tool(client: OpenAI) -> None:
    """A forced call (what LangChain's with_structured_output(method="function_calling") sends) is honoured: the
    model's output is held to the function's parameters by a grammar and comes back as the tool call."""
    r = client.chat.completions.create(
        model="demo",
        messages=ASK_CITY,  # type: ignore[arg-type]
        tools=[WEATHER, CITY],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "City"}},
        max_tokens=40,
        temperature=0,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "City" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"name", "country"} and all(isinstance(v, str) for v in arguments.values())


def test_a_required_tool_choice_streams_a_call_of_one_of_the_tools(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo",
        messages=ASK_CITY,  # type: ignore[arg-type]
        tools=[CITY, WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=40,
        temperature=0,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    deltas = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert len(deltas) > 1 and not any(c.choices[0].delta.content for c in chunks)  # arguments as they come
    assert deltas[0].id and {d.index for d in deltas} == {0}
    name = deltas[0].function.name  # type: ignore[union-attr]
    arguments = json.loads("".join(d.function.arguments or "" for d in deltas))  # type: ignore[union-attr]
    expected = {"City": {"name", "country"}, "get_weather": {"city", "unit"}}
    assert name in expected and set(arguments) == expected[name]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_forced_call_cut_short_by_max_tokens_ends_with_length(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo",
        messages=ASK_CITY,
        tools=[CITY],
        tool_choice="required",
        max_tokens=3,  # type: ignore[arg-type, list-item]
    )
    choice = r.choices[0]
    (call,) = choice.message.tool_calls or []
    assert choice.finish_reason == "length" and call.function.name == "City"
    assert call.function.arguments and not call.function.arguments.endswith("}")  # the arguments so far


def test_logprobs_come_back_from_the_embedded_model(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, logprobs=True, top_logprobs=2
    )
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(entry.logprob <= 0 and len(entry.top_logprobs) <= 2 for entry in content)


def test_logprobs_follow_openai_top_logprobs_none_by_default_and_zero_kept(client: OpenAI) -> None:
    ask = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "logprobs": True}
    for extra in ({}, {"top_logprobs": 0}):
        r = client.chat.completions.create(**ask, **extra)  # type: ignore[call-overload]
        content = r.choices[0].logprobs.content
        assert content and all(entry.top_logprobs == [] for entry in content), extra


def test_a_parameter_the_embedded_model_cannot_honour_is_a_400_naming_it(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, service_tier="flex"
        )
    assert "service_tier" in refused.value.response.text


@pytest.mark.parametrize(
    "unset",
    [
        {"service_tier": None, "reasoning_effort": None, "modalities": None, "audio": None},
        {"prediction": None, "web_search_options": None, "seed": None, "response_format": None},
        {"service_tier": "auto", "modalities": ["text"], "logit_bias": {}},
    ],
)
def test_parameters_left_unset_or_at_their_default_are_not_refused(client: OpenAI, unset: dict[str, Any]) -> None:
    """What the OpenAI SDK sends for `service_tier=None` (null), and OpenAI's defaults, ask nothing of the model."""
    r = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, extra_body=unset
    )
    assert r.choices[0].finish_reason in ("stop", "length")


IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]


def test_an_image_for_the_text_only_model_is_a_400_in_each_shape(server: RunningServer) -> None:
    """Known before any call: a client error, which the OpenAI SDK does not retry (it retries 5xx)."""
    with (
        OpenAI(base_url=server.url + "/v1", api_key=server.key) as openai_client,
        pytest.raises(openai.BadRequestError) as refused,
    ):
        openai_client.chat.completions.create(model="demo", messages=IMAGE, max_tokens=2)  # type: ignore[arg-type]
    error = refused.value.body
    assert error["type"] == "invalid_request_error" and error["param"] == "messages"  # type: ignore[index]
    assert "image_url content is not supported by model 'smol'" in error["message"]  # type: ignore[index]
    headers = {"Authorization": f"Bearer {server.key}"}
    body = {"model": "demo", "messages": IMAGE, "max_tokens": 2}
    adaptive = httpx.post(server.url + "/api/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert adaptive.status_code == 400 and "image_url content is not supported" in adaptive.json()["error"]


@pytest.mark.parametrize("max_tokens", [2049, 10**9, 2**31])
def test_max_tokens_past_the_embedded_models_context_is_openais_400(server: RunningServer, max_tokens: int) -> None:
    """llama.cpp would stop at the context (2048 tokens a slot), or report its int32 overflow past 2**31 - 1."""
    with OpenAI(base_url=server.url + "/v1", api_key=server.key) as alias, pytest.raises(openai.BadRequestError) as e:
        alias.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=max_tokens)
    assert e.value.body == {  # type: ignore[comparison-overlap]
        "message": f"max_tokens is too large: {max_tokens}. This model supports at most 2048 completion tokens, "
        f"whereas you provided {max_tokens}.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "invalid_param",
    }


def test_the_responses_api_on_the_real_model(server: RunningServer) -> None:
    """POST /v1/responses (pydantic-ai's and the Vercel AI SDK's default path) answers from the embedded model in
    OpenAI's shape, blocking and streamed; a reasoning effort, which it cannot honour, is a 400 naming `reasoning`,
    and so is a token limit past its window, naming `max_output_tokens`."""
    with OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0) as client:
        r = client.responses.create(model="demo", input="Say hello.", max_output_tokens=16)
        assert r.status in ("completed", "incomplete") and r.model == "demo/smol"
        assert [item.type for item in r.output] == ["message"] and r.output_text.strip()
        assert r.usage is not None and r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 16
        with client.responses.stream(model="demo", input="Count to 5.", max_output_tokens=24) as stream:
            events = list(stream)
        kinds = [e.type for e in events]
        assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
        assert kinds[-1] in ("response.completed", "response.incomplete")
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text.strip() and events[-1].response.output_text == text  # type: ignore[union-attr]
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="demo", input="Hi", max_output_tokens=16, reasoning={"effort": "low"})
        assert refused.value.param == "reasoning"
        with pytest.raises(openai.BadRequestError) as too_many:  # past the model's window: named as sent
            client.responses.create(model="demo", input="Hi", max_output_tokens=5000)
        assert too_many.value.param == "max_output_tokens"
        assert too_many.value.body["message"].startswith("max_output_tokens is too large: 5000.")  # type: ignore[index]
