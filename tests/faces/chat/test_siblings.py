"""The chat API's siblings: embeddings, metric feedback, comparisons, outcomes, interaction import, sessions."""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post
from tests.serving import RunningServer, serve_app

ARGS = {"system_prompt_args": {"name": "Ann"}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with serve_app(CHAT_CATALOG, tmp_path / "data") as s:
        yield s


def completion(server: RunningServer, session: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], **ARGS}
    if session:
        body["session_id"] = session
    r = post(server, "/api/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_embeddings_float_and_base64(server: RunningServer) -> None:
    client = OpenAI(base_url=server.url + "/api/v1", api_key=server.key)
    r = client.embeddings.create(model="demo/echo", input=["one", "two"])
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 8
    assert r.data[0].embedding != r.data[1].embedding
    raw = post(server, "/api/v1/embeddings", {"model": "demo", "input": "one", "encoding_format": "Base64"}).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert decoded == pytest.approx(r.data[0].embedding, rel=1e-6)
    assert_adaptive_error(post(server, "/api/v1/embeddings", {"model": "demo", "input": ""}), 400, "input")


@pytest.mark.parametrize("ids", [[[1, 2, 3]], [1, 2, 3]], ids=["arrays", "one array"])
def test_token_ids_for_a_model_that_takes_text_only_are_a_400_naming_input(server: RunningServer, ids: Any) -> None:
    client = OpenAI(base_url=server.url + "/v1", api_key=server.key)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="demo/echo", input=ids)
    assert info.value.param == "input" and "takes text only" in info.value.message
    refused = post(server, "/api/v1/embeddings", {"model": "demo", "input": ids})
    assert_adaptive_error(refused, 400, "takes text only")


@pytest.mark.parametrize(
    "bad",
    [[], [""], [[]], [[1], []], ["a", [1]], [1, "a"], [[1, "a"]], [-1], [[True]], [[1.5]], [[[1]]], [None]],
)
def test_an_input_that_is_neither_texts_nor_token_ids_is_a_400(server: RunningServer, bad: Any) -> None:
    r = post(server, "/v1/embeddings", {"model": "demo", "input": bad})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input", r.text


def test_metric_feedback_is_validated_and_stored(server: RunningServer) -> None:
    cid = completion(server)["choices"][0]["completion_id"]
    r = post(server, "/api/v1/feedback", {"completion_id": cid, "metric": "helpful", "value": True, "reason": "x"})
    assert r.status_code == 201 and uuid.UUID(r.json()["feedback_id"])
    assert post(server, "/api/v1/feedback", {"completion_id": cid, "metric": "stars", "value": 4.5}).status_code == 201
    assert_adaptive_error(
        post(server, "/api/v1/feedback", {"completion_id": cid, "metric": "helpful", "value": 3}), 400, "bool metric"
    )
    assert_adaptive_error(
        post(server, "/api/v1/feedback", {"completion_id": cid, "metric": "stars", "value": "a"}), 400, "scalar metric"
    )
    assert_adaptive_error(
        post(server, "/api/v1/feedback", {"completion_id": cid, "metric": "nope", "value": 1}), 404, "metric 'nope'"
    )
    missing = str(uuid.uuid4())
    assert_adaptive_error(
        post(server, "/api/v1/feedback", {"completion_id": missing, "metric": "stars", "value": 1}),
        404,
        "does not exist",
    )


def test_comparisons_take_ids_or_text(server: RunningServer) -> None:
    a, b = (completion(server)["choices"][0]["completion_id"] for _ in range(2))
    r = post(
        server,
        "/api/v1/comparison",
        {"metric": "helpful", "project": "demo", "preferred_completion": a, "other_completion": b},
    )
    assert r.status_code == 201 and uuid.UUID(r.json()["comparison_id"])
    text = {"metric": "helpful", "preferred_completion": {"text": "good", "model": "echo"}, "other_completion": b}
    assert_adaptive_error(post(server, "/api/v1/comparison", text), 400, "messages are required")
    ok = post(server, "/api/v1/comparison", {**text, "messages": [{"role": "user", "content": "hi"}], "tied": "good"})
    assert ok.status_code == 201


def test_outcomes_belong_to_existing_sessions(server: RunningServer) -> None:
    session = completion(server)["session_id"]
    r = post(server, "/api/v1/outcome", {"value": 1, "project_id": "demo", "metric": "helpful", "session_id": session})
    assert r.status_code == 201 and uuid.UUID(r.json()["outcome_id"])
    unknown = {"value": 1, "metric": "helpful", "session_id": str(uuid.uuid4())}
    assert_adaptive_error(post(server, "/api/v1/outcome", unknown), 404, "session")


def test_interactions_are_imported_with_their_feedback(server: RunningServer) -> None:
    session = str(uuid.uuid4())
    body = {
        "project": "demo",
        "messages": [{"role": "user", "content": "2+2?"}],
        "completion": "4",
        "feedbacks": [{"metric": "helpful", "value": 1}],
        "session_id": session,
        "labels": {"src": "crm"},
        "created_at": "2024-02-21T09:51:03Z",
    }
    r = post(server, "/api/v1/interactions", body)
    assert r.status_code == 201
    out = r.json()
    assert out["session_id"] == session and len(out["feedback_ids"]) == 1
    [turn] = httpx.get(f"{server.url}/api/v1/sessions/{session}", headers=server.headers()).json()["turns"]
    assert turn["completion_id"] == out["completion_id"] and turn["completion"] == "4"
    assert turn["labels"] == {"src": "crm"} and turn["created_at"] == 1708509063.0
    bad = {**body, "feedbacks": [{"metric": "helpful", "value": 7}]}
    assert_adaptive_error(post(server, "/api/v1/interactions", bad), 400, "bool metric")
    assert_adaptive_error(post(server, "/api/v1/interactions", {**body, "project": "plain"}), 403)


def test_sessions_need_a_uuid_and_are_scoped_to_the_project(server: RunningServer) -> None:
    assert_adaptive_error(httpx.get(f"{server.url}/api/v1/sessions/abc", headers=server.headers()), 400, "UUID")
    empty = httpx.get(f"{server.url}/api/v1/sessions/{uuid.uuid4()}", headers=server.headers()).json()
    assert empty["turns"] == []
