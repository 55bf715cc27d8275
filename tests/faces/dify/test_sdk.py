"""Dify's own Python SDK (dify-client 0.1.10) driving promptd, unchanged but for its base URL: what a Dify user
already runs must work against promptd. The fake provider makes every answer exact."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from dify_client import CompletionClient

from promptd.domain.ids import end_user_id
from tests.faces.dify.helpers import stored_message
from tests.serving import RunningServer

ANSWER = "Echo: Answer briefly: What is up"
# a 1x1 transparent PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def client(fake_server: RunningServer) -> CompletionClient:
    c = CompletionClient(fake_server.key)
    c.base_url = fake_server.v1
    return c


def test_sdk_blocking_completion(client: CompletionClient, fake_server: RunningServer) -> None:
    r = client.create_completion_message({"query": "What is up"}, "blocking", "sdk-user")
    assert r.status_code == 200
    body = r.json()
    assert body["event"] == "message" and body["mode"] == "completion"
    assert body["answer"] == ANSWER and body["id"] == body["message_id"]
    usage = body["metadata"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (5, 6, 11)
    assert (usage["total_price"], usage["currency"]) == ("0.0000044", "USD")
    row = stored_message(fake_server, body["message_id"])
    assert row["user"] == "sdk-user" and row["answer"] == ANSWER and row["status"] == "normal"
    assert row["files"] is None  # the SDK sends "files": null


def test_sdk_streaming_completion(client: CompletionClient, fake_server: RunningServer) -> None:
    r = client.create_completion_message({"query": "What is up"}, "streaming", "sdk-user")
    try:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = list(r.iter_lines(decode_unicode=True))
    finally:
        r.close()
    # requests' iter_lines drops the blank separators: what is left is one `data:` line per event
    assert all(line.startswith("data: ") for line in lines if line), lines
    events = [json.loads(line[len("data: ") :]) for line in lines if line]
    assert [e["event"] for e in events] == ["message"] * 6 + ["message_end"]
    assert "".join(e["answer"] for e in events[:-1]) == ANSWER
    assert len({e["task_id"] for e in events}) == 1 and len({e["message_id"] for e in events}) == 1
    assert events[-1]["metadata"]["usage"]["completion_tokens"] == 6 and events[-1]["files"] is None
    assert stored_message(fake_server, events[0]["message_id"])["answer"] == ANSWER


def test_sdk_input_errors_come_back_as_difys_400(client: CompletionClient) -> None:
    r = client.create_completion_message({}, "blocking", "sdk-user")
    assert r.status_code == 400
    assert r.json() == {
        "code": "invalid_param",
        "message": "query is required in input form",
        "status": 400,
        "params": "query",
    }


def _feedbacks(server: RunningServer) -> list[dict[str, Any]]:
    r = httpx.get(server.v1 + "/app/feedbacks", headers=server.headers())
    assert r.status_code == 200
    return r.json()["data"]  # type: ignore[no-any-return]


def test_sdk_message_feedback(client: CompletionClient, fake_server: RunningServer) -> None:
    message_id = client.create_completion_message({"query": "hi"}, "blocking", "sdk-user").json()["message_id"]

    r = client.message_feedback(message_id, "like", "sdk-user")
    assert r.status_code == 200 and r.json() == {"result": "success"}
    [feedback] = _feedbacks(fake_server)
    assert feedback["message_id"] == message_id and feedback["rating"] == "like"
    assert feedback["from_source"] == "user" and feedback["from_end_user_id"] == end_user_id("demo", "sdk-user")

    # changing one's mind updates the same feedback; null revokes it
    assert client.message_feedback(message_id, "dislike", "sdk-user").json() == {"result": "success"}
    assert [f["rating"] for f in _feedbacks(fake_server)] == ["dislike"]
    assert client.message_feedback(message_id, None, "sdk-user").json() == {"result": "success"}
    assert _feedbacks(fake_server) == []

    # a message is only visible to the user it answered
    r = client.message_feedback(message_id, "like", "someone-else")
    assert r.status_code == 404
    assert r.json() == {"code": "not_found", "message": "Message Not Exists.", "status": 404}


def test_sdk_application_parameters(client: CompletionClient) -> None:
    r = client.get_application_parameters("sdk-user")
    assert r.status_code == 200
    params = r.json()
    assert params["user_input_form"] == [
        {"paragraph": {"label": "Query", "variable": "query", "required": True, "default": ""}}
    ]
    assert params["file_upload"]["image"]["enabled"] is False
    assert params["opening_statement"] is None and params["suggested_questions"] == []
    assert params["text_to_speech"]["enabled"] is False and params["speech_to_text"] == {"enabled": False}
    assert params["system_parameters"]["image_file_size_limit"] == 10
    assert params["system_parameters"]["file_size_limit"] == 15


def test_sdk_file_upload(client: CompletionClient, fake_server: RunningServer) -> None:
    before = time.time()
    r = client.file_upload("sdk-user", {"file": ("pixel.png", PNG, "image/png")})
    assert r.status_code == 201
    uploaded = r.json()
    assert uploaded["name"] == "pixel.png" and uploaded["size"] == len(PNG)
    assert (uploaded["extension"], uploaded["mime_type"]) == ("png", "image/png")
    assert uploaded["created_by"] == end_user_id("demo", "sdk-user")
    assert int(before) <= uploaded["created_at"] <= time.time()

    # the bytes are kept as they were sent
    preview = httpx.get(uploaded["source_url"], params={"user": "sdk-user"}, headers=fake_server.headers())
    assert preview.status_code == 200 and preview.content == PNG
    assert preview.headers["content-type"] == "image/png"

    # the demo app does not take files: as Dify does, the completion ignores them, and the header says so
    files = [{"type": "image", "transfer_method": "local_file", "upload_file_id": uploaded["id"]}]
    answered = client.create_completion_message({"query": "What is in it?"}, "blocking", "sdk-user", files=files)
    assert answered.status_code == 200 and answered.json()["answer"]
    assert answered.headers["X-Promptd-Ignored"] == "files"


def test_sdk_what_js_and_typed_clients_rely_on(client: CompletionClient, fake_server: RunningServer) -> None:
    """A numeric `user` (a JS client's), metadata a client maps over, and input errors as a 400 before any
    stream, through the SDK unchanged."""
    r = client.create_completion_message({"query": "What is up"}, "blocking", 42)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["retriever_resources"] == [] and body["metadata"]["annotation_reply"] is None
    usage = body["metadata"]["usage"]
    assert 0 < usage["time_to_first_token"] <= usage["latency"]
    assert stored_message(fake_server, body["message_id"])["end_user_id"] == end_user_id("demo", "42")
    assert client.message_feedback(body["message_id"], "like", 42).json() == {"result": "success"}
    refused = client.create_completion_message({}, "streaming", "sdk-user")
    try:
        assert refused.status_code == 400 and refused.headers["content-type"] == "application/json"
        assert refused.json()["code"] == "invalid_param" and "query" in refused.json()["message"]
    finally:
        refused.close()
