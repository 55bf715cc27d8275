"""The Dify face on the real embedded model (SmolLM2 through llama.cpp). Shape, token counts, streaming
order, stop mid-stream and concurrency are checked; the wording of the answers is not."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.catalog.load import BUILTIN_CATALOG
from tests.serving import RunningServer, serve_app

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_app(BUILTIN_CATALOG, tmp_path_factory.mktemp("local") / "data") as server:
        yield server


def ask(server: RunningServer, query: str, **extra: Any) -> dict[str, Any]:
    body = {"inputs": {"query": query}, "user": "it", **extra}
    r = httpx.post(server.v1 + "/completion-messages", json=body, headers=server.headers(), timeout=300)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def stream_events(server: RunningServer, query: str, user: str = "it") -> Iterator[dict[str, Any]]:
    body = {"inputs": {"query": query}, "user": user, "response_mode": "streaming"}
    with httpx.stream(
        "POST", server.v1 + "/completion-messages", json=body, headers=server.headers(), timeout=120
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])


def stored(server: RunningServer, message_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = server.repo_call(lambda repo: repo.get_message(message_id, "demo"))
        if row is not None:
            return row  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"message {message_id} was never recorded")


def test_blocking_answer_is_real_text_with_token_counts(local_server: RunningServer) -> None:
    body = ask(local_server, "What is the capital of France?")
    usage = body["metadata"]["usage"]
    assert body["answer"].strip()
    assert usage["prompt_tokens"] > 5  # the rendered prompt plus the chat template
    assert 0 < usage["completion_tokens"] <= 128  # the demo project's max_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["total_price"] == "0.0000000" and usage["currency"] == "USD"
    row = stored(local_server, body["message_id"])
    assert row["answer"] == body["answer"] and row["status"] == "normal"
    assert row["completion_tokens"] == usage["completion_tokens"] and row["provider"] == "local"


def test_streaming_sends_messages_in_order_then_message_end(local_server: RunningServer) -> None:
    events = list(stream_events(local_server, "Name three colors."))
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "message_end" and set(kinds[:-1]) == {"message"} and len(kinds) > 2
    assert len({e["task_id"] for e in events}) == 1 and len({e["message_id"] for e in events}) == 1
    answer = "".join(e["answer"] for e in events[:-1])
    usage = events[-1]["metadata"]["usage"]
    # one delta per generated token, give or take the empty pieces llama.cpp does not send
    assert abs(usage["completion_tokens"] - (len(events) - 1)) <= 2
    assert stored(local_server, events[0]["message_id"])["answer"] == answer


def test_stop_mid_stream_really_stops_and_keeps_the_partial_answer(local_server: RunningServer) -> None:
    events: list[dict[str, Any]] = []
    stream = stream_events(local_server, "Write a very long story about a dragon, in many chapters.", user="stopper")
    for e in stream:
        events.append(e)
        if len(events) == 3:
            r = httpx.post(
                f"{local_server.v1}/completion-messages/{e['task_id']}/stop",
                json={"user": "stopper"},
                headers=local_server.headers(),
                timeout=30,
            )
            assert r.json() == {"result": "success"}
    assert events[-1]["event"] == "message_end"
    usage = events[-1]["metadata"]["usage"]
    assert usage["completion_tokens"] < 128  # stopped well before the limit
    row = stored(local_server, events[0]["message_id"])
    assert row["status"] == "stopped"
    assert row["answer"] == "".join(e.get("answer", "") for e in events[:-1])
    assert row["prompt_tokens"] > 0
    # the slot is free again: the next request is answered
    assert ask(local_server, "Say hi.")["answer"].strip()


def test_concurrent_requests_are_all_answered(local_server: RunningServer) -> None:
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results.append(ask(local_server, f"Count to {i + 2}."))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(400)
    assert not errors
    assert len(results) == 4 and len({r["message_id"] for r in results}) == 4
    assert all(r["metadata"]["usage"]["completion_tokens"] > 0 for r in results)


def test_graceful_shutdown_records_every_answered_request(tmp_path: Path) -> None:
    with serve_app(BUILTIN_CATALOG, tmp_path / "data") as server:
        ids = [ask(server, f"Say the number {i}.")["message_id"] for i in range(3)]
    # the server has stopped: every answered request is already in the database
    for message_id in ids:
        row = server.repo_call(lambda repo, m=message_id: repo.get_message(m, "demo"))
        assert row is not None and row["status"] == "normal"


def test_the_model_load_is_logged_with_its_duration_and_readyz_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="promptd.local")
    with serve_app(BUILTIN_CATALOG, tmp_path / "data") as server:
        deadline = time.monotonic() + 120
        while (ready := httpx.get(server.url + "/readyz", timeout=30)).status_code != 200:
            assert ready.status_code == 503 and ready.json()["failed"] == ["model:local"], ready.text
            assert ready.json()["checks"]["model:local"]["error"] == "loading"
            assert time.monotonic() < deadline, "the embedded model did not load"
            time.sleep(0.1)
        assert ready.json()["checks"]["model:local"] == {"ok": True, "state": "loaded"}
    messages = [r.getMessage() for r in caplog.records if r.name == "promptd.local"]
    assert any("loading the model" in m and ".gguf" in m for m in messages), messages
    assert any(re.search(r"SmolLM2.*\.gguf loaded in \d+\.\d\d s", m) for m in messages), messages
