"""What real OpenAI clients rely on (issue 15): a free-string `user`, a stream's real status before its first
token, error chunks with `object`, `system_fingerprint`, and deeply nested JSON answered with a 400.

The fake provider stands for a model whose output is known ("Echo: " + the last user message); FailsMidway
stands for an upstream lost in the middle of an answer; the OpenAI-compatible fake upstream (tests/upstream.py)
stands for a server that sends a `system_fingerprint`."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from promptd.domain.ids import end_user_id
from promptd.errors import ProviderUnavailable
from promptd.types import ProviderCall, ProviderEvent, TextDelta
from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, data_blocks, post, rows
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app
from tests.upstream import fake_upstream

USER = [{"role": "user", "content": "hello there"}]
ARGS = {"system_prompt_args": {"name": "Ann"}}
PATHS = ["/api/v1", "/v1"]  # the Adaptive API and the plain OpenAI aliases


# --- user: any string ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_user_is_any_string_stored_with_its_end_user(chat: tuple[RunningServer, RecordingProvider], path: str) -> None:
    server, _ = chat
    client = OpenAI(base_url=server.url + path, api_key=server.key)
    r = client.chat.completions.create(model="demo", messages=USER, user="alice@example.com", extra_body=ARGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Echo: hello there"
    streamed = client.chat.completions.create(
        model="demo",
        messages=USER,  # type: ignore[arg-type]
        user="alice@example.com",
        stream=True,
        extra_body=ARGS,
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "Echo: hello there"
    stored = rows(server, expect=2)
    assert [r["user"] for r in stored] == ["alice@example.com"] * 2
    assert {r["end_user_id"] for r in stored} == {end_user_id("demo", "alice@example.com")}


def test_user_is_any_string_on_the_other_chat_endpoints(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = chat
    embedded = post(server, "/api/v1/embeddings", {"model": "demo/echo", "input": "hi", "user": "bob#7"})
    assert embedded.status_code == 200, embedded.text
    body = {"project": "demo", "messages": USER, "completion": "hi", "user": "bob#7"}
    imported = post(server, "/api/v1/interactions", body)
    assert imported.status_code == 201, imported.text
    feedback = {"completion_id": imported.json()["completion_id"], "metric": "helpful", "value": 1, "user_id": "bob#7"}
    assert post(server, "/api/v1/feedback", feedback).status_code == 201
    embedded_row, row = rows(server, expect=2)  # the embeddings call is recorded too
    assert (embedded_row["face"], row["face"]) == ("chat", "import")
    assert {embedded_row["user"], row["user"]} == {"bob#7"}
    assert row["end_user_id"] == embedded_row["end_user_id"] == end_user_id("demo", "bob#7")
    end_user = httpx.get(f"{server.v1}/end-users/{row['end_user_id']}", headers=server.headers()).json()
    assert end_user["external_user_id"] == "bob#7"  # the same end user the Dify face knows


def test_a_user_the_store_cannot_keep_is_a_400(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = chat
    for user, says in (("u" * 256, "at most 255"), ("a\x00b", "NUL")):
        body = {"model": "demo", "messages": USER, "user": user, **ARGS}
        assert_adaptive_error(post(server, "/api/v1/chat/completions", body), 400, says)
    feedback = {"completion_id": "00000000-0000-4000-8000-000000000000", "metric": "helpful", "value": 1}
    assert_adaptive_error(post(server, "/api/v1/feedback", {**feedback, "user_id": "u" * 65}), 400, "at most 64")
    assert provider.calls == []


# --- errors before the first token: the real status ---------------------------------------------------------------


def limited_catalog(**provider: Any) -> dict[str, Any]:
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["providers"]["fake"].update(provider)
    catalog["models"]["echo"]["retry"] = {"attempts": 0}  # the client sees the upstream's 429 at once
    catalog["projects"]["demo"]["system_prompt_template"] = None
    return catalog


@pytest.mark.parametrize("path", PATHS)
def test_an_error_before_the_first_token_has_its_real_status(tmp_path: Path, path: str) -> None:
    provider = RecordingProvider(fail="rate_limited")
    with serve_app(limited_catalog(), tmp_path, providers={"fake": provider}) as server:
        client = OpenAI(base_url=server.url + path, api_key=server.key, max_retries=0)
        with pytest.raises(openai.RateLimitError) as info:
            list(client.chat.completions.create(model="demo", messages=USER, stream=True))  # type: ignore[arg-type]
        assert info.value.status_code == 429 and info.value.response.headers["retry-after"] == "1"
        assert "rate limited" in info.value.response.text  # in the path's own error shape
        # so the SDK's own retry applies (it honours Retry-After): two tries, each reaching the provider
        with pytest.raises(openai.RateLimitError):
            retried = client.with_options(max_retries=1)
            list(retried.chat.completions.create(model="demo", messages=USER, stream=True))  # type: ignore[arg-type]
        assert len(provider.calls) == 3
        assert [r["status"] for r in rows(server, expect=3)] == ["error"] * 3  # each try is recorded


def test_a_first_token_deadline_in_a_stream_is_a_408(tmp_path: Path) -> None:
    with serve_app(limited_catalog(first_token_ms=3000), tmp_path) as server:
        body = {"model": "demo", "messages": USER, "stream": True, "max_ttft_ms": 200}
        r = post(server, "/api/v1/chat/completions", body)
        assert r.headers["content-type"].startswith("application/json")
        assert_adaptive_error(r, 408, "first token")


def test_past_the_commit_wait_a_keep_alive_commits_and_the_error_is_a_chunk(tmp_path: Path) -> None:
    """The head is held `stream_commit_wait` at most; then keep-alive comments keep proxies open, the status
    is 200, and a later error is the last chunk (with `object`, as OpenAI's chunks have), without [DONE]."""
    catalog = limited_catalog(first_token_ms=3000)
    with serve_app(catalog, tmp_path, ping_interval=0.1, stream_commit_wait=0.2) as server:
        body = {"model": "demo", "messages": USER, "stream": True, "max_ttft_ms": 800}
        r = post(server, "/api/v1/chat/completions", body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b]
    assert blocks[0] == ": keep-alive" and "data: [DONE]" not in blocks
    error = json.loads(blocks[-1].removeprefix("data: "))
    assert error["object"] == "chat.completion.chunk" and error["error"]["status"] == 408
    assert error["choices"][0]["finish_reason"] == "error"


class FailsMidway:
    """Stands for an upstream lost in the middle of an answer: two words, then a failure."""

    def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        async def events() -> AsyncIterator[ProviderEvent]:
            yield TextDelta("Half")
            yield TextDelta(" an")
            raise ProviderUnavailable("upstream went away")

        return events()

    async def aclose(self) -> None:
        return None


def test_an_error_after_the_first_token_is_a_chunk_with_object(tmp_path: Path) -> None:
    with serve_app(limited_catalog(), tmp_path, providers={"fake": FailsMidway()}) as server:
        r = post(server, "/api/v1/chat/completions", {"model": "demo", "messages": USER, "stream": True})
        assert r.status_code == 200
        *deltas, last = (json.loads(b) for b in data_blocks(r.text))
        assert "".join(d["choices"][0]["delta"]["content"] for d in deltas) == "Half an"
        assert last["object"] == "chat.completion.chunk" and last["error"]["message"] == "upstream went away"
        # on the OpenAI alias the last event is OpenAI's error object alone: clients that read a chunk with
        # `choices` as a normal one (the Vercel AI SDK's OpenAI provider) would end the answer as complete
        r = post(server, "/v1/chat/completions", {"model": "demo", "messages": USER, "stream": True})
        *_, last = (json.loads(b) for b in data_blocks(r.text))
        assert list(last) == ["error"] and last["error"]["message"] == "upstream went away"
        assert set(last["error"]) == {"message", "type", "param", "code"}
        assert "data: [DONE]" not in r.text
        # the OpenAI SDK reads either as an APIError
        client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
        with pytest.raises(openai.APIError, match="upstream went away"):
            list(client.chat.completions.create(model="demo", messages=USER, stream=True))  # type: ignore[arg-type]


# --- system_fingerprint ---------------------------------------------------------------------------------------------


def test_system_fingerprint_comes_from_the_upstream(tmp_path: Path) -> None:
    with fake_upstream() as up:
        catalog = copy.deepcopy(CHAT_CATALOG)
        catalog["providers"]["up"] = {"kind": "openai", "base_url": up.url, "api_key": "sk-test"}
        catalog["models"]["fp"] = {"provider": "up", "model": "fingerprint"}
        catalog["models"]["plain"] = {"provider": "up", "model": "ok"}
        demo = catalog["projects"]["demo"]
        demo.update(models=[*demo["models"], "fp", "plain"], system_prompt_template=None)
        with serve_app(catalog, tmp_path) as server:
            client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
            r = client.chat.completions.create(model="demo/fp", messages=USER)  # type: ignore[arg-type]
            assert r.system_fingerprint == "fp_test" and r.choices[0].message.content == "Hello from upstream"
            chunks = list(
                client.chat.completions.create(
                    model="demo/fp",
                    messages=USER,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            assert chunks[-1].usage is not None and chunks[-1].system_fingerprint == "fp_test"
            assert [c.system_fingerprint for c in chunks if c.choices and c.choices[0].finish_reason] == ["fp_test"]
            plain = client.chat.completions.create(model="demo/plain", messages=USER)  # type: ignore[arg-type]
            assert plain.system_fingerprint is None and "system_fingerprint" not in plain.model_dump(exclude_unset=True)


# --- deeply nested JSON ---------------------------------------------------------------------------------------------

DEEP = object()  # where a body holds it, _deep_json writes an object nested 100 000 levels deep


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/chat/completions", {"model": "demo", "messages": USER, "system_prompt_args": {"name": DEEP}}),
        ("/api/v1/chat/completions", {"model": "demo", "messages": [{**USER[0], "metadata": DEEP}], **ARGS}),
        ("/api/v1/chat/completions", {"model": "demo", "messages": USER, "tool_choice": DEEP, **ARGS}),
        ("/v1/chat/completions", {"model": "demo", "messages": USER, "tool_choice": DEEP, **ARGS}),
        ("/api/v1/feedback", {"completion_id": "x", "metric": "helpful", "value": DEEP}),
        ("/api/v1/outcome", {"session_id": "x", "metric": "helpful", "value": DEEP}),
    ],
)
def test_deeply_nested_json_is_a_400(chat: tuple[RunningServer, RecordingProvider], path: str, body: Any) -> None:
    server, provider = chat
    raw = _deep_json(body)
    r = httpx.post(server.url + path, content=raw, headers={**server.headers(), "content-type": "application/json"})
    assert r.status_code == 400, r.text
    message = r.json()["error"] if path.startswith("/api") else r.json()["error"]["message"]
    assert "nested too deeply" in message
    assert provider.calls == []


def test_deeply_nested_json_is_a_400_on_the_dify_face(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = chat
    raw = _deep_json({"inputs": {"query": DEEP}, "user": "u"})
    r = httpx.post(server.v1 + "/completion-messages", content=raw, headers=server.headers())
    assert r.status_code == 400 and r.json()["code"] == "bad_request" and "nested too deeply" in r.json()["message"]
    assert provider.calls == []


def _deep_json(value: Any) -> bytes:
    """JSON text of `value`, with an object nested deeper than any recursive decoder goes in place of DEEP."""
    depth = 100_000
    nested = '{"a":' * depth + "{}" + "}" * depth

    def render(v: Any) -> str:
        if v is DEEP:
            return nested
        if isinstance(v, dict):
            return "{" + ",".join(f"{json.dumps(k)}:{render(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ",".join(render(x) for x in v) + "]"
        return json.dumps(v)

    return render(value).encode()


def test_a_client_leaving_while_the_head_is_held_stops_the_generation(tmp_path: Path) -> None:
    """Nothing was sent, but the disconnect is noticed all the same: the upstream call stops, the record says so."""
    with serve_app(limited_catalog(first_token_ms=5000), tmp_path) as server:
        body = json.dumps({"model": "demo", "messages": USER, "stream": True}).encode()
        host, port = server.url.removeprefix("http://").split(":")
        head = (
            f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + body)
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # the head is held: not a byte before the first token
        [row] = rows(server, expect=1)
        assert row["status"] == "stopped"
