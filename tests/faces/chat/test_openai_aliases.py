"""What OpenAI's own clients (the `openai` SDK, and LangChain's ChatOpenAI on top of it) expect of the OpenAI
aliases under /v1, and what the Adaptive face (/api/v1) keeps of its own shape where the two differ.

`RecordingProvider` stands for a model whose output is known ("Echo: " + the last user message) and keeps what
it was sent; `TextOnly` stands for one that reads no images (as the embedded model: tests/integration)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from promptd.faces.chat.wire import OPENAI_ROLES
from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, assert_openai_error, data_blocks, post
from tests.recording import RecordingProvider, TextOnly
from tests.serving import RunningServer, serve_app
from tests.upstream import FakeUpstream, fake_upstream

USER: Any = [{"role": "user", "content": "hello there"}]
ARGS = {"system_prompt_args": {"name": "Ann"}}
PATHS = ["/api/v1", "/v1"]  # the Adaptive API and the plain OpenAI aliases
IMAGE: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]


@pytest.fixture
def blind(tmp_path: Path) -> Iterator[tuple[RunningServer, TextOnly, RecordingProvider]]:
    """The chat test catalog plus `blind` (text only, no fallback) and `rescued` (text only, falling back to
    `echo`, which reads anything)."""
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["providers"]["textonly"] = {"kind": "fake"}
    catalog["models"]["blind"] = {"provider": "textonly", "model": "blind"}
    catalog["models"]["rescued"] = {"provider": "textonly", "model": "blind", "fallbacks": ["echo"]}
    catalog["projects"]["demo"].update(models=["echo", "vectors", "blind", "rescued"], system_prompt_template=None)
    text_only, anything = TextOnly(), RecordingProvider()
    with serve_app(catalog, tmp_path, providers={"fake": anything, "textonly": text_only}) as server:
        yield server, text_only, anything


def test_an_image_for_a_text_only_model_is_a_400_before_any_call(
    blind: tuple[RunningServer, TextOnly, RecordingProvider],
) -> None:
    server, text_only, anything = blind
    with OpenAI(base_url=server.v1, api_key=server.key) as client:  # it would retry a 5xx twice
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="demo/blind", messages=IMAGE)
        assert refused.value.body == {  # OpenAI's shape
            "message": "messages: image_url content is not supported by model 'blind' (nor its fallbacks)",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "unsupported_content",
        }
        r = post(server, "/api/v1/chat/completions", {"model": "demo/blind", "messages": IMAGE})
        assert_adaptive_error(r, 400, "image_url content is not supported by model 'blind'")
        assert text_only.calls == [] and anything.calls == []
        # a fallback that reads images answers instead
        answered = client.chat.completions.create(model="demo/rescued", messages=IMAGE)
        assert answered.choices[0].message.content == "Echo: What is this?" and answered.model == "demo/echo"
        assert text_only.calls == [] and anything.calls[-1].messages[-1].content == IMAGE[0]["content"]
        # text goes to the text-only model as ever
        assert client.chat.completions.create(model="demo/blind", messages=USER).model == "demo/blind"
        assert len(text_only.calls) == 1


# --- streams: logprobs beside the delta, usage null until the usage chunk -----------------------------------------


@pytest.fixture
def upstream_server(tmp_path: Path) -> Iterator[RunningServer]:
    """promptd with `demo/lp` on the OpenAI-compatible fake upstream's `logprobs` scenario (tests/upstream.py)."""
    with fake_upstream() as up:
        catalog = copy.deepcopy(CHAT_CATALOG)
        catalog["providers"]["up"] = {"kind": "openai", "base_url": up.url, "api_key": "sk-test"}
        catalog["models"]["lp"] = {"provider": "up", "model": "logprobs"}
        catalog["projects"]["demo"].update(models=["echo", "vectors", "lp"], system_prompt_template=None)
        with serve_app(catalog, tmp_path) as server:
            yield server


# --- image_url.detail: kept, checked, and sent on to an OpenAI-compatible upstream ---------------------------------


@pytest.fixture
def upstream_and_server(tmp_path: Path) -> Iterator[tuple[FakeUpstream, RunningServer]]:
    """promptd with `demo/up` on the OpenAI-compatible fake upstream's normal answer (tests/upstream.py), which
    keeps every body it was sent."""
    with fake_upstream() as up:
        catalog = copy.deepcopy(CHAT_CATALOG)
        catalog["providers"]["up"] = {"kind": "openai", "base_url": up.url, "api_key": "sk-test"}
        catalog["models"]["up"] = {"provider": "up", "model": "ok"}
        catalog["projects"]["demo"].update(models=["echo", "vectors", "up"], system_prompt_template=None)
        with serve_app(catalog, tmp_path) as server:
            yield up, server


