"""Every file type in completion-messages, over real HTTP on SQLite and PostgreSQL: documents reach the model
as extracted text, audio as a transcript from the speech model, video only for a model that takes it."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
import httpx
import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from promptd.documents import extract_text
from tests.conftest import FAKE_CATALOG
from tests.faces.dify.helpers import assert_dify_error, complete, serve_with_files
from tests.faces.dify.test_audio import SpeechUpstream
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_in_thread


def pdf_bytes(text: str) -> bytes:
    """A one-page PDF whose content stream shows `text` in Helvetica (built with pypdf, no file shipped)."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=300, height=200)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(*paragraphs: str) -> bytes:
    document = docx.Document()
    for p in paragraphs:
        document.add_paragraph(p)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_extract_text_reads_each_format() -> None:
    assert extract_text(b"plain words", extension="txt") == "plain words"
    assert extract_text(b"# Title\n\nbody", extension="md") == "# Title\n\nbody"
    page = b"<html><head><style>p{}</style><script>x()</script></head><body><p>Hello</p><p>World &amp; co</p></body>"
    assert extract_text(page, extension="html") == "Hello\nWorld & co"
    assert extract_text(b'a,b\n"c, d",e\n', extension="csv") == "a, b\nc, d, e"
    assert "Paris is the capital" in extract_text(pdf_bytes("Paris is the capital"), extension="pdf")
    assert extract_text(docx_bytes("First line", "Second line"), extension="docx") == "First line\nSecond line"
    assert extract_text(b"by type", mime_type="text/plain") == "by type"


def test_extract_text_refuses_what_it_cannot_read() -> None:
    from promptd.documents import UnreadableDocument, UnsupportedDocument

    with pytest.raises(UnsupportedDocument):
        extract_text(b"\x00\x01", extension="exe")
    with pytest.raises(UnreadableDocument):
        extract_text(b"not a zip", extension="docx")


class Remote:
    """A web server holding one text document, for `remote_url` files."""

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/notes.txt", self.notes), Route("/missing.txt", self.missing)])

    async def notes(self, request: Request) -> Response:
        return Response(b"remote notes say 42", media_type="text/plain")

    async def missing(self, request: Request) -> Response:
        return Response(b"no", status_code=404)


@pytest.fixture
def files_server(
    tmp_path: Path, database_url: str
) -> Iterator[tuple[RunningServer, RecordingProvider, SpeechUpstream]]:
    speech = SpeechUpstream()
    with serve_in_thread(speech.app()) as speech_url:
        catalog: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
        catalog["providers"]["openai"] = {"kind": "openai", "base_url": speech_url + "/v1", "api_key": "sk-audio"}
        catalog["models"]["stt"] = {"provider": "openai", "model": "whisper-1", "type": "speech_to_text"}
        demo = catalog["projects"]["demo"]
        demo["audio"] = {"speech_to_text": "stt"}
        demo["file_upload"] = {
            "enabled": True,
            "allowed_file_types": ["document", "audio", "video", "custom"],
            "allowed_file_extensions": [".log"],
            "number_limits": 4,
        }
        model = RecordingProvider(reply="ok")  # stands for the app's model: a test reads the parts it was given
        # 127.0.0.1 stands for the server's own network (127.0.0.2 for the internet: serve_with_files)
        with serve_with_files(catalog, tmp_path / "data", model, database_url=database_url) as server:
            yield server, model, speech


