"""/info, /parameters, /meta, /site, feedback, /app/feedbacks, /end-users, and the routes a completion app
does not have, over real HTTP."""

from __future__ import annotations

import asyncio
import copy
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.domain.ids import end_user_id
from tests.conftest import FAKE_CATALOG
from tests.faces.dify.helpers import assert_dify_error, complete
from tests.serving import RunningServer, serve_app

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

RICH: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
RICH["projects"]["demo"].update(
    tags=["support", "beta"],
    author="ops",
    opening_statement="Hello!",
    suggested_questions=["What can you do?"],
    file_upload={"image": {"enabled": True, "number_limits": 2, "detail": "low", "transfer_methods": ["local_file"]}},
    site={"title": "Demo site", "icon": "🐙", "copyright": "ACME"},
    tool_icons={"search": "https://example.com/s.png", "calc": {"background": "#fff", "content": "🧮"}},
    inputs=[
        {"type": "text-input", "variable": "city", "label": "City", "required": True, "max_length": 48},
        {"type": "paragraph", "variable": "query", "label": "Query", "required": True},
        {"type": "select", "variable": "tone", "label": "Tone", "options": ["formal", "casual"], "default": "casual"},
        {"type": "number", "variable": "n", "label": "Count"},
        {"type": "number", "variable": "top", "label": "Top", "default": 3},
        {"type": "checkbox", "variable": "formal", "label": "Formal", "default": False},
        {"type": "text-input", "variable": "nick"},
    ],
)
RICH["projects"]["other"] = {"models": ["echo"], "prompt": "{{query}}", "site": None}


@pytest.fixture
def rich(tmp_path: Path) -> Any:
    with serve_app(RICH, tmp_path / "data") as server:
        yield server


def get(server: RunningServer, path: str, key: str | None = None, **params: Any) -> httpx.Response:
    return httpx.get(server.v1 + path, headers=server.headers(key), params=params)


def test_info_describes_the_app(rich: RunningServer) -> None:
    assert get(rich, "/info").json() == {
        "name": "Demo",
        "description": "A test app",
        "tags": ["support", "beta"],
        "mode": "completion",
        "author_name": "ops",
    }


def test_parameters_give_the_form_in_difys_shape(rich: RunningServer) -> None:
    p = get(rich, "/parameters").json()
    assert p["user_input_form"] == [
        {"text-input": {"label": "City", "variable": "city", "required": True, "default": "", "max_length": 48}},
        {"paragraph": {"label": "Query", "variable": "query", "required": True, "default": ""}},
        {
            "select": {
                "label": "Tone",
                "variable": "tone",
                "required": False,
                "default": "casual",
                "options": ["formal", "casual"],
            }
        },
        {"number": {"label": "Count", "variable": "n", "required": False, "default": ""}},
        {"number": {"label": "Top", "variable": "top", "required": False, "default": 3}},
        {"checkbox": {"label": "Formal", "variable": "formal", "required": False, "default": False}},
        # a field without a label is shown by its variable name
        {"text-input": {"label": "nick", "variable": "nick", "required": False, "default": ""}},
    ]
    assert p["opening_statement"] == "Hello!" and p["suggested_questions"] == ["What can you do?"]
    assert p["file_upload"] == {
        "enabled": False,  # Dify's newer keys, at their defaults: only the older `image` block is set
        "allowed_file_types": ["image"],
        "allowed_file_extensions": [],
        "allowed_file_upload_methods": ["remote_url", "local_file"],
        "number_limits": 3,
        "image": {"enabled": True, "number_limits": 2, "detail": "low", "transfer_methods": ["local_file"]},
    }
    assert p["system_parameters"] == {
        "file_size_limit": 15,
        "image_file_size_limit": 10,
        "audio_file_size_limit": 50,
        "video_file_size_limit": 100,
        "workflow_file_upload_limit": 10,
    }
    for feature in (
        "suggested_questions_after_answer",
        "speech_to_text",
        "retriever_resource",
        "annotation_reply",
        "more_like_this",
    ):
        assert p[feature] == {"enabled": False}
    assert p["text_to_speech"]["enabled"] is False
    assert p["sensitive_word_avoidance"] == {"enabled": False, "type": "", "configs": []}


