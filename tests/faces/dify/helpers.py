"""Helpers for Dify-face tests: the error-shape check every error path uses, SSE parsing, stored rows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from promptd.catalog.schema import OpenAIProviderConfig
from promptd.providers.openai_compat import OpenAICompatProvider
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app

__all__ = ["assert_dify_error", "complete", "serve_with_files", "sse_events", "stored_message", "stream"]


def assert_dify_error(resp: httpx.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """Dify's error shape: exactly {code, message, status} (+ params for input errors), with this status."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) <= {"code", "message", "status", "params"}, body
    assert body["code"] == code and body["status"] == status and isinstance(body["message"], str), body
    if message is not None:
        assert body["message"] == message, body
    return body


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any] | str]:
    """`data: {json}` lines as dicts; a bare `event: ping` as the string "ping"."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])
        elif line == "event: ping":
            yield "ping"
        else:
            assert line == "", f"unexpected SSE line {line!r}"


def complete(server: RunningServer, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(server.v1 + "/completion-messages", json=body, headers=server.headers(key), timeout=60)


def stream(server: RunningServer, body: dict[str, Any]) -> list[dict[str, Any] | str]:
    body = {**body, "response_mode": "streaming"}
    with httpx.stream("POST", server.v1 + "/completion-messages", json=body, headers=server.headers(), timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(r.iter_lines()))


def stored_message(server: RunningServer, message_id: str, project: str = "demo") -> dict[str, Any]:
    """The message row, once the recorder has written it (records are written off the request path)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        row = server.repo_call(lambda repo: repo.get_message(message_id, project))
        if row is not None:
            return row  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"message {message_id} was never recorded")


def message_count(server: RunningServer, project: str = "demo") -> int:
    server.settle()
    rows = server.repo_call(lambda repo: repo.list_messages(project, limit=10_000))
    return len(rows)


def serve_with_files(catalog: dict[str, Any], data: Any, model: RecordingProvider, **options: Any) -> Any:
    """`serve_app` for tests of remote files: `model` (a RecordingProvider: a test reads the parts it was given)
    serves the `fake` provider, the catalog's `openai` provider is a real OpenAI-compatible client (of the test's
    speech server), and 127.0.0.2 stands for the internet (the SSRF guard refuses loopback otherwise)."""
    providers: dict[str, Any] = {
        "fake": model,
        "openai": OpenAICompatProvider("openai", OpenAIProviderConfig(**catalog["providers"]["openai"])),
    }
    return serve_app(catalog, data, providers=providers, fetch_allow_networks=("127.0.0.2/32",), **options)
