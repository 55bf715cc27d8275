"""The Anthropic adapter against a fake Messages API over real HTTP (it stands for api.anthropic.com)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from promptd.catalog.schema import AnthropicProviderConfig
from promptd.errors import ProviderBadRequest, ProviderRateLimited, ProviderUnavailable
from promptd.providers.anthropic import AnthropicProvider, to_anthropic
from promptd.types import Finish, Message, ProviderCall, ProviderEvent, TextDelta, ToolCallDelta, Usage
from tests.faces.chat.helpers import rows
from tests.serving import serve_app, serve_in_thread


def sse(*events: dict[str, Any]) -> list[bytes]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


TEXT = sse(
    {"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Bonjour"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " !"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
    {"type": "message_stop"},
)
TOOL = sse(
    {"type": "message_start", "message": {"usage": {"input_tokens": 20, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me look."}},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ' "Paris"}'}},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
)
STRUCTURED = sse(  # Anthropic answering through the forced output tool
    {"type": "message_start", "message": {"usage": {"input_tokens": 30, "output_tokens": 1}}},
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "toolu_9", "name": "structured_output", "input": {}},
    },
    {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ' "Paris"}'}},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
)
OVERLOADED = TEXT[:3] + sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


class FakeAnthropic:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        model = body["model"]
        if model == "busy":
            return JSONResponse(
                {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                status_code=429,
                headers={"retry-after": "3"},
            )
        if model == "overloaded":
            return JSONResponse({"type": "error", "error": {"type": "overloaded_error", "message": "x"}}, 529)
        if model == "long":
            return JSONResponse(
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens"},
                },
                400,
            )
        events = {"tool": TOOL, "structured": STRUCTURED, "overloaded-mid": OVERLOADED, "cut": TEXT[:4]}.get(
            model, TEXT
        )

        async def gen() -> AsyncIterator[bytes]:
            for e in events:
                yield e

        return StreamingResponse(gen(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic()
    with serve_in_thread(Starlette(routes=[Route("/v1/messages", fake.messages, methods=["POST"])])) as url:
        yield fake, url


@pytest.fixture
async def provider(upstream: tuple[FakeAnthropic, str]) -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider("claude", AnthropicProviderConfig(kind="anthropic", base_url=upstream[1], api_key="sk-ant"))
    yield p
    await p.aclose()


def call(model: str, **kw: Any) -> ProviderCall:
    return ProviderCall(model=model, messages=[Message("system", "Be brief."), Message("user", "Salut")], **kw)


async def collect(p: AnthropicProvider, c: ProviderCall) -> list[ProviderEvent]:
    return [e async for e in p.stream(c)]


async def test_text_streams_and_usage(provider: AnthropicProvider, upstream: tuple[FakeAnthropic, str]) -> None:
    events = await collect(provider, call("claude-x", stop=["END"], temperature=1.5))
    assert events == [TextDelta("Bonjour"), TextDelta(" !"), Finish("stop", Usage(12, 3))]
    sent = upstream[0].requests[-1]
    assert sent["headers"]["x-api-key"] == "sk-ant" and sent["headers"]["anthropic-version"] == "2023-06-01"
    body = sent["body"]
    assert body["system"] == "Be brief." and body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Salut"}]}
    ]
    assert body["stop_sequences"] == ["END"] and body["max_tokens"] == 1024 and body["temperature"] == 1.0


async def test_tool_use_comes_back_as_openai_tool_call_deltas(provider: AnthropicProvider) -> None:
    events = await collect(provider, call("tool"))
    assert events == [
        TextDelta("Let me look."),
        ToolCallDelta(0, "toolu_1", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city":'),
        ToolCallDelta(0, None, None, ' "Paris"}'),
        Finish("tool_calls", Usage(20, 9)),
    ]


async def test_structured_output_is_a_forced_tool_whose_input_is_the_answer(
    provider: AnthropicProvider, upstream: tuple[FakeAnthropic, str]
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    events = await collect(provider, call("structured", extra={"response_format": response_format}))
    assert events == [TextDelta('{"city":'), TextDelta(' "Paris"}'), Finish("stop", Usage(30, 7))]
    body = upstream[0].requests[-1]["body"]
    assert body["tools"] == [
        {"name": "structured_output", "description": "Reply with this JSON.", "input_schema": schema}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "structured_output"}


def test_openai_parameters_are_translated_to_anthropics_forms() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    extra = {"top_k": 5, "parallel_tool_calls": False, "tool_choice": "required"}
    body = to_anthropic(call("m", tools=tools, stop=["###"], extra=extra), 1024)
    assert body["top_k"] == 5 and body["stop_sequences"] == ["###"]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    json_object = to_anthropic(call("m", extra={"response_format": {"type": "json_object"}}), 1024)
    assert json_object["tools"][0]["input_schema"] == {"type": "object"}
    assert "tools" not in to_anthropic(call("m", extra={"response_format": {"type": "text"}}), 1024)
    assert AnthropicProvider.accepts == {"tool_choice", "parallel_tool_calls", "top_k", "response_format"}


def test_tools_and_tool_results_go_out_in_anthropics_shape() -> None:
    assistant = Message(
        "assistant",
        "",
        tool_calls=[
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    )
    c = ProviderCall(
        model="m",
        messages=[
            Message(
                "user",
                [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            ),
            assistant,
            Message("tool", "18C and sunny", tool_call_id="toolu_1"),
        ],
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "w", "parameters": {"type": "object"}},
            }
        ],
        extra={"tool_choice": "required"},
    )
    body = to_anthropic(c, 100)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"}]},
    ]
    assert body["tools"] == [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "any"} and "system" not in body


@pytest.mark.parametrize(
    ("model", "error", "code"),
    [
        ("busy", ProviderRateLimited, "provider_rate_limited"),
        ("overloaded", ProviderUnavailable, "provider_unavailable"),
        ("long", ProviderBadRequest, "context_length_exceeded"),
        ("overloaded-mid", ProviderUnavailable, "provider_unavailable"),
        ("cut", ProviderUnavailable, "provider_unavailable"),
    ],
)
async def test_failures_are_translated(provider: AnthropicProvider, model: str, error: type, code: str) -> None:
    with pytest.raises(error) as info:
        await collect(provider, call(model))
    assert info.value.code == code
    if model == "busy":
        assert info.value.retry_after == 3.0


def claude_catalog(url: str, model: str) -> dict[str, Any]:
    """A chat project whose one model is `model` at the fake Anthropic upstream at `url`."""
    return {
        "providers": {"claude": {"kind": "anthropic", "base_url": url, "api_key": "sk-ant"}},
        "models": {"sonnet": {"provider": "claude", "model": model}},
        "projects": {
            "demo": {
                "mode": "chat",
                "models": ["sonnet"],
                "tools": {"get_weather": {"description": "Weather", "parameters": {"type": "object"}}},
            }
        },
    }


def test_the_chat_face_serves_anthropic_models_with_tools(upstream: tuple[FakeAnthropic, str], tmp_path: Any) -> None:
    with serve_app(claude_catalog(upstream[1], "tool"), tmp_path) as server:
        client = OpenAI(base_url=server.url + "/api/v1", api_key=server.key)
        r = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Weather in Paris?"}])
        choice = r.choices[0]
        assert choice.message.content == "Let me look." and choice.finish_reason == "tool_calls"
        [tc] = choice.message.tool_calls or []
        assert tc.id == "toolu_1" and tc.function.name == "get_weather"
        assert json.loads(tc.function.arguments) == {"city": "Paris"}
        assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (20, 9)
        assert upstream[0].requests[-1]["body"]["tools"][0]["name"] == "get_weather"


@pytest.mark.parametrize("path", ["/api/v1", "/v1"])
def test_unset_and_default_parameters_are_no_reason_to_refuse_anthropic(
    upstream: tuple[FakeAnthropic, str], tmp_path: Any, path: str
) -> None:
    """Anthropic takes no `seed`, `logprobs` or penalties: a call that sends them null or at OpenAI's default asks
    for nothing it cannot do, and is served (without them); a real value is still a 400 naming it."""
    fake, url = upstream
    with (
        serve_app(claude_catalog(url, "text"), tmp_path) as server,
        OpenAI(base_url=server.url + path, api_key=server.key, max_retries=0) as client,
    ):
        hi: Any = [{"role": "user", "content": "Salut"}]
        r = client.chat.completions.create(
            model="demo",
            messages=hi,
            seed=None,
            logprobs=False,
            frequency_penalty=0,
            presence_penalty=0,
            service_tier="auto",
            modalities=["text"],
            response_format={"type": "text"},
            logit_bias={},
        )
        assert r.choices[0].message.content == "Bonjour !"
        sent = fake.requests[-1]["body"]
        assert not {"seed", "logprobs", "frequency_penalty", "presence_penalty", "service_tier"} & set(sent)
        for asked in ({"frequency_penalty": 0.5}, {"logprobs": True}, {"seed": 7}, {"service_tier": "flex"}):
            with pytest.raises(openai.BadRequestError) as refused:
                client.chat.completions.create(model="demo", messages=hi, extra_body=asked)
            assert f"{next(iter(asked))}: not supported by model 'sonnet'" in refused.value.response.text


def _image(detail: str | None) -> Any:
    image = {"url": "data:image/png;base64,AAAA", **({"detail": detail} if detail else {})}
    return [{"role": "user", "content": [{"type": "text", "text": "What?"}, {"type": "image_url", "image_url": image}]}]


ANTHROPIC_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}


def test_an_images_detail_anthropic_cannot_give_is_a_400_naming_it(
    upstream: tuple[FakeAnthropic, str], tmp_path: Any
) -> None:
    """Anthropic has no `detail`: it sees every image at its full resolution, what `high` asks and `auto` leaves to
    it (served, the image block as ever); the cheap view `low` asks for it cannot give: a 400 naming
    `image_url.detail` on each API, in its shape, before any call."""
    fake, url = upstream
    with (
        serve_app(claude_catalog(url, "text"), tmp_path) as server,
        OpenAI(base_url=server.v1, api_key=server.key, max_retries=0) as client,
    ):
        for detail in (None, "auto", "high"):
            r = client.chat.completions.create(model="demo", messages=_image(detail))
            assert r.choices[0].message.content == "Bonjour !"
            assert fake.requests[-1]["body"]["messages"][-1]["content"][-1] == ANTHROPIC_IMAGE
        served = len(fake.requests)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="demo", messages=_image("low"))
        assert refused.value.body == {  # type: ignore[comparison-overlap]
            "message": "image_url.detail: not supported by model 'sonnet' (nor its fallbacks); an operator may drop "
            "such parameters with drop_params in the catalog",
            "type": "invalid_request_error",
            "param": "image_url.detail",
            "code": "invalid_param",
        }
        adaptive = httpx.post(
            server.url + "/api/v1/chat/completions",
            json={"model": "demo", "messages": _image("low")},
            headers=server.headers(),
        )
        assert adaptive.status_code == 400 and adaptive.json() == {"error": refused.value.body["message"]}  # type: ignore[index]
        parts = [{"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]
        with pytest.raises(openai.BadRequestError) as responses:
            client.responses.create(model="demo", input=[{"role": "user", "content": parts}])  # type: ignore[list-item]
        assert responses.value.body["param"] == "input_image.detail"  # type: ignore[index]
        assert len(fake.requests) == served  # no call was made


def test_an_operator_may_drop_an_images_detail_for_anthropic(
    upstream: tuple[FakeAnthropic, str], tmp_path: Any
) -> None:
    """With `image_url.detail` in the provider's `drop_params`, a `low` image goes to Anthropic as any image, and
    the record's attempt says it was dropped."""
    fake, url = upstream
    catalog = claude_catalog(url, "text")
    catalog["providers"]["claude"]["drop_params"] = ["image_url.detail"]
    with (
        serve_app(catalog, tmp_path) as server,
        OpenAI(base_url=server.v1, api_key=server.key, max_retries=0) as client,
    ):
        r = client.chat.completions.create(model="demo", messages=_image("low"))
        assert r.choices[0].message.content == "Bonjour !"
        assert fake.requests[-1]["body"]["messages"][-1]["content"][-1] == ANTHROPIC_IMAGE
        [row] = rows(server, expect=1)
        assert row["attempts"][0]["dropped_params"] == ["image_url.detail"]
