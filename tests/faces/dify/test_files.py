"""Uploads, previews, and files in completion-messages reaching a vision-capable model, over real HTTP."""

from __future__ import annotations

import base64
import copy
import logging
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
VISION["projects"]["by_upload"] = {
    "models": ["echo"],
    "prompt": "{{query}}",
    "file_upload": {"image": {"enabled": True, "transfer_methods": ["local_file"]}},
}
VISION["models"]["text"] = {"provider": "fake", "model": "text"}


@pytest.fixture
def vision(tmp_path: Path) -> Iterator[tuple[RunningServer, RecordingProvider]]:
    """A server whose `echo` model is `vision: true`. The recording provider stands for that vision model: it
    answers like the fake provider and keeps each ProviderCall, so a test sees the exact content parts the
    model was given. 127.0.0.2 stands for the internet (the URL guard refuses loopback otherwise): a remote
    image's URL there passes the guard and is passed on."""
    provider = RecordingProvider(reply="I see it")
    allow = ("127.0.0.2/32",)
    with serve_app(VISION, tmp_path / "data", providers={"fake": provider}, fetch_allow_networks=allow) as server:
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


def raw_upload(server: RunningServer, part_headers: str, data: bytes = b"hello") -> httpx.Response:
    """A multipart body written by hand, for parts httpx would not send (an empty filename, no MIME type)."""
    body = (
        b"--XyZ\r\n"
        + part_headers.encode()
        + b"\r\n\r\n"
        + data
        + b'\r\n--XyZ\r\nContent-Disposition: form-data; name="user"\r\n\r\nalice\r\n--XyZ--\r\n'
    )
    headers = {**server.headers(), "Content-Type": "multipart/form-data; boundary=XyZ"}
    return httpx.post(server.v1 + "/files/upload", content=body, headers=headers)


def test_upload_answers_201_with_difys_file_object(fake_server: RunningServer) -> None:
    r = upload(fake_server)
    assert r.status_code == 201
    f = r.json()
    assert set(f) == {
        "id",
        "name",
        "size",
        "extension",
        "mime_type",
        "created_by",
        "created_at",
        "preview_url",
        "source_url",
        "original_url",
        "user_id",
        "tenant_id",
        "conversation_id",
        "file_key",
    }
    assert f["name"] == "pic.png" and f["size"] == len(PNG) and f["extension"] == "png"
    assert f["mime_type"] == "image/png" and f["created_by"] == end_user_id("demo", "alice")
    assert isinstance(f["created_at"], int) and f["source_url"].endswith(f"/v1/files/{f['id']}/preview")
    for empty in ("preview_url", "original_url", "user_id", "conversation_id", "file_key"):
        assert f[empty] is None


def test_upload_without_user_belongs_to_default_user(fake_server: RunningServer) -> None:
    assert upload(fake_server, user=None).json()["created_by"] == end_user_id("demo", "DEFAULT-USER")


def test_an_upload_user_is_checked_like_every_user(fake_server: RunningServer) -> None:
    too_long = upload(fake_server, user="u" * 300)
    assert_dify_error(too_long, 400, "invalid_param")
    assert "at most" in too_long.json()["message"]
    assert_dify_error(
        upload(fake_server, user="a\x00b"), 400, "invalid_param", "Arg user must not contain NUL characters."
    )


def test_the_mime_type_is_recorded_without_parameters(fake_server: RunningServer) -> None:
    f = upload(fake_server, files=[("file", ("notes.TXT", b"hi", "Text/Plain; charset=utf-8"))]).json()
    assert f["mime_type"] == "text/plain" and f["extension"] == "txt"


def test_of_two_parts_named_file_the_first_is_taken(fake_server: RunningServer) -> None:
    """Dify counts file fields, not parts (werkzeug's `len(request.files)`), and reads `files["file"]`."""
    two = [("file", ("a.png", PNG, "image/png")), ("file", ("b.txt", b"second", "text/plain"))]
    resp = upload(fake_server, files=two)
    assert resp.status_code == 201, resp.text
    f = resp.json()
    assert (f["name"], f["size"], f["mime_type"]) == ("a.png", len(PNG), "image/png")


