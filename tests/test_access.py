"""Request ids: taken from X-Request-Id or made, returned on every response (errors and streams too), kept in
the record and searchable; and the access line written for each request. A real server in a thread (the fake
provider stands for a model whose answer the tests know)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from promptd.access import request_id_from
from promptd.logs import JsonFormatter, PlainFormatter, RequestIdFilter
from tests.conftest import FAKE_CATALOG
from tests.serving import RunningServer, serve_app

BODY = {"inputs": {"query": "hi"}, "user": "u"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def test_a_usable_client_id_is_kept_and_anything_else_is_replaced() -> None:
    assert request_id_from([(b"x-request-id", b"abc-123")]) == "abc-123"
    assert request_id_from([(b"x-request-id", b"a" * 128)]) == "a" * 128
    for bad in (b"a" * 129, b"", b"   ", "caf\u00e9".encode(), b"a\x00b", b"a\nb"):
        assert HEX32.match(request_id_from([(b"x-request-id", bad)])), bad
    assert HEX32.match(request_id_from([(b"accept", b"*/*")]))


def test_every_response_carries_the_request_id(fake_server: RunningServer) -> None:
    url, h = fake_server.v1 + "/completion-messages", fake_server.headers()
    r = httpx.post(url, json=BODY, headers={**h, "X-Request-Id": "client-id-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "client-id-1"
    made = httpx.post(url, json=BODY, headers=h).headers["x-request-id"]
    assert HEX32.match(made)
    assert HEX32.match(httpx.post(url, json=BODY, headers={**h, "X-Request-Id": "x" * 200}).headers["x-request-id"])
    # errors: a bad key (401), a bad body (400), an unknown path (404), on both faces and outside them
    assert httpx.post(url, json=BODY, headers={"X-Request-Id": "e1"}).headers["x-request-id"] == "e1"
    assert httpx.post(url, json={"user": "u"}, headers={**h, "X-Request-Id": "e2"}).headers["x-request-id"] == "e2"
    assert httpx.get(fake_server.v1 + "/nope", headers={"X-Request-Id": "e3"}).headers["x-request-id"] == "e3"
    chat = fake_server.url + "/api/v1/chat/completions"
    r = httpx.post(chat, json={"model": "demo"}, headers={**h, "X-Request-Id": "e4"})
    assert r.status_code == 400 and r.headers["x-request-id"] == "e4"
    assert HEX32.match(httpx.get(fake_server.url + "/health").headers["x-request-id"])
    # a stream: the header comes with the stream's head
    with httpx.stream(
        "POST", url, json={**BODY, "response_mode": "streaming"}, headers={**h, "X-Request-Id": "s1"}
    ) as r:
        assert r.headers["x-request-id"] == "s1"
        assert "message_end" in r.read().decode()


def test_the_record_keeps_the_request_id_and_the_log_search_finds_it(fake_server: RunningServer) -> None:
    h = fake_server.headers()
    r = httpx.post(fake_server.v1 + "/completion-messages", json=BODY, headers={**h, "X-Request-Id": "find-me"})
    message_id = r.json()["id"]
    chat = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(fake_server.url + "/api/v1/chat/completions", json=chat, headers={**h, "X-Request-Id": "chat-1"})
    chat_id = r.json()["id"]
    admin = {"Authorization": f"Bearer {admin_key(fake_server)}"}
    found = httpx.get(fake_server.url + "/admin/v1/messages", params={"request_id": "find-me"}, headers=admin).json()
    assert [m["id"] for m in found["data"]] == [message_id]
    assert found["data"][0]["request_id"] == "find-me"
    detail = httpx.get(f"{fake_server.url}/admin/v1/messages/{message_id}", headers=admin).json()
    assert detail["request_id"] == "find-me"
    found = httpx.get(fake_server.url + "/admin/v1/messages", params={"request_id": "chat-1"}, headers=admin).json()
    assert [m["id"].replace("-", "") for m in found["data"]] == [chat_id.removeprefix("chatcmpl-")]
    nothing = httpx.get(fake_server.url + "/admin/v1/messages", params={"request_id": "nope"}, headers=admin).json()
    assert nothing["data"] == []


def admin_key(server: RunningServer) -> str:
    async def make(repo: object) -> str:
        key, _ = await repo.create_key("_admin", name="t", role="admin")  # type: ignore[attr-defined]
        return str(key)

    return str(server.repo_call(make))


@pytest.fixture
def access_lines() -> Iterator[list[logging.LogRecord]]:
    """The records of the `promptd.access` logger while the test runs."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("promptd.access")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def test_one_access_line_per_request_with_what_the_engine_knew(
    fake_server: RunningServer, access_lines: list[logging.LogRecord]
) -> None:
    h = {**fake_server.headers(), "X-Request-Id": "line-1"}
    httpx.post(fake_server.v1 + "/completion-messages", json=BODY, headers=h)
    httpx.post(fake_server.v1 + "/completion-messages", json=BODY, headers={"X-Request-Id": "line-2"})
    ok, unauthorized = (r for r in access_lines if r.request_id in ("line-1", "line-2"))  # type: ignore[attr-defined]
    fields = ok.fields  # type: ignore[attr-defined]
    assert ok.levelno == logging.INFO and ok.getMessage() == "POST /v1/completion-messages 200"
    assert fields["project"] == "demo" and fields["model"] == "echo" and fields["key_id"]
    # "Echo: Answer briefly: hi": 4 completion tokens at 0.60 per 1M
    assert fields["completion_tokens"] == 4 and fields["currency"] == "USD" and fields["cost"]
    assert fields["latency_ms"] > 0 and fields["ttft_ms"] is not None
    assert unauthorized.fields["status"] == 401 and unauthorized.fields["model"] is None  # type: ignore[attr-defined]
    plain = PlainFormatter().format(ok)
    assert "[line-1] POST /v1/completion-messages 200 project=demo" in plain and "model=echo" in plain
    as_json = json.loads(JsonFormatter().format(ok))
    assert as_json["request_id"] == "line-1" and as_json["status"] == 200 and as_json["logger"] == "promptd.access"


@pytest.fixture
def engine_lines() -> Iterator[list[logging.LogRecord]]:
    """The records of the `promptd.engine` logger while the test runs."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("promptd.engine")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_upstream_failure_fallback_and_breaker_each_make_one_line_about_the_request(
    tmp_path: Path, engine_lines: list[logging.LogRecord]
) -> None:
    # a fake provider configured to fail stands for an upstream that is down; `healthy` answers
    catalog = json.loads(json.dumps(FAKE_CATALOG))
    catalog["providers"]["down"] = {"kind": "fake", "fail": "unavailable"}
    catalog["models"]["broken"] = {
        "provider": "down",
        "model": "x",
        "fallbacks": ["echo"],
        "retry": {"attempts": 0},
        "circuit": {"failures": 1, "cooldown_s": 60},
    }
    catalog["projects"]["demo"]["models"] = ["broken", "echo"]
    with serve_app(catalog, tmp_path / "data") as server:
        r = httpx.post(
            server.v1 + "/completion-messages", json=BODY, headers={**server.headers(), "X-Request-Id": "ev-1"}
        )
        assert r.status_code == 200 and r.json()["answer"] == "Echo: Answer briefly: hi"
    about = [(rec.levelname, rec.getMessage()) for rec in engine_lines if rec.request_id == "ev-1"]  # type: ignore[attr-defined]
    assert ("WARNING", "upstream failure: broken down/x: provider_unavailable") in about
    assert ("WARNING", "circuit opened for down/x") in about
    assert ("WARNING", "fallback taken: broken -> echo") in about
