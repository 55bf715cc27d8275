"""POST /completion-messages and its stop endpoint, over real HTTP, on the fake provider (which stands for a
model whose exact output we know: "Echo: " + the rendered prompt, one word per chunk, words as tokens)."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAKE_CATALOG
from tests.faces.dify.helpers import assert_dify_error, complete, message_count, stored_message, stream
from tests.serving import RunningServer, serve_app

ANSWER = "Echo: Answer briefly: What is up"


def catalog_with(**provider: Any) -> dict[str, Any]:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["providers"]["fake"].update(provider)
    return catalog


def test_blocking_answer_has_difys_shape_and_exact_prices(fake_server: RunningServer) -> None:
    r = complete(fake_server, {"inputs": {"query": "What is up"}, "user": "alice"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"event", "task_id", "id", "message_id", "mode", "answer", "metadata", "created_at"}
    assert body["event"] == "message" and body["mode"] == "completion"
    assert body["id"] == body["message_id"] and body["task_id"] != body["message_id"]
    assert body["answer"] == ANSWER
    assert isinstance(body["created_at"], int) and abs(body["created_at"] - time.time()) < 600
    usage = body["metadata"]["usage"]
    latency = usage.pop("latency")
    assert isinstance(latency, float) and latency > 0
    # 5 prompt words at 0.15/1M and 6 answer words at 0.60/1M, to 7 decimals half-up
    assert usage == {
        "prompt_tokens": 5,
        "prompt_unit_price": "0.15",
        "prompt_price_unit": "0.000001",
        "prompt_price": "0.0000008",
        "completion_tokens": 6,
        "completion_unit_price": "0.60",
        "completion_price_unit": "0.000001",
        "completion_price": "0.0000036",
        "total_tokens": 11,
        "total_price": "0.0000044",
        "currency": "USD",
    }


@pytest.mark.parametrize("mode", [None, "blocking"])
def test_omitted_or_null_response_mode_means_blocking(fake_server: RunningServer, mode: str | None) -> None:
    body: dict[str, Any] = {"inputs": {"query": "What is up"}, "user": "alice", "response_mode": mode}
    if mode is None:
        del body["response_mode"]
    r = complete(fake_server, body)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["answer"] == ANSWER


def test_streaming_sends_message_deltas_then_message_end(fake_server: RunningServer) -> None:
    events = stream(fake_server, {"inputs": {"query": "What is up"}, "user": "alice"})
    assert all(isinstance(e, dict) for e in events)
    messages, end = events[:-1], events[-1]
    assert isinstance(end, dict) and end["event"] == "message_end"
    assert [e["event"] for e in messages if isinstance(e, dict)] == ["message"] * 6
    heads = {(e["task_id"], e["message_id"], e["id"], e["created_at"]) for e in events if isinstance(e, dict)}
    assert len(heads) == 1  # the same ids and creation time on every event
    assert "".join(e["answer"] for e in messages if isinstance(e, dict)) == ANSWER
    assert all(e["from_variable_selector"] is None for e in messages if isinstance(e, dict))
    assert end["files"] is None and end["metadata"]["usage"]["completion_tokens"] == 6
    assert end["metadata"]["usage"]["total_price"] == "0.0000044"


def test_streaming_framing_is_data_lines_without_done(fake_server: RunningServer) -> None:
    body = {"inputs": {"query": "hi"}, "user": "alice", "response_mode": "streaming"}
    raw = httpx.post(fake_server.v1 + "/completion-messages", json=body, headers=fake_server.headers()).text
    blocks = raw.split("\n\n")
    assert blocks[-1] == ""
    assert all(b.startswith("data: {") for b in blocks[:-1])
    assert "[DONE]" not in raw


def test_pings_keep_a_slow_stream_alive(tmp_path: Path) -> None:
    with serve_app(catalog_with(first_token_ms=700), tmp_path, ping_interval=0.2) as server:
        events = stream(server, {"inputs": {"query": "hi"}, "user": "alice"})
    first_message = next(i for i, e in enumerate(events) if isinstance(e, dict))
    assert events[:first_message].count("ping") >= 2  # pings arrived while waiting for the first token
    assert isinstance(events[-1], dict) and events[-1]["event"] == "message_end"


def test_legacy_top_level_query_fills_the_query_input(fake_server: RunningServer) -> None:
    r = complete(fake_server, {"inputs": {}, "query": "What is up", "user": "alice"})
    assert r.json()["answer"] == ANSWER
    row = stored_message(fake_server, r.json()["message_id"])
    assert row["inputs"] == {"query": "What is up"} and row["query"] == "What is up"


def test_every_answer_is_recorded_once_with_what_a_user_would_need(fake_server: RunningServer) -> None:
    r = complete(fake_server, {"inputs": {"query": "What is up", "extra": "dropped"}, "user": "alice"})
    row = stored_message(fake_server, r.json()["message_id"])
    assert row["inputs"] == {"query": "What is up"}  # unknown keys are dropped
    assert row["answer"] == ANSWER and row["status"] == "normal" and row["error"] is None
    assert row["user"] == "alice" and row["face"] == "dify" and row["model"] == "echo"
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (5, 6, 11)
    assert (row["prompt_price"], row["completion_price"], row["total_price"]) == ("0.0000008", "0.0000036", "0.0000044")
    assert row["latency"] > 0 and row["ttft"] is not None and row["task_id"] == r.json()["task_id"]
    assert row["prompt"] == [{"role": "user", "content": "Answer briefly: What is up"}]
    assert message_count(fake_server) == 1


FORM_CATALOG: dict[str, Any] = {
    **FAKE_CATALOG,
    "projects": {
        "demo": {
            "models": ["echo"],
            "prompt": "{{name}} {{tone}} {{n}} {{topic}}",
            "inputs": [
                {"type": "text-input", "variable": "name", "required": True, "max_length": 5},
                {"type": "select", "variable": "tone", "options": ["formal", "casual"], "default": "casual"},
                {"type": "number", "variable": "n"},
                {"type": "paragraph", "variable": "topic"},
            ],
        }
    },
}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "name is required in input form"),
        ({"name": ""}, "name is required in input form"),
        ({"name": 3}, "(type 'text-input') name in input form must be a string"),
        ({"name": "toolongname"}, "name in input form must be less than 5 characters"),
        ({"name": "Ann", "tone": "rude"}, "tone in input form must be one of the following: ['formal', 'casual']"),
        ({"name": "Ann", "n": "many"}, "n in input form must be a valid number"),
        ({"name": "Ann", "topic": ["x"]}, "(type 'paragraph') topic in input form must be a string"),
    ],
)
def test_inputs_are_checked_against_the_form_with_difys_messages(
    tmp_path: Path, inputs: dict[str, Any], message: str
) -> None:
    with serve_app(FORM_CATALOG, tmp_path) as server:
        blocking = complete(server, {"inputs": inputs, "user": "u"})
        assert_dify_error(blocking, 400, "invalid_param", message)
        events = stream(server, {"inputs": inputs, "user": "u"})
        assert len(events) == 1 and isinstance(events[0], dict)
        assert {k: events[0][k] for k in ("event", "status", "code", "message")} == {
            "event": "error",
            "status": 400,
            "code": "invalid_param",
            "message": message,
        }
        assert "task_id" not in events[0]
        assert message_count(server) == 0  # nothing half-written


def test_valid_form_values_are_cleaned_and_defaulted(tmp_path: Path) -> None:
    with serve_app(FORM_CATALOG, tmp_path) as server:
        r = complete(server, {"inputs": {"name": "Ann", "n": "2.5"}, "user": "u"})
        assert r.json()["answer"] == "Echo: Ann casual 2.5 "  # the empty topic renders as nothing
        assert stored_message(server, r.json()["message_id"])["inputs"] == {
            "name": "Ann",
            "tone": "casual",
            "n": 2.5,
            "topic": "",
        }


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"", "bad_request", "Invalid JSON payload received or JSON payload is empty."),
        (b"{not json", "bad_request", "Invalid JSON payload received or JSON payload is empty."),
        (b"[1]", "bad_request", "Invalid JSON payload received or JSON payload is empty."),
        (b'{"inputs": {"query": "x"}}', "invalid_param", "Arg user must be provided."),
        (b'{"inputs": {"query": "x"}, "user": ""}', "invalid_param", "Arg user must be provided."),
        (b'{"inputs": 3, "user": "u"}', "invalid_param", "Expected `object`, got `int` - at `inputs`"),
        (b'{"user": "u"}', "invalid_param", "Object missing required field `inputs`"),
        (b'{"inputs": {}, "user": "u", "response_mode": "fast"}', "invalid_param", None),
    ],
)
def test_malformed_requests_get_a_400_and_leave_nothing(
    fake_server: RunningServer, body: bytes, code: str, message: str | None
) -> None:
    r = httpx.post(fake_server.v1 + "/completion-messages", content=body, headers=fake_server.headers())
    assert_dify_error(r, 400, code, message)
    assert message_count(fake_server) == 0


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authorization header must be provided and start with 'Bearer'"),
        ("app-nospace", "Authorization header must be provided and start with 'Bearer'"),
        ("Basic abc", "Authorization scheme must be 'Bearer'"),
        ("Bearer app-doesnotexistdoesnotexist123", "Access token is invalid"),
    ],
)
def test_bad_keys_get_difys_401(fake_server: RunningServer, header: str | None, message: str) -> None:
    headers = {"Authorization": header} if header else {}
    r = httpx.post(fake_server.v1 + "/completion-messages", json={"inputs": {}, "user": "u"}, headers=headers)
    assert_dify_error(r, 401, "unauthorized", message)
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    ("fail", "status", "code"),
    [
        ("unavailable", 400, "completion_request_error"),
        ("rate_limited", 429, "rate_limit_error"),
        ("timeout", 400, "completion_request_error"),
    ],
)
def test_model_failures_map_to_difys_codes(tmp_path: Path, fail: str, status: int, code: str) -> None:
    with serve_app(catalog_with(fail=fail), tmp_path) as server:
        body = assert_dify_error(complete(server, {"inputs": {"query": "x"}, "user": "u"}), status, code)
        assert "fake provider" in body["message"]
        events = stream(server, {"inputs": {"query": "x"}, "user": "u"})
        assert len(events) == 1 and isinstance(events[0], dict)
        assert (events[0]["event"], events[0]["status"], events[0]["code"]) == ("error", status, code)
        server.settle()
        failed = server.repo_call(lambda repo: repo.list_messages("demo"))
        assert len(failed) == 2 and {m["status"] for m in failed} == {"error"}  # failures are recorded too
        assert all(m["error_code"] for m in failed)


def _stream_in_thread(server: RunningServer, user: str, events: list[Any], stop_after: int = 0) -> threading.Thread:
    body = {"inputs": {"query": "one two three four five six seven eight"}, "user": user, "response_mode": "streaming"}

    def run() -> None:
        with httpx.stream(
            "POST", server.v1 + "/completion-messages", json=body, headers=server.headers(), timeout=60
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for(events: list[Any], n: int) -> None:
    deadline = time.monotonic() + 20
    while len(events) < n:
        assert time.monotonic() < deadline, events
        time.sleep(0.01)


def test_stop_ends_the_stream_with_message_end_and_keeps_the_partial_answer(tmp_path: Path) -> None:
    with serve_app(catalog_with(chunk_delay_ms=150), tmp_path) as server:
        events: list[Any] = []
        thread = _stream_in_thread(server, "alice", events)
        _wait_for(events, 2)
        task_id = events[0]["task_id"]
        r = httpx.post(
            f"{server.v1}/completion-messages/{task_id}/stop", json={"user": "alice"}, headers=server.headers()
        )
        assert r.status_code == 200 and r.json() == {"result": "success"}
        thread.join(20)
        assert events[-1]["event"] == "message_end"
        answered = "".join(e["answer"] for e in events[:-1])
        assert answered and len(events) - 1 < 11  # stopped before the 11-word answer was done
        assert events[-1]["metadata"]["usage"]["completion_tokens"] == len(events) - 1
        row = stored_message(server, events[0]["message_id"])
        assert row["status"] == "stopped" and row["answer"] == answered and row["finish_reason"] == "stop"


def test_stop_by_another_user_is_a_silent_no_op(tmp_path: Path) -> None:
    with serve_app(catalog_with(chunk_delay_ms=30), tmp_path) as server:
        events: list[Any] = []
        thread = _stream_in_thread(server, "alice", events)
        _wait_for(events, 1)
        r = httpx.post(
            f"{server.v1}/completion-messages/{events[0]['task_id']}/stop",
            json={"user": "mallory"},
            headers=server.headers(),
        )
        assert r.json() == {"result": "success"}
        thread.join(20)
        assert events[-1]["event"] == "message_end" and len(events) == 12  # the whole answer arrived
        assert stored_message(server, events[0]["message_id"])["status"] == "normal"


def test_stop_of_an_unknown_task_succeeds_and_stop_needs_a_user(fake_server: RunningServer) -> None:
    url = fake_server.v1 + "/completion-messages/00000000-0000-0000-0000-000000000000/stop"
    assert httpx.post(url, json={"user": "u"}, headers=fake_server.headers()).json() == {"result": "success"}
    assert_dify_error(
        httpx.post(url, json={}, headers=fake_server.headers()), 400, "invalid_param", "Arg user must be provided."
    )


def test_a_client_that_disconnects_stops_the_generation(tmp_path: Path) -> None:
    with serve_app(catalog_with(chunk_delay_ms=200, first_token_ms=0), tmp_path) as server:
        body = {
            "inputs": {"query": "one two three four five six seven eight"},
            "user": "gone",
            "response_mode": "streaming",
        }
        with httpx.stream("POST", server.v1 + "/completion-messages", json=body, headers=server.headers()) as r:
            first = json.loads(next(line for line in r.iter_lines() if line.startswith("data: "))[6:])
        # the connection is closed here, mid-answer
        row = stored_message(server, first["message_id"])
        assert row["status"] == "stopped" and row["error"] == "client disconnected"
        assert row["answer"].startswith("Echo:") and row["answer"] != "Echo: " + "Answer briefly: one two three"