def test_upload_errors_have_difys_codes(fake_server: RunningServer) -> None:
    assert_dify_error(upload(fake_server, files=[]), 400, "no_file_uploaded", "Please upload your file.")
    other = [("file", ("a.png", PNG, "image/png")), ("image", ("b.png", PNG, "image/png"))]
    assert_dify_error(upload(fake_server, files=other), 400, "too_many_files", "Only one file is allowed.")
    eleven = [("file", (f"{i}.png", PNG, "image/png")) for i in range(11)]
    assert_dify_error(upload(fake_server, files=eleven), 400, "too_many_files", "Only one file is allowed.")
    # httpx sends a part named "" without a filename: a plain form field, so there is no file
    assert_dify_error(upload(fake_server, files=[("file", ("", PNG, "image/png"))]), 400, "no_file_uploaded")
    # a file part whose filename is empty
    r = raw_upload(fake_server, 'Content-Disposition: form-data; name="file"; filename=""\r\nContent-Type: text/plain')
    assert_dify_error(r, 400, "filename_not_exists_error", "The specified filename does not exist.")
    for name in ("a/b.png", "..\\b.png"):
        body = assert_dify_error(upload(fake_server, files=[("file", (name, PNG, "image/png"))]), 400, "invalid_param")
        assert body["params"] == "file"
    r = raw_upload(fake_server, 'Content-Disposition: form-data; name="file"; filename="blob"')
    assert_dify_error(r, 415, "unsupported_file_type", "File type not allowed.")
    r = httpx.post(fake_server.v1 + "/files/upload", json={"user": "x"}, headers=fake_server.headers())
    assert_dify_error(r, 400, "no_file_uploaded")
    assert_dify_error(
        httpx.post(fake_server.v1 + "/files/upload", files=[("file", ("a.png", PNG))]), 401, "unauthorized"
    )


KB = 1024


def test_files_over_their_kinds_limit_are_413(tmp_path: Path) -> None:
    limits = {"image": 10 / KB, "audio": 10 / KB, "video": 10 / KB, "document": 20 / KB}  # 10 KiB, 20 KiB
    with serve_app(FAKE_CATALOG, tmp_path, upload_limits_mb=limits) as server:
        at_limit, over = b"\0" * (10 * KB), b"\0" * (10 * KB + 1)
        assert upload(server, files=[("file", ("ok.png", at_limit, "image/png"))]).status_code == 201
        for name, mime in (("big.png", "image/png"), ("big.mp3", "audio/mpeg"), ("big.mp4", "video/mp4")):
            body = assert_dify_error(upload(server, files=[("file", (name, over, mime))]), 413, "file_too_large")
            assert body["message"].startswith("File size exceeded.")
        # documents have their own, larger limit
        assert upload(server, files=[("file", ("big.pdf", over, "application/pdf"))]).status_code == 201
        # a body far over every limit (by more than the 1 MB allowed for the form) is refused unread, same code
        huge = b"\0" * (1024 * KB + 30 * KB)
        assert_dify_error(
            upload(server, files=[("file", ("huge.pdf", huge, "application/pdf"))]), 413, "file_too_large"
        )


def test_a_kind_left_out_of_the_limits_keeps_its_default(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path, upload_limits_mb={"image": 10 / KB}) as server:
        big = b"\0" * (10 * KB + 1)
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


def test_preview_of_another_apps_file_is_not_found(tmp_path: Path) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["other"] = {"models": ["echo"], "prompt": "{{query}}"}
    with serve_app(catalog, tmp_path) as server:
        fid = upload(server).json()["id"]
        r = httpx.get(f"{server.v1}/files/{fid}/preview", headers=server.headers(server.new_key("other")))
        assert_dify_error(r, 404, "file_not_found")


@pytest.mark.parametrize(
    ("name", "mime", "served_as"),
    [
        ("page.html", "text/html", "application/octet-stream"),
        ("page.xhtml", "application/xhtml+xml", "application/octet-stream"),
        ("page.htm", "text/plain", "application/octet-stream"),
        ("logo.svg", "image/svg+xml", "image/svg+xml"),
    ],
)
def test_preview_never_serves_a_page_that_runs_in_the_apis_origin(
    fake_server: RunningServer, name: str, mime: str, served_as: str
) -> None:
    """An uploaded page opened from a preview link must not run its scripts as this server: HTML is forced to
    download as octet-stream, SVG keeps its type (an <img> still shows it) but downloads under a no-script CSP."""
    fid = upload(fake_server, files=[("file", (name, b"<script>alert(1)</script>", mime))]).json()["id"]
    r = httpx.get(f"{fake_server.v1}/files/{fid}/preview", headers=fake_server.headers())
    assert r.status_code == 200 and r.content == b"<script>alert(1)</script>"
    assert r.headers["content-type"] == served_as
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["x-content-type-options"] == "nosniff"
    if served_as == "image/svg+xml":
        assert "sandbox" in r.headers["content-security-policy"]


