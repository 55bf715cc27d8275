"""Every OpenAI generation parameter a client sends reaches the model, under its own name, through the chat
face and the OpenAI aliases (the OpenAI SDK drives them). `RecordingProvider` stands for an OpenAI-compatible
model that takes every parameter and keeps what it was sent; the embedded model shows one that honours only
some (tests/integration/test_local_chat.py enforces structured output on it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.faces.chat.helpers import CHAT_CATALOG
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app

USER = [{"role": "user", "content": "hello there"}]
ARGS = {"system_prompt_args": {"name": "Ann"}}


@pytest.mark.parametrize("path", ["/api/v1", "/v1"])
def test_every_generation_parameter_reaches_the_model(chat: tuple[RunningServer, RecordingProvider], path: str) -> None:
    server, provider = chat
    client = OpenAI(base_url=server.url + path, api_key=server.key)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    client.chat.completions.create(
        model="demo",
        messages=USER,  # type: ignore[arg-type]
        seed=7,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        presence_penalty=0.5,
        frequency_penalty=0.2,
        logit_bias={"15": -100},
        logprobs=True,
        top_logprobs=2,
        reasoning_effort="low",
        service_tier="auto",
        max_completion_tokens=40,
        extra_body={**ARGS, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1},
    )
    sent = provider.calls[-1]
    assert sent.extra == {
        "seed": 7,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        "presence_penalty": 0.5,
        "frequency_penalty": 0.2,
        "logit_bias": {"15": -100},
        "logprobs": True,
        "top_logprobs": 2,
        "reasoning_effort": "low",
        "service_tier": "auto",
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
    }
    assert sent.max_tokens == 40 and sent.token_param == "max_completion_tokens"


def test_the_answer_names_the_model_that_answered(tmp_path: Path) -> None:
    catalog = {
        **CHAT_CATALOG,
        "providers": {"fake": {"kind": "fake"}, "down": {"kind": "fake", "fail": "unavailable"}},
        "models": {
            **CHAT_CATALOG["models"],
            "flaky": {"provider": "down", "model": "x", "fallbacks": ["echo"], "retry": {"attempts": 0}},
        },
    }
    catalog["projects"] = {
        **catalog["projects"],
        "demo": {**catalog["projects"]["demo"], "models": ["flaky", "echo", "vectors"]},
    }
    with serve_app(catalog, tmp_path / "data") as server:
        body = {"model": "demo/flaky", "messages": USER, **ARGS}
        r = httpx.post(server.url + "/api/v1/chat/completions", json=body, headers=server.headers(), timeout=30)
        assert r.status_code == 200 and r.json()["model"] == "demo/echo"
        assert r.headers["x-promptd-model"] == "echo" and r.headers["x-promptd-attempt"] == "2"
        chunks = []
        with httpx.stream(
            "POST", server.url + "/api/v1/chat/completions", json={**body, "stream": True}, headers=server.headers()
        ) as streamed:
            chunks = [line for line in streamed.iter_lines() if line.startswith("data: {")]
        assert chunks and all('"model":"demo/echo"' in c for c in chunks)


@pytest.mark.parametrize("path", ["/api/v1", "/v1"])
def test_a_null_parameter_is_unset_and_not_sent_on(chat: tuple[RunningServer, RecordingProvider], path: str) -> None:
    """The OpenAI SDK sends null for a parameter given as None (`service_tier=None`): in OpenAI's API that is
    the parameter left out, so it does not reach the model (nor, on a provider that takes only some, refuse it:
    tests/providers/test_anthropic.py, tests/integration/test_local_chat.py)."""
    server, provider = chat
    with OpenAI(base_url=server.url + path, api_key=server.key) as client:
        client.chat.completions.create(
            model="demo",
            messages=USER,  # type: ignore[arg-type]
            seed=None,
            service_tier=None,
            reasoning_effort=None,
            modalities=None,
            audio=None,
            prediction=None,
            web_search_options=None,
            extra_body={**ARGS, "top_k": None},
        )
    assert provider.calls[-1].extra == {}


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 1.5, True, "7"])
def test_a_seed_beyond_int64_is_a_400_naming_it(chat: tuple[RunningServer, RecordingProvider], seed: object) -> None:
    server, provider = chat
    with OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="demo", messages=USER, extra_body={**ARGS, "seed": seed})  # type: ignore[arg-type]
        assert refused.value.body["param"] == "seed"  # type: ignore[index]
        assert provider.calls == []
        client.chat.completions.create(model="demo", messages=USER, seed=2**63 - 1, extra_body=ARGS)  # type: ignore[arg-type]
    assert provider.calls[-1].extra == {"seed": 2**63 - 1}
