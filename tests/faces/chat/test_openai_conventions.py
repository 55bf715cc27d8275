"""Where promptd follows what OpenAI's API really does (checked against its answers as clients quote them), and
where Adaptive's face keeps its own rules: usage for `n` choices, bare model names, `server_error`, the minimum
and maximum of `max_tokens`, OpenAI's 404 for its URLs promptd does not serve, `stream_options` without a
stream, `logit_bias`.

`RecordingProvider` stands for a model whose output is known ("Echo: " + the last user message) and keeps what
it was sent; `Windowed` for one whose output window is known (as the embedded model's context)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post, rows
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app

USER: Any = [{"role": "user", "content": "hello there"}]
ARGS = {"system_prompt_args": {"name": "Ann"}}


# --- usage for n choices: the prompt once, as OpenAI counts it; the cost as spent ------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_count_the_prompt_once_and_cost_what_was_spent(
    chat: tuple[RunningServer, RecordingProvider], stream: bool
) -> None:
    server, provider = chat
    with OpenAI(base_url=server.v1, api_key=server.key) as client:
        one = client.chat.completions.create(model="demo", messages=USER, extra_body=ARGS).model_dump()["usage"]
        if stream:
            chunks = client.chat.completions.create(
                model="demo", messages=USER, n=3, stream=True, stream_options={"include_usage": True}, extra_body=ARGS
            )
            three = [c for c in chunks if c.usage is not None][-1].model_dump()["usage"]
        else:
            three = client.chat.completions.create(model="demo", messages=USER, n=3, extra_body=ARGS).model_dump()[
                "usage"
            ]
    assert len(provider.calls) == 4  # n choices are n upstream calls
    assert three["prompt_tokens"] == one["prompt_tokens"] > 0  # as OpenAI counts it: once
    assert three["completion_tokens"] == 3 * one["completion_tokens"]
    assert three["total_tokens"] == three["prompt_tokens"] + three["completion_tokens"]
    # the price is what the three calls cost: the prompt was paid three times, and so were budgets charged
    assert Decimal(three["prompt_price"]) == 3 * Decimal(one["prompt_price"]) > 0
    assert Decimal(three["total_price"]) == 3 * Decimal(one["total_price"])
    stored = rows(server, expect=4)
    assert [r["prompt_tokens"] for r in stored] == [one["prompt_tokens"]] * 4  # each call's record: what it spent


# --- a bare model name resolves in the key's project -------------------------------------------------------------


@pytest.fixture
def named(tmp_path: Path) -> Iterator[tuple[RunningServer, RecordingProvider]]:
    """The chat catalog, plus a project `alt` (a name that is also a model of `demo`)."""
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["projects"]["alt"] = {"mode": "chat", "models": ["echo"]}
    provider = RecordingProvider()
    with serve_app(catalog, tmp_path / "data", providers={"fake": provider}) as server:
        yield server, provider


def test_a_bare_model_name_resolves_in_the_keys_project(named: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = named
    for path in ("/v1", "/api/v1"):
        with OpenAI(base_url=server.url + path, api_key=server.key) as client:
            r = client.chat.completions.create(model="echo", messages=USER, extra_body=ARGS)
            assert r.model == "demo/echo" and r.choices[0].message.content == "Echo: hello there"
            assert client.models.retrieve("echo").id == "echo"
            assert client.embeddings.create(model="vectors", input="hi").model == "demo/vectors"
            with pytest.raises(openai.NotFoundError) as unknown:  # a name the key cannot call: the choices named
                client.chat.completions.create(model="gpt-4o", messages=USER, extra_body=ARGS)
            assert (
                "this key's project 'demo' has: demo, demo/echo, demo/alt, demo/vectors" in unknown.value.response.text
            )
    assert provider.calls[0].model == "echo"
    r = post(server, "/v1/chat/completions", {"model": "gpt-4o", "messages": USER, **ARGS})
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["param"]) == (404, "model_not_found", "model")
    # `alt` is a model of demo and another project: ambiguous, so neither is guessed
    r = post(server, "/v1/chat/completions", {"model": "alt", "messages": USER, **ARGS})
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["param"]) == (400, "ambiguous_model", "model")
    assert "'demo/alt'" in error["message"]
    assert_adaptive_error(post(server, "/api/v1/chat/completions", {"model": "alt", "messages": USER}), 400)
    assert post(server, "/v1/chat/completions", {"model": "demo/alt", "messages": USER, **ARGS}).status_code == 200
    assert post(server, "/v1/chat/completions", {"model": "demo", "messages": USER, **ARGS}).status_code == 200


# --- a server error is OpenAI's server_error ---------------------------------------------------------------------


def test_a_5xx_is_typed_server_error(tmp_path: Path) -> None:
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["models"]["echo"]["retry"] = {"attempts": 0}
    catalog["projects"]["demo"]["system_prompt_template"] = None
    with (
        serve_app(catalog, tmp_path, providers={"fake": RecordingProvider(fail="unavailable")}) as server,
        OpenAI(base_url=server.v1, api_key=server.key, max_retries=0) as client,
        pytest.raises(openai.InternalServerError) as failed,
    ):
        client.chat.completions.create(model="demo", messages=USER)
    assert failed.value.status_code == 502
    assert failed.value.body["type"] == "server_error"  # type: ignore[index]  # OpenAI's word, not Anthropic's api_error


# --- max_tokens: at least 1 on the alias (0 is Adaptive's default), at most what the model can give --------------


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -1])
def test_max_tokens_below_one_is_openais_400(
    chat: tuple[RunningServer, RecordingProvider], field: str, value: int
) -> None:
    server, provider = chat
    with OpenAI(base_url=server.v1, api_key=server.key) as client, pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="demo", messages=USER, extra_body={field: value, **ARGS})
    assert refused.value.body == {
        "message": f"Invalid '{field}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
        "type": "invalid_request_error",
        "param": field,
        "code": "integer_below_min_value",
    }
    adaptive = post(server, "/api/v1/chat/completions", {"model": "demo", "messages": USER, field: value, **ARGS})
    if value == 0:  # Adaptive's schema: `max_tokens` int32 >= 0; 0 is the default
        assert adaptive.status_code == 200, adaptive.text
        assert provider.calls[-1].max_tokens is None
    else:
        assert_adaptive_error(adaptive, 400, "Expected a value >= 0")


class Windowed(RecordingProvider):
    """Stands for a model whose output window is known (the embedded model declares its context)."""

    max_output_tokens = 64


@pytest.fixture
def windowed(tmp_path: Path) -> Iterator[tuple[RunningServer, Windowed, RecordingProvider]]:
    """`small` (a 64-token window), `spilling` (the same, falling back to `echo`, whose window is unknown), in a
    project with a token limit, and the chat catalog's `echo`."""
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["providers"]["window"] = {"kind": "fake"}
    catalog["models"]["small"] = {"provider": "window", "model": "small"}
    catalog["models"]["spilling"] = {"provider": "window", "model": "small", "fallbacks": ["echo"]}
    catalog["projects"]["demo"].update(
        models=["echo", "vectors", "small", "spilling"], system_prompt_template=None, limits={"tpm": 1000}
    )
    small, anything = Windowed(), RecordingProvider()
    with serve_app(catalog, tmp_path / "data", providers={"fake": anything, "window": small}) as server:
        yield server, small, anything