def image(**ref: Any) -> dict[str, Any]:
    return {"type": "image", **ref}


def test_an_uploaded_image_reaches_the_vision_model_as_a_data_uri(
    vision: tuple[RunningServer, RecordingProvider],
) -> None:
    server, provider = vision
    fid = upload(server).json()["id"]
    files = [
        image(transfer_method="local_file", upload_file_id=fid),
        image(transfer_method="remote_url", url="https://127.0.0.2/cat.png"),
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
        {"type": "image_url", "image_url": {"url": "https://127.0.0.2/cat.png", "detail": "high"}},
    ]


@pytest.mark.parametrize(
    ("project", "files", "message_part"),
    [
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


@pytest.mark.parametrize("mode", ["blocking", "streaming"])
def test_files_sent_to_an_app_with_uploads_off_are_ignored_and_said_so(
    vision: tuple[RunningServer, RecordingProvider], mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Dify ignores `files` when the app takes none; promptd does too, and says so in a header and the log."""
    server, provider = vision
    files = [image(transfer_method="remote_url", url="https://x/a.png")]
    body = {"inputs": {"query": "x"}, "user": "alice", "files": files, "response_mode": mode}
    with caplog.at_level(logging.INFO, logger="promptd.dify"):
        r = complete(server, body, key=server.new_key("closed"))
    assert r.status_code == 200, r.text
    assert r.headers["X-Promptd-Ignored"] == "files"
    [message] = provider.calls[-1].messages
    assert isinstance(message.content, str)  # the text only: no image part
    assert any("files ignored" in rec.getMessage() for rec in caplog.records)
    plain = complete(server, {"inputs": {"query": "x"}, "user": "alice"}, key=server.new_key("closed"))
    assert "X-Promptd-Ignored" not in plain.headers


def test_a_transfer_method_the_app_does_not_allow_is_refused(vision: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = vision
    files = [image(transfer_method="remote_url", url="https://example.com/a.png")]
    r = complete(server, {"inputs": {"query": "x"}, "user": "alice", "files": files}, key=server.new_key("by_upload"))
    assert "transfer method remote_url is not allowed" in assert_dify_error(r, 400, "invalid_param")["message"]
    assert provider.calls == []


def test_an_uploaded_document_is_not_an_image(vision: tuple[RunningServer, RecordingProvider]) -> None:
    server, provider = vision
    fid = upload(server, files=[("file", ("a.pdf", b"%PDF-1.4", "application/pdf"))]).json()["id"]
    files = [image(transfer_method="local_file", upload_file_id=fid)]
    r = complete(server, {"inputs": {"query": "x"}, "user": "alice", "files": files})
    assert "not an image" in assert_dify_error(r, 400, "invalid_param")["message"]
    assert provider.calls == []


def test_file_errors_of_a_streaming_request_are_a_400_before_any_stream(
    vision: tuple[RunningServer, RecordingProvider],
) -> None:
    """Dify checks the request before the stream exists: a mistake is a 400 JSON answer, not an event."""
    server, provider = vision
    body = {
        "inputs": {"query": "x"},
        "user": "alice",
        "response_mode": "streaming",
        "files": [image(transfer_method="remote_url", url="ftp://x/a.png")],
    }
    r = httpx.post(server.v1 + "/completion-messages", json=body, headers=server.headers())
    assert "http(s) URL" in assert_dify_error(r, 400, "invalid_param")["message"]
    assert provider.calls == []


@pytest.mark.parametrize("owner", ["bob", "DEFAULT-USER", "other-app"])
def test_another_users_upload_is_an_invalid_upload_file(
    vision: tuple[RunningServer, RecordingProvider], owner: str
) -> None:
    server, provider = vision
    if owner == "other-app":  # alice's own upload, but to another app
        fid = upload(server, key=server.new_key("by_upload")).json()["id"]
    else:
        fid = upload(server, user=None if owner == "DEFAULT-USER" else owner).json()["id"]
    files = [image(transfer_method="local_file", upload_file_id=fid)]
    r = complete(server, {"inputs": {"query": "x"}, "user": "alice", "files": files})
    assert_dify_error(r, 400, "invalid_param", "Invalid upload file")
    assert provider.calls == []
