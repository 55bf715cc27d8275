"""OpenAI's legacy completions (`POST /v1/completions`) through the OpenAI SDK's `client.completions`: what
LlamaIndex's OpenAILike and litellm's `text_completion` call by default. Each prompt is one user message to the
project's chat model, under the chat face's engine call (templates, limits, moderation, records) exactly as for
/v1/chat/completions; the answer is in the `text_completion` shape.

`RecordingProvider` stands for a model whose output is known ("Echo: " + the last user message, one word a token)
and keeps what it was sent."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from promptd.domain.limits import Limits
from promptd.errors import ProviderUnavailable
from promptd.types import ProviderCall, ProviderEvent, TextDelta
from tests.faces.chat.helpers import CHAT_CATALOG, assert_openai_error, data_blocks, post, rows
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app

#: the chat test catalog without its system-prompt template and project tools: the prompt is all the model gets
PLAIN: dict[str, Any] = copy.deepcopy(CHAT_CATALOG)
PLAIN["projects"]["demo"].update(system_prompt_template=None)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, RecordingProvider]]:
    provider = RecordingProvider()
    with serve_app(PLAIN, tmp_path / "data", providers={"fake": provider}) as server:
        yield server, provider


def sdk(server: RunningServer, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key=key or server.key, max_retries=0)


# --- the answer ---------------------------------------------------------------------------------------------------


def test_a_blocking_completion_in_openais_shape(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served
    with sdk(server) as client:
        c = client.completions.create(model="demo", prompt="hello there", max_tokens=40, user="ann")
    assert c.object == "text_completion" and c.id.startswith("cmpl-") and c.model == "demo/echo"
    assert c.created > 0
    [choice] = c.choices
    assert (choice.text, choice.index, choice.logprobs, choice.finish_reason) == ("Echo: hello there", 0, None, "stop")
    assert c.usage is not None
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (2, 3, 5)
    # the prompt is the user's message to the chat model; the project's tools are not sent
    [sent] = provider.calls
    assert [(m.role, m.content) for m in sent.messages] == [("user", "hello there")]
    assert sent.max_tokens == 40 and sent.tools is None
    [row] = rows(server, expect=1)  # one record, as for a chat completion: the same engine call
    assert row["id"].replace("-", "") == c.id.removeprefix("cmpl-")
    assert (row["face"], row["user"], row["answer"]) == ("chat", "ann", "Echo: hello there")


def test_without_max_tokens_the_answer_is_openais_16_tokens(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served
    words = " ".join(f"w{i}" for i in range(30))
    with sdk(server) as client:
        c = client.completions.create(model="demo", prompt=words)
    assert provider.calls[-1].max_tokens == 16
    assert c.choices[0].finish_reason == "length" and len(c.choices[0].text.split()) == 16


def test_a_stream_is_text_completion_chunks_then_done(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = served
    with sdk(server) as client:
        chunks = list(
            client.completions.create(
                model="demo", prompt="hello there", stream=True, stream_options={"include_usage": True}
            )
        )
    *texts, usage = chunks
    assert all(c.object == "text_completion" and c.id == chunks[0].id and c.model == "demo/echo" for c in chunks)
    assert "".join(c.choices[0].text for c in texts) == "Echo: hello there"
    assert [c.choices[0].finish_reason for c in texts][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in texts[:-1])
    assert all(c.usage is None and c.choices[0].index == 0 and c.choices[0].logprobs is None for c in texts)
    assert usage.choices == [] and usage.usage is not None and usage.usage.total_tokens == 5
    raw = post(server, "/v1/completions", {"model": "demo", "prompt": "hi", "stream": True})
    blocks = data_blocks(raw.text)
    assert blocks[-1] == "[DONE]" and all("usage" not in json.loads(b) for b in blocks[:-1])


def test_n_and_several_prompts_are_choices_numbered_as_openais(
    served: tuple[RunningServer, RecordingProvider],
) -> None:
    """Choice `index` is prompt * n + choice; each prompt is a chat call of its own (and its own records), in one
    session; usage counts each prompt once."""
    server, provider = served
    with sdk(server) as client:
        c = client.completions.create(model="demo", prompt=["one", "two words"], n=2, best_of=2)
        assert [(x.index, x.text) for x in c.choices] == [
            (0, "Echo: one"),
            (1, "Echo: one"),
            (2, "Echo: two words"),
            (3, "Echo: two words"),
        ]
        assert c.usage is not None and (c.usage.prompt_tokens, c.usage.completion_tokens) == (3, 10)
        streamed = list(client.completions.create(model="demo", prompt=["one", "two words"], n=2, stream=True))
    texts: dict[int, str] = {}
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {0: "Echo: one", 1: "Echo: one", 2: "Echo: two words", 3: "Echo: two words"}
    assert len(provider.calls) == 8
    stored = rows(server, expect=8)
    assert len({r["session_id"] for r in stored[:4]}) == 1  # the blocking call's four choices: one session


def test_every_generation_parameter_reaches_the_model(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served
    with sdk(server) as client:
        client.completions.create(
            model="demo",
            prompt="hello there",
            max_tokens=20,
            temperature=0.3,
            top_p=0.9,
            stop=["END"],
            presence_penalty=0.5,
            frequency_penalty=0.2,
            seed=7,
            logit_bias={"15": -100},
            echo=False,
            extra_body={"top_k": 20},
        )
    sent = provider.calls[-1]
    assert (sent.max_tokens, sent.temperature, sent.top_p, sent.stop) == (20, 0.3, 0.9, ["END"])
    assert sent.extra == {
        "presence_penalty": 0.5,
        "frequency_penalty": 0.2,
        "seed": 7,
        "logit_bias": {"15": -100},
        "top_k": 20,
    }


def test_models_are_named_as_on_the_chat_face_and_templates_apply(
    chat: tuple[RunningServer, RecordingProvider],
) -> None:
    server, provider = chat
    with sdk(server) as client:
        for model, answered in (("demo", "demo/echo"), ("demo/alt", "demo/alt"), ("alt", "demo/alt")):
            c = client.completions.create(model=model, prompt="hi", extra_body={"system_prompt_args": {"name": "Ann"}})
            assert c.model == answered
        assert [(m.role, m.content) for m in provider.calls[-1].messages] == [
            ("system", "You help Ann."),
            ("user", "hi"),
        ]
        with pytest.raises(openai.BadRequestError) as missing:  # the template's argument is required, as on chat
            client.completions.create(model="demo", prompt="hi")
        assert "name" in missing.value.message
        with pytest.raises(openai.NotFoundError) as unknown:
            client.completions.create(model="demo/nope", prompt="hi")
        assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")
    with sdk(server, key="app-wrong") as client, pytest.raises(openai.AuthenticationError) as bad:
        client.completions.create(model="demo", prompt="hi")
    assert bad.value.code == "invalid_api_key"


# --- what is refused ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"echo": True}, "echo", "unsupported_parameter"),
        ({"suffix": "the end"}, "suffix", "unsupported_parameter"),
        ({"logprobs": 0}, "logprobs", "unsupported_parameter"),
        ({"logprobs": 3}, "logprobs", "unsupported_parameter"),
        ({"best_of": 3}, "best_of", "unsupported_parameter"),
        ({"best_of": 1, "n": 2}, "best_of", "invalid_param"),
        ({"prompt": [1, 2, 3]}, "prompt", "unsupported_value"),
        ({"prompt": [[1, 2], [3]]}, "prompt", "unsupported_value"),
        ({"prompt": []}, "prompt", "invalid_param"),
        ({"prompt": ["a", 1]}, "prompt", "invalid_param"),
        ({"prompt": None}, "prompt", "invalid_param"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages", "unknown_parameter"),
        ({"max_completion_tokens": 5}, "max_completion_tokens", "unknown_parameter"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "unknown_parameter"),
        ({"top_logprobs": 2}, "top_logprobs", "unknown_parameter"),
        ({"max_tokens": 0}, "max_tokens", "integer_below_min_value"),
        ({"temperature": 2.5}, "temperature", "invalid_param"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_param"),
        ({"prompt": ["a"] * 9, "n": 2}, "n", "invalid_param"),
        ({"seed": 2**64}, "seed", "invalid_param"),
    ],
)
def test_what_a_chat_model_cannot_honour_is_a_400_naming_it(
    served: tuple[RunningServer, RecordingProvider], extra: dict[str, Any], param: str, code: str
) -> None:
    server, provider = served
    assert_openai_error(post(server, "/v1/completions", {"model": "demo", "prompt": "hi", **extra}), 400, param, code)
    assert provider.calls == []  # refused before any model call


def test_null_and_default_values_are_not_refused(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served
    body = {"echo": False, "suffix": None, "logprobs": None, "best_of": 1, "n": 1, "prompt": ["only one"]}
    r = post(server, "/v1/completions", {"model": "demo", **body})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "Echo: only one"
    assert provider.calls[-1].extra == {}


# --- governance: limits, moderation, failures ---------------------------------------------------------------------


def test_a_limit_is_a_429_blocking_and_streaming(served: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = served

    async def make(repo: Any) -> str:
        key, _ = await repo.create_key("demo", limits=Limits(rpm=1))
        return str(key)

    key = str(server.repo_call(make))
    with sdk(server, key) as client:
        client.completions.create(model="demo", prompt="hi")
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as limited:
                client.completions.create(model="demo", prompt="hi", stream=stream)
            assert limited.value.code == "rate_limit_exceeded"
            assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert len(provider.calls) == 1


def test_a_later_prompt_over_a_limit_stops_the_earlier_ones(tmp_path: Path) -> None:
    """Each prompt is admitted in turn: the second over the key's limit is the answer's 429, and the first, started
    (its model slow to answer), is stopped rather than left to run and bill."""
    provider = RecordingProvider(first_token_ms=5000)
    with serve_app(PLAIN, tmp_path, providers={"fake": provider}) as server:

        async def make(repo: Any) -> str:
            key, _ = await repo.create_key("demo", limits=Limits(rpm=1))
            return str(key)

        key = str(server.repo_call(make))
        with sdk(server, key) as client, pytest.raises(openai.RateLimitError):
            client.completions.create(model="demo", prompt=["first", "second"])
        [row] = rows(server, expect=1)
    assert row["status"] == "stopped" and row["answer"] == ""


MODERATION = {
    "type": "keywords",
    "keywords": ["Forbidden", "secret plan"],
    "inputs": {"enabled": True, "preset_response": "[question withheld]"},
    "outputs": {"enabled": True, "preset_response": "[answer withheld]"},
}


def test_moderation_applies_blocking_and_streaming(tmp_path: Path) -> None:
    catalog = copy.deepcopy(PLAIN)
    catalog["projects"]["demo"]["moderation"] = MODERATION
    provider = RecordingProvider(reply="here is the secret plan in full")
    with serve_app(catalog, tmp_path, providers={"fake": provider}) as server, sdk(server) as client:
        c = client.completions.create(model="demo", prompt="the plan?", max_tokens=50)
        assert c.choices[0].text == "[answer withheld]" and c.choices[0].finish_reason == "content_filter"
        chunks = list(client.completions.create(model="demo", prompt="the plan?", max_tokens=50, stream=True))
        assert "".join(x.choices[0].text for x in chunks) == "[answer withheld]"  # never a word of the answer
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        asked = len(provider.calls)
        assert client.completions.create(model="demo", prompt="Forbidden words").choices[0].text == (
            "[question withheld]"
        )
        assert len(provider.calls) == asked  # flagged input: no model call


class BreaksMidStream(RecordingProvider):
    """Stands for an upstream that fails after its first token."""

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        self.calls.append(call)
        yield TextDelta("Hello")
        raise ProviderUnavailable("the upstream went away")


def test_a_failure_before_the_first_token_is_its_status_and_after_it_openais_error_event(tmp_path: Path) -> None:
    catalog = copy.deepcopy(PLAIN)
    catalog["providers"]["breaks"] = {"kind": "fake"}
    catalog["models"]["breaks"] = {"provider": "breaks", "model": "breaks"}
    catalog["projects"]["demo"]["models"] = ["echo", "vectors", "breaks"]
    providers = {"fake": RecordingProvider(fail="rate_limited"), "breaks": BreaksMidStream()}
    with serve_app(catalog, tmp_path, providers=providers) as server:
        with sdk(server) as client:
            with pytest.raises(openai.RateLimitError):  # nothing was sent: the stream is the upstream's 429
                client.completions.create(model="demo/echo", prompt="hi", stream=True)
            with pytest.raises(openai.APIError) as broke:  # the SDK reads the error event as a failure
                list(client.completions.create(model="demo/breaks", prompt="hi", stream=True))
            assert broke.value.message == "the upstream went away"
        raw = httpx.post(
            server.url + "/v1/completions",
            json={"model": "demo/breaks", "prompt": "hi", "stream": True},
            headers=server.headers(),
            timeout=30,
        )
    blocks = data_blocks(raw.text)
    assert json.loads(blocks[0])["choices"][0]["text"] == "Hello"
    assert json.loads(blocks[-1]) == {
        "error": {
            "message": "the upstream went away",
            "type": "server_error",
            "param": None,
            "code": "provider_unavailable",
        }
    }
    assert "[DONE]" not in blocks  # the answer is not complete