def test_max_tokens_past_the_models_window_is_openais_400(
    windowed: tuple[RunningServer, Windowed, RecordingProvider],
) -> None:
    server, small, anything = windowed
    with OpenAI(base_url=server.v1, api_key=server.key) as client:
        for field in ("max_tokens", "max_completion_tokens"):
            with pytest.raises(openai.BadRequestError) as refused:  # before admission: not the tpm's 429
                client.chat.completions.create(model="demo/small", messages=USER, extra_body={field: 10**9})
            assert refused.value.body == {
                "message": f"{field} is too large: 1000000000. This model supports at most 64 completion tokens, "
                "whereas you provided 1000000000.",
                "type": "invalid_request_error",
                "param": field,
                "code": "invalid_param",
            }
        body = {"model": "demo/small", "messages": USER, "max_tokens": 65}
        assert_adaptive_error(post(server, "/api/v1/chat/completions", body), 400, "at most 64 completion tokens")
        assert small.calls == [] and anything.calls == []
        assert client.chat.completions.create(model="demo/small", messages=USER, max_tokens=64).model == "demo/small"
        # a fallback that can give them answers instead
        spilled = client.chat.completions.create(model="demo/spilling", messages=USER, max_tokens=500)
        assert spilled.model == "demo/echo" and len(small.calls) == 1 and anything.calls[-1].max_tokens == 500


