"""CORS through a real server, with the requests a browser sends: preflights (OPTIONS with
Access-Control-Request-Method) and the actual calls, for origins allowed globally (settings), per project (the
catalog's `cors_origins`) and nowhere. The fake provider stands for a model."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAKE_CATALOG
from tests.serving import RunningServer, serve_app

EVERYONE = "https://app.example"
SHOP = "http://shop.example:3000"
STRANGER = "https://evil.example"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"]["cors_origins"] = [SHOP]
    catalog["projects"]["other"] = {**copy.deepcopy(FAKE_CATALOG["projects"]["demo"]), "name": "Other"}
    with serve_app(catalog, tmp_path / "data", cors_origins=(EVERYONE,)) as running:
        yield running


def preflight(server: RunningServer, path: str, origin: str) -> httpx.Response:
    return httpx.options(
        server.url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


@pytest.mark.parametrize("path", ["/v1/completion-messages", "/api/v1/chat/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("origin", [EVERYONE, SHOP])
def test_a_preflight_from_an_allowed_origin_is_answered(server: RunningServer, path: str, origin: str) -> None:
    reply = preflight(server, path, origin)
    assert reply.status_code == 204, reply.text
    assert reply.headers["access-control-allow-origin"] == origin
    assert "POST" in reply.headers["access-control-allow-methods"]
    assert reply.headers["access-control-allow-headers"] == "authorization,content-type"
    assert reply.headers["vary"] == "Origin"
    assert int(reply.headers["access-control-max-age"]) > 0


def test_a_preflight_from_an_origin_allowed_nowhere_is_refused_in_each_apis_shape(server: RunningServer) -> None:
    dify = preflight(server, "/v1/completion-messages", STRANGER)
    assert dify.status_code == 403 and "access-control-allow-origin" not in dify.headers
    assert dify.json()["code"] == "forbidden" and dify.json()["status"] == 403 and STRANGER in dify.json()["message"]
    chat = preflight(server, "/api/v1/chat/completions", STRANGER)
    assert chat.status_code == 403 and STRANGER in chat.json()["error"]
    admin = preflight(server, "/admin/v1/projects", STRANGER)
    assert admin.status_code == 403 and admin.json()["error"]["code"] == "forbidden"
    alias = preflight(server, "/v1/chat/completions", STRANGER)  # OpenAI's shape, not Adaptive's
    assert alias.status_code == 403 and alias.json()["error"]["type"] == "invalid_request_error"
    assert alias.json()["error"]["code"] == "forbidden" and STRANGER in alias.json()["error"]["message"]


def complete(server: RunningServer, origin: str, key: str | None = None) -> httpx.Response:
    return httpx.post(
        server.v1 + "/completion-messages",
        json={"inputs": {"query": "hi"}, "user": "u1"},
        headers={**server.headers(key), "Origin": origin},
        timeout=30,
    )


def test_answers_carry_cors_headers_for_the_origins_their_project_allows(server: RunningServer) -> None:
    other_key = server.new_key("other")
    for origin, key, allowed in [
        (EVERYONE, None, True),  # global: every project
        (EVERYONE, other_key, True),
        (SHOP, None, True),  # demo's own origin, with demo's key
        (SHOP, other_key, False),  # demo's origin may not read another project's answers
        (STRANGER, None, False),
    ]:
        reply = complete(server, origin, key)
        assert reply.status_code == 200, reply.text
        assert reply.headers.get("access-control-allow-origin") == (origin if allowed else None), (origin, key)
        assert "Origin" in reply.headers["vary"]
        if allowed:
            assert "Server-Timing" in reply.headers["access-control-expose-headers"]


def test_errors_before_the_key_is_known_carry_only_the_global_origins(server: RunningServer) -> None:
    bad = complete(server, EVERYONE, "app-wrong")
    assert bad.status_code == 401 and bad.headers["access-control-allow-origin"] == EVERYONE
    assert "access-control-allow-origin" not in complete(server, SHOP, "app-wrong").headers


def test_a_streamed_answer_carries_the_header(server: RunningServer) -> None:
    with httpx.stream(
        "POST",
        server.v1 + "/completion-messages",
        json={"inputs": {"query": "hi"}, "user": "u1", "response_mode": "streaming"},
        headers={**server.headers(), "Origin": SHOP},
        timeout=30,
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] == SHOP
        assert b'"event":"message_end"' in reply.read().replace(b" ", b"")


def test_a_catalog_origin_with_a_path_is_refused_by_the_checker() -> None:
    from promptd.catalog.load import parse_catalog
    from promptd.errors import CatalogError

    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"]["cors_origins"] = ["https://app.example/path"]
    with pytest.raises(CatalogError, match=r"projects\.demo\.cors_origins"):
        parse_catalog(catalog, {}, source="<test>")
