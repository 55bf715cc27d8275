"""`file` and `file-list` inputs of a completion app, over real HTTP on SQLite and PostgreSQL, driven by Dify's own
SDK where it has the call: reported in /parameters as Dify reports them, checked like Dify, and given to the model
the way the request's `files` are (images inline, documents' text, audio's transcript)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dify_client import CompletionClient

from tests.conftest import FAKE_CATALOG
from tests.faces.dify.helpers import assert_dify_error, complete, serve_with_files, stored_message, stream
from tests.faces.dify.test_audio import SpeechUpstream
from tests.faces.dify.test_documents import Remote
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app, serve_in_thread

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PROMPT = "Read {{doc}}and answer: {{query}}"
INPUTS: list[dict[str, Any]] = [
    {"type": "paragraph", "variable": "query", "label": "Question", "required": True},
    {"type": "file", "variable": "doc", "label": "Document", "required": True, "allowed_file_types": ["document"]},
    {
        "type": "file-list",
        "variable": "media",
        "label": "Pictures and voice notes",
        "max_length": 2,
        "allowed_file_types": ["image", "audio"],
        "allowed_file_upload_methods": ["local_file"],
    },
    {
        "type": "file-list",
        "variable": "logs",
        "allowed_file_types": ["custom"],
        "allowed_file_extensions": [".log"],
    },
]


class Server:
    """The app under test, its model and its speech model. `model` stands for a vision-capable chat model: it
    answers like the fake provider and keeps every call, so a test reads the exact parts the model was given.
    `speech` stands for OpenAI's transcription endpoint."""

    def __init__(self, server: RunningServer, model: RecordingProvider, speech: SpeechUpstream) -> None:
        self.server, self.model, self.speech = server, model, speech

    def client(self) -> CompletionClient:
        c = CompletionClient(self.server.key)
        c.base_url = self.server.v1
        return c

    def upload(self, name: str, data: bytes, mime: str, user: str = "alice") -> str:
        r = self.client().file_upload(user, {"file": (name, data, mime)})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def parts(self, call: int = 0) -> list[dict[str, Any]]:
        content = self.model.calls[call].messages[-1].content
        assert isinstance(content, list), content
        return content  # type: ignore[return-value]


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Server]:
    speech = SpeechUpstream()
    with serve_in_thread(speech.app()) as speech_url:
        catalog: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
        catalog["models"]["echo"]["vision"] = True
        catalog["providers"]["openai"] = {"kind": "openai", "base_url": speech_url + "/v1", "api_key": "sk-audio"}
        catalog["models"]["stt"] = {"provider": "openai", "model": "whisper-1", "type": "speech_to_text"}
        demo = catalog["projects"]["demo"]
        demo.update(prompt=PROMPT, inputs=INPUTS, audio={"speech_to_text": "stt"})  # `file_upload` stays off
        model = RecordingProvider(reply="ok")
        with serve_with_files(catalog, tmp_path / "data", model, database_url=database_url) as server:
            yield Server(server, model, speech)


def local(kind: str, file_id: str) -> dict[str, Any]:
    return {"type": kind, "transfer_method": "local_file", "upload_file_id": file_id}


def test_parameters_report_file_fields_as_dify_does(app: Server) -> None:
    r = app.client().get_application_parameters("alice")
    assert r.status_code == 200
    form = r.json()["user_input_form"]
    assert form[1:] == [
        {
            "file": {
                "label": "Document",
                "variable": "doc",
                "required": True,
                "default": "",
                "allowed_file_types": ["document"],
                "allowed_file_extensions": [],
                "allowed_file_upload_methods": ["local_file", "remote_url"],
            }
        },
        {
            "file-list": {
                "label": "Pictures and voice notes",
                "variable": "media",
                "required": False,
                "default": "",
                "max_length": 2,
                "allowed_file_types": ["image", "audio"],
                "allowed_file_extensions": [],
                "allowed_file_upload_methods": ["local_file"],
            }
        },
        {
            "file-list": {
                "label": "logs",
                "variable": "logs",
                "required": False,
                "default": "",
                "max_length": 5,
                "allowed_file_types": ["custom"],
                "allowed_file_extensions": [".log"],
                "allowed_file_upload_methods": ["local_file", "remote_url"],
            }
        },
    ]
    assert r.json()["file_upload"]["enabled"] is False  # the form's files do not need the app's `files`


