"""Dify's own Python SDK (dify-client) driving promptd, unchanged but for its base URL."""

from __future__ import annotations

import base64
import json

from dify_client import CompletionClient

from tests.faces.dify.helpers import stored_message
from tests.serving import RunningServer

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def client(server: RunningServer) -> CompletionClient:
    c = CompletionClient(server.key)
    c.base_url = server.v1
    return c


def test_sdk_blocking_completion(fake_server: RunningServer) -> None:
    r = client(fake_server).create_completion_message({"query": "What is up"}, "blocking", "sdk-user")
    r.raise_for_status()
    body = r.json()
    assert body["answer"] == "Echo: Answer briefly: What is up"
    assert body["metadata"]["usage"]["total_tokens"] == 11
    assert stored_message(fake_server, body["message_id"])["user"] == "sdk-user"


def test_sdk_streaming_completion(fake_server: RunningServer) -> None:
    r = client(fake_server).create_completion_message({"query": "What is up"}, "streaming", "sdk-user")
    events = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    r.close()
    assert events[-1]["event"] == "message_end"
    assert "".join(e["answer"] for e in events[:-1]) == "Echo: Answer briefly: What is up"


def test_sdk_feedback_parameters_and_upload(fake_server: RunningServer) -> None:
    c = client(fake_server)
    message_id = c.create_completion_message({"query": "hi"}, "blocking", "sdk-user").json()["message_id"]
    assert c.message_feedback(message_id, "like", "sdk-user").json() == {"result": "success"}
    params = c.get_application_parameters("sdk-user").json()
    assert params["user_input_form"][0]["paragraph"]["variable"] == "query"
    uploaded = c.file_upload("sdk-user", {"file": ("pixel.png", PNG, "image/png")})
    assert uploaded.status_code == 201 and uploaded.json()["size"] == len(PNG)