# --- OpenAI's URLs that promptd does not serve: OpenAI's 404; Dify's keep Dify's ---------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/responses/resp_abc"),  # retrieving a stored response: not served
        ("GET", "/v1/completions"),  # served for POST only
        ("GET", "/v1/assistants"),
        ("POST", "/v1/images/generations"),
        ("GET", "/v1/audio/speech"),  # served for POST only
        ("GET", "/v1/files"),
        ("GET", "/v1/files/file-abc/content"),
        ("POST", "/v1/moderations"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/chat/completions"),  # a wrong method on an alias: an unknown URL too
        ("DELETE", "/v1/models"),
    ],
)
def test_openais_unserved_urls_are_openais_404(
    chat: tuple[RunningServer, RecordingProvider], method: str, path: str
) -> None:
    server, _ = chat
    r = httpx.request(method, server.url + path, headers=server.headers(), json={} if method == "POST" else None)
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "error": {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_difys_and_unknown_paths_keep_difys_404_and_the_sdk_reads_openais(
    chat: tuple[RunningServer, RecordingProvider],
) -> None:
    server, _ = chat
    for path in ("/v1/foo", "/v1/apps/x", "/v1/completion-messages/x/y"):
        r = httpx.post(server.url + path, headers=server.headers(), json={})
        assert r.status_code == 404 and r.json()["code"] == "not_found" and r.json()["status"] == 404, path
    with (
        OpenAI(base_url=server.v1, api_key=server.key, max_retries=0) as client,
        pytest.raises(openai.NotFoundError) as missing,
    ):
        client.moderations.create(model="demo", input="hi")  # what the SDK makes of OpenAI's 404
    assert missing.value.body == {  # type: ignore[comparison-overlap]
        "message": "Invalid URL (POST /v1/moderations)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


# --- stream_options without a stream; logit_bias -----------------------------------------------------------------


def test_stream_options_without_a_stream_is_openais_400(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = chat
    body = {"model": "demo", "messages": USER, "stream_options": {"include_usage": True}, **ARGS}
    for stream in ({}, {"stream": False}):
        r = post(server, "/v1/chat/completions", {**body, **stream})
        assert r.status_code == 400 and r.json()["error"] == {
            "message": "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "type": "invalid_request_error",
            "param": "stream_options",
            "code": "invalid_param",
        }
    assert provider.calls == []
    assert post(server, "/api/v1/chat/completions", body).status_code == 200  # Adaptive's schema allows it
    assert post(server, "/v1/chat/completions", {**body, "stream_options": None}).status_code == 200  # unset


@pytest.mark.parametrize(
    ("bias", "message"),
    [
        ({"AI": 5}, "Invalid key in 'logit_bias': AI. You should only be submitting non-negative integers."),
        ({"-3": 5}, "Invalid key in 'logit_bias': -3. You should only be submitting non-negative integers."),
        ({"15043": 101}, "Invalid 'logit_bias[15043]': expected a number from -100 to 100, but got 101 instead."),
        ({"15043": "up"}, "Invalid 'logit_bias[15043]': expected a number from -100 to 100, but got 'up' instead."),
        ([1, 2], "Invalid 'logit_bias': expected an object of token ids to numbers."),
    ],
)
def test_a_logit_bias_openai_refuses_is_refused(
    chat: tuple[RunningServer, RecordingProvider], bias: Any, message: str
) -> None:
    server, provider = chat
    body = {"model": "demo", "messages": USER, "logit_bias": bias, **ARGS}
    r = post(server, "/v1/chat/completions", body)
    assert r.status_code == 400 and r.json()["error"]["message"] == message
    assert r.json()["error"]["param"] == "logit_bias"
    assert_adaptive_error(post(server, "/api/v1/chat/completions", body), 400, message)
    assert provider.calls == []
    ok = post(server, "/v1/chat/completions", {**body, "logit_bias": {"15043": -100, "50256": 2.5}})
    assert ok.status_code == 200 and provider.calls[-1].extra["logit_bias"] == {"15043": -100, "50256": 2.5}