def test_parameters_need_no_user_and_report_the_servers_upload_limits(tmp_path: Path) -> None:
    # a kind left out of upload_limits_mb keeps Dify's default; a fractional limit is reported as it is
    with serve_app(FAKE_CATALOG, tmp_path, upload_limits_mb={"image": 2, "document": 0.5}) as server:
        p = get(server, "/parameters").json()
    assert p["system_parameters"] == {
        "file_size_limit": 0.5,
        "image_file_size_limit": 2,
        "audio_file_size_limit": 50,
        "video_file_size_limit": 100,
        "workflow_file_upload_limit": 10,
    }
    # the defaults when the catalog sets nothing: uploads off, no opening statement, the default voice
    assert p["file_upload"] == {
        "enabled": False,
        "allowed_file_types": ["image"],
        "allowed_file_extensions": [],
        "allowed_file_upload_methods": ["remote_url", "local_file"],
        "number_limits": 3,
        "image": {
            "enabled": False,
            "number_limits": 3,
            "detail": "high",
            "transfer_methods": ["remote_url", "local_file"],
        },
    }
    assert p["opening_statement"] is None and p["suggested_questions"] == []
    assert p["text_to_speech"] == {"enabled": False, "voice": "alloy", "language": "en-US", "autoPlay": "disabled"}


def test_meta_and_site(rich: RunningServer) -> None:
    assert get(rich, "/meta").json() == {
        "tool_icons": {"search": "https://example.com/s.png", "calc": {"background": "#fff", "content": "🧮"}}
    }
    site = get(rich, "/site").json()
    assert site["title"] == "Demo site" and site["icon"] == "🐙" and site["copyright"] == "ACME"
    assert site["icon_type"] == "emoji" and site["description"] == "A test app"
    assert {"chat_color_theme", "privacy_policy", "default_language", "show_workflow_steps"} <= set(site)


def test_site_is_forbidden_when_the_app_has_none(rich: RunningServer) -> None:
    assert_dify_error(get(rich, "/site", key=rich.new_key("other")), 403, "forbidden")


def answer(server: RunningServer, user: str, key: str | None = None) -> str:
    r = complete(server, {"inputs": {"query": "hi", "city": "Paris"}, "user": user}, key=key)
    assert r.status_code == 200, r.text
    return str(r.json()["message_id"])