@pytest.mark.parametrize("detail", ["low", "high", "auto"])
def test_an_images_detail_reaches_an_openai_compatible_upstream(
    upstream_and_server: tuple[FakeUpstream, RunningServer], detail: str
) -> None:
    up, server = upstream_and_server
    image = {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": detail}
    sent: Any = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": image}],
        }
    ]
    for path in PATHS:
        with OpenAI(base_url=server.url + path, api_key=server.key, max_retries=0) as client:
            r = client.chat.completions.create(model="demo/up", messages=sent)
        assert r.choices[0].message.content == "Hello from upstream"
        assert up.requests[-1]["body"]["messages"][-1]["content"][1] == {"type": "image_url", "image_url": image}
    # OpenAI's Responses API: an input_image's detail, the same way
    with OpenAI(base_url=server.v1, api_key=server.key, max_retries=0) as client:
        parts: Any = [{"type": "input_image", "image_url": image["url"], "detail": detail}]
        client.responses.create(model="demo/up", input=[{"role": "user", "content": parts}])
    assert up.requests[-1]["body"]["messages"][-1]["content"] == [{"type": "image_url", "image_url": image}]
    # without one, none is sent: the upstream's default applies
    bare: Any = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image["url"]}}]}]
    post(server, "/v1/chat/completions", {"model": "demo/up", "messages": bare})
    assert up.requests[-1]["body"]["messages"][-1]["content"][0]["image_url"] == {"url": image["url"]}


@pytest.mark.parametrize("detail", ["medium", "HIGH", 1, ""])
def test_an_images_detail_other_than_openais_is_a_400_naming_it(
    chat: tuple[RunningServer, RecordingProvider], detail: object
) -> None:
    server, provider = chat
    image = {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": detail}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": image}]}
    ]
    body = {"model": "demo", "messages": messages, **ARGS}
    error = assert_openai_error(
        post(server, "/v1/chat/completions", body), 400, "messages[0].content[1].image_url.detail", "invalid_value"
    )
    assert error["message"] == f"Invalid value: {detail!r}. Supported values are: 'auto', 'low', and 'high'."
    assert_adaptive_error(post(server, "/api/v1/chat/completions", body), 400, "Supported values are: 'auto'")
    parts = [{"type": "input_image", "image_url": image["url"], "detail": detail}]
    refused = post(server, "/v1/responses", {"model": "demo", "input": [{"role": "user", "content": parts}]})
    assert_openai_error(refused, 400, "input[0].content[0].detail", "invalid_value")
    assert provider.calls == []


@pytest.mark.parametrize("path", PATHS)
def test_streamed_logprobs_are_the_choices_not_the_deltas(upstream_server: RunningServer, path: str) -> None:
    with OpenAI(base_url=upstream_server.url + path, api_key=upstream_server.key) as client:
        chunks = list(
            client.chat.completions.create(model="demo/lp", messages=USER, stream=True, logprobs=True)  # type: ignore[call-overload]
        )
    texts = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert [c.choices[0].delta.content for c in texts] == ["Hello", " there"]
    tokens = [[(e.token, e.logprob) for e in c.choices[0].logprobs.content] for c in texts]
    assert tokens == [[("Hello", -0.25)], [(" there", -1.5)]]
    assert all("logprobs" not in (c.choices[0].delta.model_extra or {}) for c in texts)


@pytest.mark.parametrize("path", PATHS)
def test_with_include_usage_every_chunk_but_the_last_has_null_usage(
    chat: tuple[RunningServer, RecordingProvider], path: str
) -> None:
    server, _ = chat
    body = {"model": "demo", "messages": USER, "stream": True, **ARGS}
    asked = post(server, path + "/chat/completions", {**body, "stream_options": {"include_usage": True}})
    *chunks, usage = [json.loads(b) for b in data_blocks(asked.text)[:-1]]
    assert chunks and all(c["usage"] is None for c in chunks)
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 8
    plain = [json.loads(b) for b in data_blocks(post(server, path + "/chat/completions", body).text)[:-1]]
    assert plain and all("usage" not in c for c in plain)


# --- where OpenAI's API and Adaptive's differ: tool-call content, roles ------------------------------------------


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[RunningServer]:
    """The fake provider answering with a tool call (get_weather, a project tool), no text."""
    provider = RecordingProvider(tool_arguments='{"city": "Paris"}')
    with serve_app(CHAT_CATALOG, tmp_path, providers={"fake": provider}) as server:
        yield server


def test_a_tool_call_message_has_null_content_on_the_openai_alias(tools: RunningServer) -> None:
    with OpenAI(base_url=tools.v1, api_key=tools.key) as client:
        r = client.chat.completions.create(model="demo", messages=USER, extra_body=ARGS)
        assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
        chunks = list(client.chat.completions.create(model="demo", messages=USER, stream=True, extra_body=ARGS))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert deltas[0].tool_calls and all(d.content is None for d in deltas)
        with client.chat.completions.stream(model="demo", messages=USER, extra_body=ARGS) as stream:
            final = stream.get_final_completion().choices[0].message  # the SDK's own accumulation
        assert final.content is None and final.tool_calls and final.tool_calls[0].function.name == "get_weather"