def upload(server: RunningServer, name: str, data: bytes, mime: str) -> str:
    r = httpx.post(
        server.v1 + "/files/upload",
        files={"file": (name, data, mime)},
        data={"user": "alice"},
        headers=server.headers(),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def local(kind: str, file_id: str) -> dict[str, Any]:
    return {"type": kind, "transfer_method": "local_file", "upload_file_id": file_id}


def test_documents_and_audio_reach_the_model_as_text(
    files_server: tuple[RunningServer, RecordingProvider, SpeechUpstream],
) -> None:
    server, model, speech = files_server
    files = [
        local("document", upload(server, "facts.pdf", pdf_bytes("The answer is 42"), "application/pdf")),
        local("document", upload(server, "memo.docx", docx_bytes("Memo body"), "application/octet-stream")),
        local("audio", upload(server, "voice.mp3", b"ID3 fake audio", "audio/mpeg")),
        local("custom", upload(server, "app.log", b"ERROR disk full", "text/plain")),
    ]
    r = complete(server, {"inputs": {"query": "summarise"}, "user": "alice", "files": files})
    assert r.status_code == 200, r.text
    parts = model.calls[0].messages[-1].content
    assert isinstance(parts, list)
    assert parts[0] == {"type": "text", "text": "Answer briefly: summarise"}
    texts = [p["text"] for p in parts[1:]]
    assert texts[0].startswith("Document facts.pdf:\n") and "The answer is 42" in texts[0]
    assert texts[1] == "Document memo.docx:\nMemo body"
    assert texts[2] == "Audio voice.mp3 (transcript):\nheard 14 bytes of voice.mp3"
    assert texts[3] == "Document app.log:\nERROR disk full"
    assert speech.transcriptions[0]["model"] == "whisper-1"


def test_a_remote_document_is_fetched(files_server: tuple[RunningServer, RecordingProvider, SpeechUpstream]) -> None:
    server, model, _ = files_server
    with serve_in_thread(Remote().app(), host="127.0.0.2") as url:
        files = [{"type": "document", "transfer_method": "remote_url", "url": url + "/notes.txt"}]
        r = complete(server, {"inputs": {"query": "read"}, "user": "alice", "files": files})
        assert r.status_code == 200, r.text
        assert model.calls[0].messages[-1].content[1] == {  # type: ignore[index]
            "type": "text",
            "text": "Document notes.txt:\nremote notes say 42",
        }
        missing = [{"type": "document", "transfer_method": "remote_url", "url": url + "/missing.txt"}]
        r = complete(server, {"inputs": {"query": "read"}, "user": "alice", "files": missing})
        assert "404" in assert_dify_error(r, 400, "invalid_param")["message"]
    with serve_in_thread(Remote().app()) as internal:  # on 127.0.0.1: the server's own network
        inside = [{"type": "document", "transfer_method": "remote_url", "url": internal + "/notes.txt"}]
        r = complete(server, {"inputs": {"query": "read"}, "user": "alice", "files": inside})
        assert "not a public address" in assert_dify_error(r, 400, "invalid_param")["message"]


def test_files_a_model_cannot_take_are_a_clear_400(
    files_server: tuple[RunningServer, RecordingProvider, SpeechUpstream],
) -> None:
    server, model, _ = files_server
    cases = [
        ([local("video", upload(server, "clip.mp4", b"\x00\x00\x00 ftypmp42", "video/mp4"))], "does not accept video"),
        ([local("custom", upload(server, "x.bin", b"\x00", "application/octet-stream"))], "not an allowed"),
        ([local("document", upload(server, "x.exe", b"MZ", "application/octet-stream"))], "cannot be extracted"),
        ([{"type": "image", "transfer_method": "remote_url", "url": "https://x/a.png"}], "only document, audio"),
        ([{"type": "document", "transfer_method": "remote_url", "url": "file:///etc/passwd"}], "http(s) URL"),
    ]
    for files, message in cases:
        r = complete(server, {"inputs": {"query": "x"}, "user": "alice", "files": files})
        code = "unsupported_file_type" if message == "cannot be extracted" else "invalid_param"
        assert message in assert_dify_error(r, 400, code)["message"]
    assert model.calls == []


def test_parameters_report_the_newer_upload_keys(
    files_server: tuple[RunningServer, RecordingProvider, SpeechUpstream],
) -> None:
    server, _, _ = files_server
    upload_config = httpx.get(server.v1 + "/parameters", headers=server.headers()).json()["file_upload"]
    assert upload_config == {
        "enabled": True,
        "allowed_file_types": ["document", "audio", "video", "custom"],
        "allowed_file_extensions": [".log"],
        "allowed_file_upload_methods": ["remote_url", "local_file"],
        "number_limits": 4,
        "image": {
            "enabled": False,
            "number_limits": 3,
            "detail": "high",
            "transfer_methods": ["remote_url", "local_file"],
        },
    }