def feedback(server: RunningServer, message_id: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(f"{server.v1}/messages/{message_id}/feedbacks", json=body, headers=server.headers(key))


def feedbacks(server: RunningServer, **params: Any) -> list[dict[str, Any]]:
    r = get(server, "/app/feedbacks", **params)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_feedback_is_created_updated_and_revoked(fake_server: RunningServer) -> None:
    mid = answer(fake_server, "alice")
    assert feedback(fake_server, mid, {"rating": "like", "user": "alice", "content": "nice"}).json() == {
        "result": "success"
    }
    [fb] = feedbacks(fake_server)
    assert fb["message_id"] == mid and fb["rating"] == "like" and fb["content"] == "nice"
    assert fb["from_source"] == "user" and fb["from_end_user_id"] == end_user_id("demo", "alice")
    assert fb["app_id"] == "demo" and fb["conversation_id"] is None and fb["from_account_id"] is None
    assert ISO.match(fb["created_at"]) and ISO.match(fb["updated_at"])

    assert feedback(fake_server, mid, {"rating": "dislike", "user": "alice"}).status_code == 200
    [updated] = feedbacks(fake_server)  # still one row (the same one), now a dislike without content
    assert updated["id"] == fb["id"] and updated["rating"] == "dislike" and updated["content"] is None
    assert updated["created_at"] == fb["created_at"] and ISO.match(updated["updated_at"])

    assert feedback(fake_server, mid, {"rating": None, "user": "alice"}).json() == {"result": "success"}
    assert feedbacks(fake_server) == []
    assert_dify_error(
        feedback(fake_server, mid, {"rating": None, "user": "alice"}),
        400,
        "invalid_param",
        "rating cannot be None when feedback not exists",
    )


def test_feedback_needs_the_users_own_message(fake_server: RunningServer) -> None:
    mid = answer(fake_server, "alice")
    for target, body in [
        (mid, {"rating": "like", "user": "bob"}),
        ("00000000-0000-0000-0000-000000000000", {"rating": "like", "user": "alice"}),
    ]:
        assert_dify_error(feedback(fake_server, target, body), 404, "not_found", "Message Not Exists.")
    assert_dify_error(
        feedback(fake_server, mid, {"rating": "like"}), 400, "invalid_param", "Arg user must be provided."
    )
    assert_dify_error(feedback(fake_server, mid, {"rating": "love", "user": "alice"}), 400, "invalid_param")
    assert feedbacks(fake_server) == []


def test_concurrent_feedback_on_one_message_keeps_one_row(fake_server: RunningServer) -> None:
    """Clients retry and double-click: the same user's likes racing on the same message must all succeed and
    leave exactly one feedback per (message, user)."""
    ids = [answer(fake_server, "alice") for _ in range(4)]

    async def like_all() -> list[int]:
        async with httpx.AsyncClient(headers=fake_server.headers(), timeout=60) as client:
            replies = await asyncio.gather(
                *[
                    client.post(f"{fake_server.v1}/messages/{mid}/feedbacks", json={"rating": r, "user": "alice"})
                    for mid in ids
                    for r in ["like", "dislike"] * 8
                ]
            )
        return [r.status_code for r in replies]

    assert set(asyncio.run(like_all())) == {200}
    rows = feedbacks(fake_server, limit=101)
    assert sorted(f["message_id"] for f in rows) == sorted(ids)
    assert {f["rating"] for f in rows} <= {"like", "dislike"}


def test_app_feedbacks_lists_every_users_feedback(fake_server: RunningServer) -> None:
    mid_a, mid_b = answer(fake_server, "alice"), answer(fake_server, "bob")
    feedback(fake_server, mid_a, {"rating": "like", "user": "alice"})
    feedback(fake_server, mid_b, {"rating": "dislike", "user": "bob", "content": "wrong"})
    rows = {f["from_end_user_id"]: f for f in feedbacks(fake_server)}
    assert rows[end_user_id("demo", "alice")]["rating"] == "like"
    assert rows[end_user_id("demo", "bob")]["content"] == "wrong"


def test_app_feedbacks_pages_newest_first_and_checks_limits(fake_server: RunningServer) -> None:
    ids = [answer(fake_server, f"user{i}") for i in range(3)]
    for i, mid in enumerate(ids):
        feedback(fake_server, mid, {"rating": "like", "user": f"user{i}"})
    assert [f["message_id"] for f in feedbacks(fake_server)] == ids[::-1]
    assert [f["message_id"] for f in feedbacks(fake_server, page=2, limit=2)] == [ids[0]]
    assert [f["message_id"] for f in feedbacks(fake_server, page=1, limit=2)] == ids[:0:-1]
    assert feedbacks(fake_server, page=3, limit=2) == []
    assert len(feedbacks(fake_server, limit=1)) == 1 and len(feedbacks(fake_server, limit=101)) == 3
    for bad in ({"limit": 0}, {"limit": 102}, {"page": 0}, {"limit": "x"}, {"page": "-1"}):
        assert_dify_error(get(fake_server, "/app/feedbacks", **bad), 400, "invalid_param")


def test_end_users_are_resolved_by_their_stable_id(fake_server: RunningServer) -> None:
    answer(fake_server, "abc-123")
    uid = end_user_id("demo", "abc-123")
    body = get(fake_server, f"/end-users/{uid}").json()
    assert body["id"] == uid and body["external_user_id"] == "abc-123" and body["session_id"] == "abc-123"
    assert body["type"] == "service_api" and body["is_anonymous"] is False and body["app_id"] == "demo"
    assert set(body) == {
        "id",
        "tenant_id",
        "app_id",
        "type",
        "external_user_id",
        "name",
        "is_anonymous",
        "session_id",
        "created_at",
        "updated_at",
    }
    assert ISO.match(body["created_at"]) and ISO.match(body["updated_at"])
    assert_dify_error(get(fake_server, f"/end-users/{end_user_id('demo', 'nobody')}"), 404, "end_user_not_found")


def test_the_uploader_of_a_file_is_an_end_user(fake_server: RunningServer) -> None:
    """Dify's docs: /end-users resolves the `created_by` of an upload. An upload without `user` belongs to the
    anonymous DEFAULT-USER."""
    for user, anonymous in (("carol", False), (None, True)):
        up = httpx.post(
            fake_server.v1 + "/files/upload",
            files={"file": ("a.txt", b"hello", "text/plain")},
            data={"user": user} if user else {},
            headers=fake_server.headers(),
        )
        body = get(fake_server, f"/end-users/{up.json()['created_by']}").json()
        assert body["external_user_id"] == (user or "DEFAULT-USER") and body["is_anonymous"] is anonymous


def test_a_key_sees_only_its_own_project(rich: RunningServer) -> None:
    other = rich.new_key("other")
    mid = answer(rich, "alice")
    assert_dify_error(feedback(rich, mid, {"rating": "like", "user": "alice"}, key=other), 404, "not_found")
    assert_dify_error(get(rich, f"/end-users/{end_user_id('demo', 'alice')}", key=other), 404, "end_user_not_found")
    assert get(rich, "/info", key=other).json()["name"] == "other"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/chat-messages"),
        ("POST", "/chat-messages/t1/stop"),
        ("GET", "/conversations"),
        ("GET", "/messages"),
        ("GET", "/messages/m1/suggested"),
        ("DELETE", "/conversations/c1"),
        ("POST", "/conversations/c1/name"),
        ("GET", "/apps/annotations"),
        ("PUT", "/apps/annotations/a1"),
        ("POST", "/apps/annotation-reply/enable"),
    ],
)
def test_chat_app_routes_answer_not_chat_app(fake_server: RunningServer, method: str, path: str) -> None:
    r = httpx.request(method, fake_server.v1 + path, headers=fake_server.headers())
    assert_dify_error(r, 400, "not_chat_app", "Please check if your Chat app mode matches the right API route.")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/workflows/run"), ("GET", "/workflows/run/r1"), ("POST", "/workflows/tasks/t1/stop")],
)
def test_workflow_routes_answer_not_workflow_app(fake_server: RunningServer, method: str, path: str) -> None:
    r = httpx.request(method, fake_server.v1 + path, headers=fake_server.headers())
    assert_dify_error(r, 400, "not_workflow_app")