def test_form_files_reach_the_model_blocking(app: Server) -> None:
    doc = local("document", app.upload("notes.txt", b"The launch is on Tuesday.", "text/plain"))
    media = [
        local("image", app.upload("pic.png", PNG, "image/png")),
        local("audio", app.upload("voice.mp3", b"ID3 fake audio", "audio/mpeg")),
    ]
    logs = [local("custom", app.upload("app.log", b"ERROR disk full", "text/plain"))]
    inputs = {"query": "When?", "doc": doc, "media": media, "logs": logs}
    r = app.client().create_completion_message(inputs, "blocking", "alice")
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == "ok"
    parts = app.parts()
    # {{doc}} renders as nothing (Dify's FileSegment.text): the file is a part of its own, in form order
    assert parts == [
        {"type": "text", "text": "Read and answer: When?"},
        {"type": "text", "text": "Document notes.txt:\nThe launch is on Tuesday."},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode(), "detail": "high"},
        },
        {"type": "text", "text": "Audio voice.mp3 (transcript):\nheard 14 bytes of voice.mp3"},
        {"type": "text", "text": "Document app.log:\nERROR disk full"},
    ]
    assert app.speech.transcriptions[0]["model"] == "whisper-1"  # through the engine, as /audio-to-text does
    row = stored_message(app.server, r.json()["message_id"])
    assert row["inputs"] == {"query": "When?", "doc": doc, "media": media, "logs": logs}  # the record keeps them


def test_form_files_reach_the_model_streaming(app: Server) -> None:
    doc = local("document", app.upload("notes.md", b"# Plan\nship it", "text/markdown"))
    r = app.client().create_completion_message({"query": "Plan?", "doc": doc}, "streaming", "alice")
    try:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: ") :]) for line in r.iter_lines(decode_unicode=True) if line]
    finally:
        r.close()
    assert [e["event"] for e in events][-1] == "message_end"
    assert "".join(e["answer"] for e in events if e["event"] == "message") == "ok"
    assert app.parts() == [
        {"type": "text", "text": "Read and answer: Plan?"},
        {"type": "text", "text": "Document notes.md:\n# Plan\nship it"},
    ]


def test_optional_file_fields_may_be_left_empty(app: Server) -> None:
    doc = local("document", app.upload("a.txt", b"alpha", "text/plain"))
    r = complete(app.server, {"inputs": {"query": "q", "doc": doc, "media": [], "logs": ""}, "user": "alice"})
    assert r.status_code == 200, r.text
    assert app.parts() == [
        {"type": "text", "text": "Read and answer: q"},
        {"type": "text", "text": "Document a.txt:\nalpha"},
    ]


def test_the_top_level_query_fills_the_form_before_the_files_are_checked(app: Server) -> None:
    doc = local("document", app.upload("a.txt", b"alpha", "text/plain"))
    r = complete(app.server, {"inputs": {"doc": doc}, "query": "legacy", "user": "alice"})
    assert r.status_code == 200, r.text
    assert app.parts()[0] == {"type": "text", "text": "Read and answer: legacy"}


def test_a_remote_document_is_fetched_through_the_url_guard(app: Server) -> None:
    with serve_in_thread(Remote().app(), host="127.0.0.2") as url:
        doc = {"type": "document", "transfer_method": "remote_url", "url": url + "/notes.txt"}
        r = complete(app.server, {"inputs": {"query": "q", "doc": doc}, "user": "alice"})
        assert r.status_code == 200, r.text
        assert app.parts()[1] == {"type": "text", "text": "Document notes.txt:\nremote notes say 42"}
    with serve_in_thread(Remote().app()) as internal:  # on 127.0.0.1: the server's own network
        doc = {"type": "document", "transfer_method": "remote_url", "url": internal + "/notes.txt"}
        r = complete(app.server, {"inputs": {"query": "q", "doc": doc}, "user": "alice"})
        body = assert_dify_error(r, 400, "invalid_param")
        assert "not a public address" in body["message"] and body["params"] == "doc"
    doc = {"type": "document", "transfer_method": "remote_url", "url": "file:///etc/passwd"}
    r = complete(app.server, {"inputs": {"query": "q", "doc": doc}, "user": "alice"})
    assert assert_dify_error(r, 400, "invalid_param", "url must be an http(s) URL for remote_url")["params"] == "doc"
    assert len(app.model.calls) == 1


