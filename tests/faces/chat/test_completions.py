"""POST /api/v1/chat/completions through the OpenAI SDK and raw HTTP, on the fake provider (which stands for
a model whose exact output is known: "Echo: " + the last user message, one word per chunk)."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post, rows
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app

USER = [{"role": "user", "content": "hello there"}]
ARGS = {"system_prompt_args": {"name": "Ann"}}


@pytest.fixture
def client(chat: tuple[RunningServer, RecordingProvider]) -> OpenAI:
    return OpenAI(base_url=chat[0].url + "/api/v1", api_key=chat[0].key)


def test_openai_sdk_blocking_answer(client: OpenAI, chat: tuple[RunningServer, RecordingProvider]) -> None:
    r = client.chat.completions.create(model="demo", messages=USER, extra_body=ARGS)  # type: ignore[arg-type]
    [choice] = r.choices
    assert choice.message.content == "Echo: hello there" and choice.finish_reason == "stop"
    raw = r.model_dump()
    assert raw["choices"][0]["completion_id"] == raw["choices"][0]["message"]["id"]
    assert raw["choices"][0]["model"] == "echo" and raw["model"] == "demo/echo"
    uuid.UUID(raw["session_id"])  # minted when absent
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 3)
    assert raw["usage"]["total_price"] == "0.0000026" and raw["usage"]["currency"] == "USD"
    assert chat[1].calls[-1].messages[0].content == "You help Ann."  # the rendered system prompt comes first


def test_openai_sdk_streaming_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo/echo", messages=USER, stream=True, stream_options={"include_usage": True}, extra_body=ARGS
    )  # type: ignore[call-overload]
    chunks = list(stream)
    ids = {c.choices[0].model_extra["completion_id"] for c in chunks if c.choices}  # type: ignore[index]
    sessions = {c.model_extra["session_id"] for c in chunks}  # type: ignore[index]
    assert len(ids) == 1 and len(sessions) == 1  # the same completion and session in every chunk
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8


def test_raw_stream_ends_with_done_and_every_delta_is_complete(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = chat
    body = {"model": "demo", "messages": USER, "stream": True, **ARGS}
    raw = post(server, "/api/v1/chat/completions", body).text
    lines = [line for line in raw.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        chunk = json.loads(line.removeprefix("data: "))
        delta = chunk["choices"][0]["delta"]
        assert set(delta) >= {"id", "role", "content"} and isinstance(delta["content"], str)  # as Adaptive's SDK needs


def test_n_gives_each_choice_its_own_completion_and_record(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = chat
    r = post(server, "/api/v1/chat/completions", {"model": "demo", "messages": USER, "n": 2, **ARGS}).json()
    assert [c["index"] for c in r["choices"]] == [0, 1]
    assert len({c["completion_id"] for c in r["choices"]}) == 2
    assert r["usage"]["completion_tokens"] == 6
    stored = rows(server, expect=2)
    assert {s["id"] for s in stored} == {c["completion_id"] for c in r["choices"]}
    assert [s["choice_index"] for s in stored] == [0, 1] and {s["session_id"] for s in stored} == {r["session_id"]}


def test_labels_metadata_tags_user_and_session_are_stored(client: OpenAI, chat: tuple[RunningServer, Any]) -> None:
    session, user = str(uuid.uuid4()), str(uuid.uuid4())
    r = client.chat.completions.create(
        model="demo",
        messages=USER,
        metadata={"team": "blue"},
        extra_body={**ARGS, "session_id": session, "user": user, "labels": {"env": "test"}, "tags": ["a", "b"]},
    )  # type: ignore[call-overload]
    assert r.model_dump()["session_id"] == session
    [row] = rows(chat[0], expect=1)
    assert row["labels"] == {"team": "blue", "env": "test"} and row["tags"] == ["a", "b"]
    assert row["user"] == user and row["session_id"] == session and row["face"] == "chat"
    assert row["query"] == USER[-1]["content"]  # the user's question, kept for search in the console


def test_store_false_leaves_no_row(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = chat
    session = str(uuid.uuid4())
    for text, store in (("secret", False), ("kept", True)):
        body = {"model": "demo", "messages": [{"role": "user", "content": text}], "session_id": session, **ARGS}
        r = post(server, "/api/v1/chat/completions", {**body, "store": store})
        assert r.json()["session_id"] == session
    # the session listing waits for the recorder, so it sees everything that was recorded
    turns = httpx.get(f"{server.url}/api/v1/sessions/{session}", headers=server.headers()).json()["turns"]
    assert [t["completion"] for t in turns] == ["Echo: kept"]
    assert [r["answer"] for r in rows(server)] == ["Echo: kept"]


def test_session_turns_are_listed_in_order(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = chat
    session = str(uuid.uuid4())
    for text in ("first", "second"):
        body = {"model": "demo", "messages": [{"role": "user", "content": text}], "session_id": session, **ARGS}
        post(server, "/api/v1/chat/completions", body)
    turns = httpx.get(f"{server.url}/api/v1/sessions/{session}", headers=server.headers()).json()["turns"]
    assert [t["completion"] for t in turns] == ["Echo: first", "Echo: second"]
    assert turns[0]["messages"][-1] == {"role": "user", "content": "first"}


@pytest.mark.parametrize(
    ("body", "status", "contains"),
    [
        ({"model": "nope", "messages": USER}, 404, "model 'nope' does not exist"),
        ({"model": "demo/zzz", "messages": USER}, 404, "model 'zzz' does not exist or is not attached"),
        ({"model": "demo", "messages": USER, "session_id": "s1", **ARGS}, 400, "session_id must be a UUID"),
        ({"model": "demo", "messages": []}, 400, "messages must not be empty"),
        ({"model": "demo", "messages": USER}, 400, "missing argument 'name'"),
        ({"model": "demo", "messages": USER, "system_prompt_args": {"nam": 1}}, 400, "missing argument 'name'"),
        ({"model": "demo", "messages": USER, "n": 17, **ARGS}, 400, "n must be between"),
        ({"model": "demo", "messages": USER, "n": -1, **ARGS}, 400, "n must be between"),
        ({"model": "demo", "messages": USER, "labels": {"a": 1}, **ARGS}, 400, "invalid request body"),
        ({"model": "demo", "messages": USER, "tools": [{"id": "nope", "enabled": True}], **ARGS}, 400, "unknown tool"),
        ({"model": "demo", "messages": USER, "ab_campaign": "nope", **ARGS}, 404, "A/B campaign 'nope'"),
        ({"messages": USER}, 400, "invalid request body"),
    ],
)
def test_bad_requests_get_adaptives_error_and_leave_nothing(
    chat: tuple[RunningServer, RecordingProvider], body: dict[str, Any], status: int, contains: str
) -> None:
    server, provider = chat
    assert_adaptive_error(post(server, "/api/v1/chat/completions", body), status, contains)
    assert provider.calls == [] and rows(server) == []


def test_a_key_cannot_address_another_project(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = chat
    r = post(server, "/api/v1/chat/completions", {"model": "plain", "messages": USER})
    assert_adaptive_error(r, 403, "not valid for project 'plain'")
    assert_adaptive_error(httpx.post(server.url + "/api/v1/chat/completions", json={}), 401)


def test_a_template_cannot_reach_python_internals(tmp_path: Path) -> None:
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["projects"]["demo"]["system_prompt_template"] = "{{ x.__class__.__mro__[1].__subclasses__() }}"
    with serve_app(catalog, tmp_path) as server:
        r = post(
            server, "/api/v1/chat/completions", {"model": "demo", "messages": USER, "system_prompt_args": {"x": 1}}
        )
        assert_adaptive_error(r, 400, "unsafe")


def test_tools_default_switch_and_override(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = chat

    def offered(**extra: Any) -> list[str]:
        post(server, "/api/v1/chat/completions", {"model": "demo", "messages": USER, **ARGS, **extra})
        return [t["function"]["name"] for t in provider.calls[-1].tools or []]

    assert offered() == ["get_weather"]  # enabled by default
    assert offered(use_tools=False) == []
    assert offered(use_tools=True) == ["get_weather", "search"]
    assert offered(tools=[{"id": "search", "enabled": True}, {"id": "get_weather", "enabled": False}]) == ["search"]
    fn = {"type": "function", "function": {"name": "mine", "parameters": {"type": "object"}}}
    assert offered(use_tools=False, tools=[fn]) == ["mine"]  # an OpenAI client's own function definitions


def test_tool_calls_come_back_in_openai_shape(tmp_path: Path) -> None:
    provider = RecordingProvider(tool_arguments='{"city": "Paris"}')
    with serve_app(CHAT_CATALOG, tmp_path, providers={"fake": provider}) as server:
        client = OpenAI(base_url=server.url + "/api/v1", api_key=server.key)
        r = client.chat.completions.create(model="demo", messages=USER, extra_body=ARGS)  # type: ignore[arg-type]
        [call] = r.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
        assert r.choices[0].finish_reason == "tool_calls" and call.id == "call_fake_0"
        stream = client.chat.completions.create(model="demo", messages=USER, stream=True, extra_body=ARGS)  # type: ignore[call-overload]
        deltas = [c.choices[0].delta.tool_calls for c in stream if c.choices and c.choices[0].delta.tool_calls]
        assert deltas[0][0].function.name == "get_weather"  # type: ignore[index,union-attr]


def slow_catalog(**model: Any) -> dict[str, Any]:
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["providers"]["slow"] = {"kind": "fake", "first_token_ms": 3000}
    catalog["models"]["slowpoke"] = {"provider": "slow", "model": "slow", **model}
    catalog["projects"]["demo"]["models"].append("slowpoke")
    catalog["projects"]["demo"]["system_prompt_template"] = None
    return catalog


def test_max_ttft_ms_fails_with_408_blocking_and_streaming(tmp_path: Path) -> None:
    with serve_app(slow_catalog(), tmp_path) as server:
        body = {"model": "demo/slowpoke", "messages": USER, "max_ttft_ms": 200}
        assert_adaptive_error(post(server, "/api/v1/chat/completions", body), 408, "first token")
        # nothing was sent before the deadline passed: the stream answers with the real status too
        assert_adaptive_error(post(server, "/api/v1/chat/completions", {**body, "stream": True}), 408, "first token")
        failed = rows(server, expect=2)
        assert [r["status"] for r in failed] == ["error", "error"]
        assert failed[0]["error_code"] == "first_token_timeout"
        # a generous deadline is met
        ok = post(server, "/api/v1/chat/completions", {"model": "demo/echo", "messages": USER, "max_ttft_ms": 30000})
        assert ok.status_code == 200


def test_max_ttft_ms_cuts_over_to_a_declared_fallback(tmp_path: Path) -> None:
    with serve_app(slow_catalog(fallbacks=["echo"]), tmp_path) as server:
        body = {"model": "demo/slowpoke", "messages": USER, "max_ttft_ms": 200}
        r = post(server, "/api/v1/chat/completions", body).json()
        assert r["choices"][0]["message"]["content"] == "Echo: hello there"
        assert r["choices"][0]["model"] == "echo"  # the fallback answered
        [row] = rows(server, expect=1)
        assert row["model"] == "echo" and row["status"] == "normal"
        assert [(a["model"], a["status"]) for a in row["attempts"]] == [("slowpoke", "error"), ("echo", "ok")]
        assert row["attempts"][0]["error_code"] == "first_token_timeout"


def test_openai_aliases_use_openais_error_shape(chat: tuple[RunningServer, RecordingProvider]) -> None:
    server, _ = chat
    client = OpenAI(base_url=server.url + "/v1", api_key=server.key)
    assert [m.id for m in client.models.list()] == ["demo", "demo/echo", "demo/alt", "demo/vectors"]
    r = client.chat.completions.create(model="demo/alt", messages=USER, extra_body=ARGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Echo: hello there"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="demo/zzz", messages=USER)  # type: ignore[arg-type]
    assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert "not attached" in info.value.body["message"]  # type: ignore[index]
    # the Dify face still owns the rest of /v1
    assert httpx.get(server.v1 + "/info", headers=server.headers()).json()["mode"] == "completion"


def test_a_slow_first_token_gets_sse_keep_alives(tmp_path: Path) -> None:
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["providers"]["fake"]["first_token_ms"] = 700
    with serve_app(catalog, tmp_path, ping_interval=0.2, stream_commit_wait=0) as server:
        raw = post(server, "/api/v1/chat/completions", {"model": "demo", "messages": USER, "stream": True, **ARGS}).text
    blocks = [b for b in raw.split("\n\n") if b]
    first_data = next(i for i, b in enumerate(blocks) if b.startswith("data: "))
    assert blocks[:first_data].count(": keep-alive") >= 2  # comments: SSE clients ignore them, proxies see traffic
    assert blocks[-1] == "data: [DONE]"


def test_nul_characters_in_a_chat_never_cost_the_record(tmp_path: Path, database_url: str) -> None:
    """PostgreSQL text cannot hold NUL: the record keeps the rest of the question and answer (the fake provider
    stands for a model whose answer contains one)."""
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["providers"]["fake"] = {"kind": "fake", "reply": "odd\x00answer"}
    with serve_app(catalog, tmp_path / "data", database_url=database_url, project="plain") as server:
        body = {"model": "plain", "messages": [{"role": "user", "content": "what\x00 now"}]}
        r = post(server, "/api/v1/chat/completions", body)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "odd\x00answer"
        [row] = rows(server, "plain", expect=1)
        assert row["query"] == "what now" and row["answer"] == "oddanswer"
        assert row["prompt"][-1]["content"] == "what\x00 now"  # JSON keeps it, escaped
        assert not (tmp_path / "data" / "dead-letter.jsonl").exists()
