"""Client mistakes are 4xx in the API's own shape, never 500s: template arguments that make a system-prompt
template blow up, NUL characters that PostgreSQL text cannot hold (on the real PostgreSQL), and URLs with
schemes other than http, https and data."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from promptd.store.repository import ADMIN_PROJECT, Repository
from tests.conftest import _fresh_pg_database
from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post, rows
from tests.serving import RunningServer, serve_app

TEMPLATED = copy.deepcopy(CHAT_CATALOG)
TEMPLATED["projects"]["demo"]["system_prompt_template"] = "{% for i in range(n) %}.{% endfor %}{{ word * n }}"


@pytest.fixture
def templated(tmp_path: Path) -> Iterator[RunningServer]:
    with serve_app(TEMPLATED, tmp_path / "data") as server:
        yield server


@pytest.mark.parametrize(
    "args",
    [{"n": 10**9, "word": "a"}, {"n": 3, "word": "a" * 50_000}, {"n": "three", "word": "a"}],
)
def test_template_arguments_that_break_the_sandbox_are_a_400(templated: RunningServer, args: dict[str, object]) -> None:
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "system_prompt_args": args}
    assert_adaptive_error(post(templated, "/api/v1/chat/completions", body), 400, "system prompt template")
    r = post(templated, "/v1/chat/completions", body)  # the OpenAI alias: its own shape
    assert r.status_code == 400 and r.json()["error"]["param"] == "system_prompt_args"
    ok = {**body, "system_prompt_args": {"n": 2, "word": "b"}}
    assert post(templated, "/api/v1/chat/completions", ok).status_code == 200


# --- NUL characters on PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg_server(pg_server_url: str | None, tmp_path: Path) -> Iterator[RunningServer]:
    if pg_server_url is None:
        pytest.skip("PostgreSQL not configured (set PROMPTD_TEST_POSTGRES_URL; CI does)")
    url, drop = _fresh_pg_database(pg_server_url)
    catalog = copy.deepcopy(CHAT_CATALOG)
    catalog["projects"]["demo"]["file_upload"] = {"image": {"enabled": True}}
    try:
        with serve_app(catalog, tmp_path / "data", database_url=url) as server:
            yield server
    finally:
        drop()


def test_nul_characters_are_a_400_on_postgresql(pg_server: RunningServer) -> None:
    s = pg_server

    async def admin_key(repo: Repository) -> str:
        key, _ = await repo.create_key(ADMIN_PROJECT, role="admin")
        return key

    admin = {"Authorization": f"Bearer {s.repo_call(admin_key)}"}
    chat = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "system_prompt_args": {"name": "A"}}
    answered = post(s, "/api/v1/chat/completions", chat).json()
    cid = answered["choices"][0]["message"]["id"]
    dify = post(s, "/v1/completion-messages", {"inputs": {"query": "q"}, "user": "u1", "response_mode": "blocking"})
    mid = dify.json()["message_id"]
    rows(s, expect=2)
    with httpx.Client(base_url=s.url, headers=s.headers(), timeout=60) as client:
        # Dify: feedback content, an end user's id, an upload's file name (raw NUL in the multipart header)
        r = client.post(f"/v1/messages/{mid}/feedbacks", json={"rating": "like", "user": "u1", "content": "a\x00b"})
        _client_side(r, dify_shape)
        _client_side(client.get("/v1/end-users/a%00b"), dify_shape, 404)
        png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
        multipart = (
            b'--B\r\nContent-Disposition: form-data; name="user"\r\n\r\nu1\r\n'
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--B--\r\n"
        )
        r = client.post(
            "/v1/files/upload", content=multipart, headers={"Content-Type": "multipart/form-data; boundary=B"}
        )
        _client_side(r, dify_shape, 201)
        # chat: feedback reason and details, an imported interaction
        fb = {"value": True, "completion_id": cid, "metric": "helpful", "reason": "a\x00b", "details": "c\x00d"}
        _client_side(client.post("/api/v1/feedback", json=fb), adaptive_shape)
        interaction = {
            "project": "demo",
            "messages": [{"role": "user", "content": "x\x00y"}],
            "completion": "z\x00",
            "feedbacks": [{"metric": "helpful", "value": True, "reason": "\x00"}],
        }
        _client_side(client.post("/api/v1/interactions", json=interaction), adaptive_shape)
        # admin: search and ids
        _client_side(client.get("/admin/v1/messages", params={"q": "a\x00b"}, headers=admin), admin_shape)
        _client_side(client.get("/admin/v1/messages/a%00b", headers=admin), admin_shape, 404)
        _client_side(client.get("/admin/v1/sessions/a%00b", headers=admin), admin_shape, 404)


def dify_shape(body: dict[str, object]) -> bool:
    return set(body) >= {"code", "message", "status"}


def adaptive_shape(body: dict[str, object]) -> bool:
    return set(body) == {"error"} and isinstance(body["error"], str)


def admin_shape(body: dict[str, object]) -> bool:
    return isinstance(body.get("error"), dict)


def _client_side(r: httpx.Response, shape: Callable[[dict[str, object]], bool], ok: int = 200) -> None:
    """Accepted (the NUL dropped) or refused with a 400 in the face's shape; a 404 for an id no one has."""
    assert r.status_code in (ok, 400), r.text
    if r.status_code == 400:
        assert shape(r.json()), r.text
