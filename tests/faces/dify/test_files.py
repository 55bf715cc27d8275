"""Uploads, previews, and files in completion-messages reaching a vision-capable model, over real HTTP."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.domain.ids import end_user_id
from tests.conftest import FAKE_CATALOG
from tests.faces.dify.helpers import assert_dify_error, complete, message_count
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


VISION: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
VISION["models"]["echo"]["vision"] = True
VISION["projects"]["demo"]["file_upload"] = {"image": {"enabled": True, "number_limits": 2}}
VISION["projects"]["blind"] = {"models": ["text"], "prompt": "{{query}}", "file_upload": {"image": {"enabled": True}}}
VISION["projects"]["closed"] = {"models": ["echo"], "prompt": "{{query}}"}
VISION["models"]["text"] = {"provider": "fake", "model": "text"}


@pytest.fixture
def vision(tmp_path: Path) -> Iterator[tuple[RunningServer, RecordingProvider]]:
    provider = RecordingProvider(reply="I see it")  # stands for a vision model
    with serve_app(VISION, tmp_path / "data", providers={"fake": provider}) as server:
        yield server, provider


def upload(
    server: RunningServer,
    files: list[tuple[str, Any]] | None = None,
    user: str | None = "alice",
    key: str | None = None,
) -> httpx.Response:
    data = {"user": user} if user else {}
    if files is None:
        files = [("file", ("pic.png", PNG, "image/png"))]
    return httpx.post(server.v1 + "/files/upload", files=files or None, data=data, headers=server.headers(key))


def test_upload_answers_201_with_difys_file_object(fake_server: RunningServer) -> None:
    r = upload(fake_server)
    assert r.status_code == 201
    f = r.json()
    assert f["name"] == "pic.png" and f["size"] == len(PNG) and f["extension"] == "png"
    assert f["mime_type"] == "image/png" and f["created_by"] == end_user_id("demo", "alice")
    assert isinstance(f["created_at"], int) and f["source_url"].endswith(f"/v1/files/{f['id']}/preview")
    for empty in ("preview_url", "original_url", "user_id", "conversation_id", "file_key"):
        assert f[empty] is None


def test_upload_without_user_belongs_to_default_user(fake_server: RunningServer) -> None:
    assert upload(fake_server, user=None).json()["created_by"] == end_user_id("demo", "DEFAULT-USER")


def test_upload_errors_have_difys_codes(fake_server: RunningServer) -> None:
    assert_dify_error(upload(fake_server, files=[]), 400, "no_file_uploaded", "Please upload your file.")
    two = [("file", ("a.png", PNG, "image/png")), ("file", ("b.png", PNG, "image/png"))]
    assert_dify_error(upload(fake_server, files=two), 400, "too_many_files", "Only one file is allowed.")
    assert_dify_error(upload(fake_server, files=[("file", ("", PNG, "image/png"))]), 400, "no_file_uploaded")
    assert_dify_error(upload(fake_server, files=[("file", ("a/b.png", PNG, "image/png"))]), 400, "invalid_param")
    r = httpx.post(fake_server.v1 + "/files/upload", json={"user": "x"}, headers=fake_server.headers())
    assert_dify_error(r, 400, "no_file_uploaded")


def test_files_over_their_kinds_limit_are_413(tmp_path: Path) -> None:
    limits = {"image": 1, "audio": 1, "video": 1, "document": 2}
    with serve_app(FAKE_CATALOG, tmp_path, upload_limits_mb=limits) as server:
        big = b"\0" * (1024 * 1024 + 1)
        assert_dify_error(upload(server, files=[("file", ("big.png", big, "image/png"))]), 413, "file_too_large")
        assert upload(server, files=[("file", ("big.pdf", big, "application/pdf"))]).status_code == 201


def test_preview_returns_the_bytes_to_their_owner(fake_server: RunningServer) -> None:
    fid = upload(fake_server).json()["id"]
    r = httpx.get(f"{fake_server.v1}/files/{fid}/preview", headers=fake_server.headers(), params={"user": "alice"})
    assert r.status_code == 200 and r.content == PNG and r.headers["content-type"] == "image/png"
    assert "attachment" not in r.headers.get("content-disposition", "")
    r = httpx.get(
        f"{fake_server.v1}/files/{fid}/preview", headers=fake_server.headers(), params={"as_attachment": "true"}
    )
    assert r.headers["content-disposition"].startswith("attachment") and "pic.png" in r.headers["content-disposition"]
    r = httpx.get(f"{fake_server.v1}/files/{fid}/preview", headers=fake_server.headers(), params={"user": "bob"})
    assert_dify_error(r, 403, "file_access_denied")
    r = httpx.get(f"{fake_server.v1}/files/{fid}x/preview", headers=fake_server.headers())
    assert_dify_error(r, 404, "file_not_found")


def image(**ref: Any) -> dict[str, Any]:
    return {"type": "image", **ref}


def test_an_uploaded_image_reaches_the_vision_model_as_a_data_uri(
    vision: tuple[RunningServer, RecordingProvider],
) -> None:
    server, provider = vision
    fid = upload(server).json()["id"]
    files = [
        image(transfer_method="local_file", upload_file_id=fid),
        image(transfer_method="remote_url", url="https://example.com/cat.png"),
    ]
    r = complete(server, {"inputs": {"query": "What is this?"}, "user": "alice", "files": files})
    assert r.status_code == 200, r.text
    [message] = provider.calls[-1].messages
    assert message.content == [
        {"type": "text", "text": "Answer briefly: What is this?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode(), "detail": "high"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
    ]


@pytest.mark.parametrize(
    ("project", "files", "message_part"),
    [
        ("closed", [image(transfer_method="remote_url", url="https://x/a.png")], "not enabled"),
        ("blind", [image(transfer_method="remote_url", url="https://x/a.png")], "not vision-capable"),
        ("demo", [image(transfer_method="remote_url", url="https://x/a.png")] * 3, "maximum limit of 2"),
        ("demo", [{"type": "document", "transfer_method": "remote_url", "url": "https://x/a.pdf"}], "only image"),
        ("demo", [image(transfer_method="remote_url", url="ftp://x/a.png")], "http(s) URL"),
        ("demo", [image(transfer_method="local_file")], "upload_file_id is required"),
    ],
)
def test_files_the_app_cannot_take_are_refused_not_dropped(
    vision: tuple[RunningServer, RecordingProvider], project: str, files: list[dict[str, Any]], message_part: str
) -> None:
    server, provider = vision
    key = server.new_key(project) if project != "demo" else None
    r = complete(server, {"inputs": {"query": "x"}, "user": "alice", "files": files}, key=key)
    body = assert_dify_error(r, 400, "invalid_param")
    assert message_part in body["message"]
    assert provider.calls == [] and message_count(server, project) == 0


def test_another_users_upload_is_an_invalid_upload_file(vision: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = vision
    fid = upload(server, user="bob").json()["id"]
    files = [image(transfer_method="local_file", upload_file_id=fid)]
    r = complete(server, {"inputs": {"query": "x"}, "user": "alice", "files": files})
    assert_dify_error(r, 400, "invalid_param", "Invalid upload file")
    assert provider.calls == []