def test_form_file_mistakes_are_difys_400(app: Server) -> None:
    doc = local("document", app.upload("a.txt", b"alpha", "text/plain"))
    pic = local("image", app.upload("pic.png", PNG, "image/png"))
    bobs = local("document", app.upload("b.txt", b"bob's", "text/plain", user="bob"))
    bad_log = local("custom", app.upload("x.bin", b"\x00", "application/octet-stream"))
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"query": "q"}, "doc is required in input form", "doc"),
        ({"query": "q", "doc": ""}, "doc is required in input form", "doc"),
        ({"doc": doc}, "query is required in input form", "query"),  # every input, in form order
        ({"query": "q", "doc": "a.txt"}, "doc in input form must be a file", "doc"),
        ({"query": "q", "doc": [doc]}, "doc in input form must be a file", "doc"),
        ({"query": "q", "doc": {}}, "doc: Object missing required field `type`", "doc"),  # not "no file"
        ({"query": "q", "doc": doc, "media": pic}, "media in input form must be a list of files", "media"),
        (
            {"query": "q", "doc": doc, "media": [pic, pic, pic]},
            "media in input form must be less than 2 files",
            "media",
        ),
        ({"query": "q", "doc": local("document", "no-such-id")}, "Invalid upload file", "doc"),
        ({"query": "q", "doc": bobs}, "Invalid upload file", "doc"),  # another user's upload
        ({"query": "q", "doc": pic}, "doc: only document files are accepted by doc, not image", "doc"),
        (
            {
                "query": "q",
                "doc": doc,
                "media": [pic, {"type": "image", "transfer_method": "remote_url", "url": "https://x/a.png"}],
            },
            "media[1]: transfer method remote_url is not allowed",
            "media",
        ),
        ({"query": "q", "doc": doc, "logs": [bad_log]}, "logs[0]: .bin is not an allowed file extension", "logs"),
        (
            {"query": "q", "doc": {"type": "document", "transfer_method": "local_file"}},
            "doc: upload_file_id is required for local_file",
            "doc",
        ),
    ]
    for inputs, message, param in cases:
        body = assert_dify_error(
            complete(app.server, {"inputs": inputs, "user": "alice"}), 400, "invalid_param", message
        )
        assert body["params"] == param, (inputs, body)
    shape = complete(
        app.server, {"inputs": {"query": "q", "doc": {"type": "pdf", "transfer_method": "local_file"}}, "user": "alice"}
    )
    body = assert_dify_error(shape, 400, "invalid_param", "doc: Invalid enum value 'pdf' - at `type`")
    assert body["params"] == "doc"
    assert app.model.calls == []


def test_a_streaming_request_with_a_bad_form_file_is_a_400_before_any_stream(app: Server) -> None:
    body = {"inputs": {"query": "q", "doc": local("document", "gone")}, "user": "alice", "response_mode": "streaming"}
    r = httpx.post(app.server.v1 + "/completion-messages", json=body, headers=app.server.headers(), timeout=30)
    assert_dify_error(r, 400, "invalid_param", "Invalid upload file")
    assert app.model.calls == []


def test_an_image_for_a_model_without_vision_is_refused(tmp_path: Path) -> None:
    catalog: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"]["inputs"].append({"type": "file", "variable": "pic"})
    model = RecordingProvider(reply="ok")
    with serve_app(catalog, tmp_path / "data", providers={"fake": model}) as server:
        up = httpx.post(
            server.v1 + "/files/upload",
            files={"file": ("p.png", PNG, "image/png")},
            data={"user": "u"},
            headers=server.headers(),
        )
        r = complete(server, {"inputs": {"query": "q", "pic": local("image", up.json()["id"])}, "user": "u"})
        assert "not vision-capable" in assert_dify_error(r, 400, "invalid_param")["message"]
        # the app takes no `files` (its `file_upload` is off): they are ignored, as Dify does
        events = stream(server, {"inputs": {"query": "q"}, "user": "u", "files": [local("image", up.json()["id"])]})
        assert events[-1]["event"] == "message_end"  # type: ignore[index]
        assert model.calls[-1].messages[-1].content == "Answer briefly: q"
