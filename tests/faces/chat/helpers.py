"""Helpers for chat-face tests: the error-shape check, a catalog with tools, templates and campaigns."""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx

from tests.conftest import FAKE_CATALOG
from tests.serving import RunningServer

__all__ = ["CHAT_CATALOG", "assert_adaptive_error", "assert_openai_error", "data_blocks", "post", "rows"]

CHAT_CATALOG: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
CHAT_CATALOG["models"]["alt"] = {
    "provider": "fake",
    "model": "alt",
    "price": {"input": "1", "output": "2", "unit": "1M"},
}
CHAT_CATALOG["models"]["vectors"] = {"provider": "fake", "model": "vectors", "type": "embedding"}
CHAT_CATALOG["projects"]["demo"].update(
    models=["echo", "alt", "vectors"],
    embedding_model="vectors",
    system_prompt_template="You help {{ name }}.",
    tools={
        "get_weather": {"description": "Weather for a city", "parameters": {"type": "object", "properties": {}}},
        "search": {"description": "Search the web", "enabled": False},
    },
    metrics={"helpful": {"kind": "bool"}, "stars": {"kind": "scalar"}},
)
CHAT_CATALOG["projects"]["plain"] = {"mode": "chat", "models": ["echo"]}


def post(server: RunningServer, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=server.headers(key), timeout=60)


def data_blocks(raw: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order (`[DONE]` included)."""
    return [b.removeprefix("data: ") for b in raw.split("\n\n") if b.startswith("data: ")]


def assert_adaptive_error(resp: httpx.Response, status: int, contains: str = "") -> str:
    """Adaptive's error shape: exactly {"error": "<message>"}, with this status."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    assert contains in body["error"], body
    return str(body["error"])


def rows(server: RunningServer, project: str = "demo", expect: int | None = None) -> list[dict[str, Any]]:
    """The project's stored messages, oldest first (waits for `expect` rows: records are written off-path)."""
    server.settle()
    deadline = time.monotonic() + 20
    while True:
        found = server.repo_call(lambda repo: repo.list_messages(project, limit=10_000))
        if expect is None or len(found) >= expect or time.monotonic() > deadline:
            return sorted(found, key=lambda r: (r["created_at"], r["choice_index"]))
        time.sleep(0.02)


def assert_openai_error(
    resp: httpx.Response, status: int, param: str | None, code: str | None = None, kind: str = "invalid_request_error"
) -> dict[str, Any]:
    """OpenAI's error shape: exactly {"error": {message, type, param, code}}, with this status, type and param (and
    code, when given)."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    assert (error["type"], error["param"]) == (kind, param), error
    assert code is None or error["code"] == code, error
    return error