def test_app_routes_need_a_key(fake_server: RunningServer) -> None:
    for path in ("/info", "/parameters", "/meta", "/site", "/app/feedbacks", "/chat-messages"):
        r = httpx.request("POST" if path == "/chat-messages" else "GET", fake_server.v1 + path)
        assert_dify_error(r, 401, "unauthorized", "Authorization header must be provided and start with 'Bearer'")


def test_unknown_paths_and_methods_keep_difys_error_shape(fake_server: RunningServer) -> None:
    assert_dify_error(get(fake_server, "/nope"), 404, "not_found")
    assert_dify_error(get(fake_server, "/completion-messages"), 405, "method_not_allowed")


def test_a_revoked_key_stops_working(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path, key_cache_ttl=0) as server:
        assert get(server, "/info").status_code == 200
        server.repo_call(lambda repo: repo.revoke_key(server.key))
        r = get(server, "/info")
        assert_dify_error(r, 401, "unauthorized", "Access token is invalid")
        assert r.headers["www-authenticate"] == 'Bearer realm="api"'


def test_an_expired_key_stops_working(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path) as server:

        async def expired(repo: Any) -> str:
            key, _ = await repo.create_key("demo", expires_at=time.time() - 1)
            return str(key)

        key = server.repo_call(expired)
        assert_dify_error(get(server, "/info", key=key), 401, "unauthorized", "Access token is invalid")


def test_an_admin_key_does_not_call_the_api_faces(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path) as server:

        async def admin(repo: Any) -> str:
            key, _ = await repo.create_key("*", role="admin")
            return str(key)

        key = server.repo_call(admin)
        assert_dify_error(get(server, "/info", key=key), 401, "unauthorized", "Access token is invalid")
        chat = httpx.post(
            server.url + "/api/v1/chat/completions",
            headers=server.headers(key),
            json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 401 and "error" in chat.json()


def test_a_key_whose_project_left_the_catalog_is_forbidden(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path) as server:
        orphan = server.new_key("gone")
        assert_dify_error(get(server, "/info", key=orphan), 403, "forbidden", "The app no longer exists.")


def test_a_chat_project_is_not_a_dify_completion_app(tmp_path: Path) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["talk"] = {"mode": "chat", "models": ["echo"]}
    with serve_app(catalog, tmp_path, project="talk") as server:
        r = complete(server, {"inputs": {}, "user": "u"})
        assert_dify_error(r, 400, "app_unavailable", "App unavailable, please check your app configurations.")
        r = httpx.post(server.v1 + "/chat-messages", headers=server.headers())
        assert "/api/v1/chat/completions" in assert_dify_error(r, 400, "app_unavailable")["message"]