def test_a_tool_call_message_keeps_string_content_on_adaptives_face(tools: RunningServer) -> None:
    """Adaptive's SDK requires `content` to be a string (`ChatChoiceMessage.content: str`), deltas too."""
    body = {"model": "demo", "messages": USER, **ARGS}
    message = post(tools, "/api/v1/chat/completions", body).json()["choices"][0]["message"]
    assert message["content"] == "" and message["tool_calls"][0]["function"]["name"] == "get_weather"
    streamed = post(tools, "/api/v1/chat/completions", {**body, "stream": True})
    deltas = [json.loads(b)["choices"][0]["delta"] for b in data_blocks(streamed.text)[:-1]]
    assert deltas and all(d["content"] == "" for d in deltas)


@pytest.mark.parametrize("role", [*sorted(OPENAI_ROLES - {"tool", "function"}), "wizard"])
def test_the_alias_takes_openais_roles_and_adaptives_face_any(
    chat: tuple[RunningServer, RecordingProvider], role: str
) -> None:
    server, provider = chat
    body = {"model": "demo", "messages": [{"role": role, "content": "hi"}], **ARGS}
    r = post(server, "/v1/chat/completions", body)
    if role in OPENAI_ROLES:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].role"
        assert "must be one of assistant, developer, function, system, tool, user" in r.json()["error"]["message"]
    assert post(server, "/api/v1/chat/completions", body).status_code == 200  # free strings, as Adaptive says
    assert provider.calls[-1].messages[-1].role == role


# --- GET /v1/models/{id} --------------------------------------------------------------------------------------------


def test_a_listed_model_is_retrieved_with_the_same_created(
    chat: tuple[RunningServer, RecordingProvider],
) -> None:
    server, _ = chat
    with OpenAI(base_url=server.v1, api_key=server.key) as client:
        listed = {m.id: m.created for m in client.models.list()}
        assert list(listed) == ["demo", "demo/echo", "demo/alt", "demo/vectors"]
        time.sleep(1.1)  # a second later: the time of a request would have changed
        for model_id, created in listed.items():
            model = client.models.retrieve(model_id)
            assert (model.id, model.object, model.owned_by, model.created) == (model_id, "model", "promptd", created)
        assert {m.created for m in client.models.list()} == set(listed.values())  # when the catalog was loaded
        for unknown in ("demo/zzz", "nope"):
            with pytest.raises(openai.NotFoundError) as missing:
                client.models.retrieve(unknown)
            assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
            assert missing.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with OpenAI(base_url=server.url + "/api/v1", api_key=server.key) as adaptive:
        assert adaptive.models.retrieve("demo/echo").created == listed["demo/echo"]
    r = httpx.get(server.url + "/api/v1/models/demo/zzz", headers=server.headers())
    assert_adaptive_error(r, 404, "model 'zzz' does not exist")
    r = httpx.get(server.v1 + "/models/plain/echo", headers=server.headers())  # another project's: 403, OpenAI's shape
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


# --- errors: OpenAI's fields on /v1; Adaptive's {"error": "..."} on /api/v1 ---------------------------------------


def test_a_bad_key_is_openais_invalid_api_key(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = chat
    with OpenAI(base_url=server.v1, api_key="app-nope", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(model="demo", messages=USER)
        assert refused.value.status_code == 401
        assert refused.value.body == {  # type: ignore[comparison-overlap]
            "message": "Access token is invalid",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    assert_adaptive_error(post(server, "/api/v1/chat/completions", {"model": "demo", "messages": USER}, "app-x"), 401)


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "nope"}, 404, "model", "model_not_found"),
        ({"model": "demo/zzz"}, 404, "model", "model_not_found"),
        ({"temperature": "hot"}, 400, "temperature", "invalid_param"),
        ({"max_tokens": 5.5}, 400, "max_tokens", "invalid_param"),
        ({"temperature": 2.5}, 400, "temperature", "invalid_param"),
        ({"temperature": -0.5}, 400, "temperature", "invalid_param"),
        ({"top_p": 1.5}, 400, "top_p", "invalid_param"),
        ({"messages": [{"content": "hi"}]}, 400, "messages[0].role", "invalid_param"),
        ({"seed": 2**64}, 400, "seed", "invalid_param"),
    ],
)
def test_a_refused_request_names_its_param_and_code(
    chat: tuple[RunningServer, RecordingProvider], body: dict[str, Any], status: int, param: str, code: str
) -> None:
    server, provider = chat
    sent = {"model": "demo", "messages": USER, **ARGS, **body}
    r = post(server, "/v1/chat/completions", sent)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert_adaptive_error(post(server, "/api/v1/chat/completions", sent), status)  # the same, in Adaptive's shape
    assert provider.calls == []


def test_an_upstream_rate_limit_is_typed_as_one(tmp_path: Path) -> None:
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["models"]["echo"]["retry"] = {"attempts": 0}
    catalog["projects"]["demo"]["system_prompt_template"] = None
    with (
        serve_app(catalog, tmp_path, providers={"fake": RecordingProvider(fail="rate_limited")}) as server,
        OpenAI(base_url=server.v1, api_key=server.key, max_retries=0) as client,
        pytest.raises(openai.RateLimitError) as limited,
    ):
        client.chat.completions.create(model="demo", messages=USER)
    assert limited.value.body["type"] == "requests" and limited.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
