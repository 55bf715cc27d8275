"""Speech: /audio-to-text and /text-to-audio through an `openai`-kind speech provider, over real HTTP.

`SpeechUpstream` (tests/speech_upstream.py) stands for OpenAI's audio API on a real socket and keeps what it
was sent, so the tests see exactly what promptd forwarded.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faces.dify.helpers import assert_dify_error, complete
from tests.serving import RunningServer, serve_app
from tests.speech_upstream import WAV, SpeechUpstream, speech_catalog, speech_upstream

KB = 1024


@pytest.fixture
def upstream() -> Iterator[tuple[SpeechUpstream, str]]:
    with speech_upstream() as running:
        yield running


@pytest.fixture
def speech(tmp_path: Path, upstream: tuple[SpeechUpstream, str]) -> Iterator[tuple[RunningServer, SpeechUpstream]]:
    """promptd with speech on, and an audio limit of 10 KiB so the size tests stay small."""
    up, url = upstream
    with serve_app(speech_catalog(url), tmp_path / "data", audio_limit_mb=10 / KB) as server:
        yield server, up


def to_text(server: RunningServer, name: str, data: bytes, mime: str, key: str | None = None) -> httpx.Response:
    return httpx.post(
        server.v1 + "/audio-to-text",
        files={"file": (name, data, mime)},
        data={"user": "alice"},
        headers=server.headers(key),
    )


def to_audio(server: RunningServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.v1 + "/text-to-audio", json=body, headers=server.headers())


def test_parameters_show_speech_enabled(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    server, _ = speech
    p = httpx.get(server.v1 + "/parameters", headers=server.headers()).json()
    assert p["speech_to_text"] == {"enabled": True}
    assert p["text_to_speech"] == {"enabled": True, "voice": "nova", "language": "en-US", "autoPlay": "disabled"}


def test_audio_to_text_returns_the_upstreams_transcript(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = speech
    r = to_text(server, "hello.wav", WAV, "audio/wav")
    assert r.status_code == 200 and r.json() == {"text": f"heard {len(WAV)} bytes of hello.wav"}
    [sent] = up.transcriptions
    assert sent["model"] == "whisper-1" and sent["authorization"] == "Bearer sk-audio"
    assert sent["filename"] == "hello.wav" and sent["content_type"] == "audio/wav" and sent["data"] == WAV


def test_a_browser_recording_with_codec_parameters_is_accepted(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    """MediaRecorder labels its blobs `audio/webm;codecs=opus`: the type is audio/webm, one Dify accepts."""
    server, up = speech
    r = to_text(server, "rec.webm", b"\x1aE\xdf\xa3webm", "audio/webm;codecs=opus")
    assert r.status_code == 200, r.text
    assert up.transcriptions[-1]["content_type"] == "audio/webm"


@pytest.mark.parametrize("mime", ["audio/mp3", "audio/mpeg", "audio/m4a", "audio/amr", "audio/mpga", "video/mp4"])
def test_difys_audio_types_are_accepted(speech: tuple[RunningServer, SpeechUpstream], mime: str) -> None:
    server, _ = speech
    assert to_text(server, "clip", b"abc", mime).status_code == 200


def test_audio_to_text_errors(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = speech
    r = httpx.post(server.v1 + "/audio-to-text", data={"user": "a"}, headers=server.headers())
    assert_dify_error(r, 400, "no_audio_uploaded", "Please upload your audio.")
    r = httpx.post(server.v1 + "/audio-to-text", json={"user": "a"}, headers=server.headers())
    assert_dify_error(r, 400, "no_audio_uploaded", "Please upload your audio.")
    two = [("file", ("a.wav", WAV, "audio/wav")), ("other", ("b.wav", WAV, "audio/wav"))]
    r = httpx.post(server.v1 + "/audio-to-text", files=two, headers=server.headers())
    assert_dify_error(r, 400, "too_many_files", "Only one file is allowed.")
    for name, mime in (("a.flac", "audio/flac"), ("a.txt", "text/plain"), ("a.png", "image/png")):
        assert_dify_error(to_text(server, name, b"x", mime), 415, "unsupported_audio_type", "Audio type not allowed.")
    assert up.transcriptions == []  # none of these reached the upstream


def test_audio_over_the_limit_is_413_however_large(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = speech
    assert to_text(server, "ok.mp3", b"\0" * (10 * KB), "audio/mp3").status_code == 200
    # just over the limit (read, then refused) and far over it (refused from its Content-Length, unread)
    for size in (10 * KB + 1, 2 * KB * KB):
        r = to_text(server, "big.mp3", b"\0" * size, "audio/mp3")
        assert_dify_error(r, 413, "audio_too_large", "Audio size exceeded.")
    assert len(up.transcriptions) == 1


def test_upstream_failures_are_difys_model_errors(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = speech
    up.fail = 500
    body = assert_dify_error(to_text(server, "a.wav", WAV, "audio/wav"), 400, "completion_request_error")
    assert "upstream says 500" in body["message"]
    assert_dify_error(to_audio(server, {"text": "hi"}), 400, "completion_request_error")
    up.fail = 429  # Dify: an InvokeError of any kind, a rate limit too
    assert_dify_error(to_text(server, "a.wav", WAV, "audio/wav"), 400, "completion_request_error")
    assert_dify_error(to_audio(server, {"text": "hi"}), 400, "completion_request_error")


def test_text_to_audio_speaks_the_text(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = speech
    r = to_audio(server, {"text": "hello", "user": "alice"})
    assert r.status_code == 200 and r.content == b"ID3hello" and r.headers["content-type"] == "audio/mpeg"
    assert up.speeches[-1] == {
        "authorization": "Bearer sk-audio",
        "body": {"model": "tts-1", "input": "hello", "voice": "nova"},  # the project's voice
    }
    # the upstream's audio type is passed on; `user` is optional when speaking a text
    r = to_audio(server, {"text": "hi", "voice": "wav-voice"})
    assert r.content == WAV + b"hi" and r.headers["content-type"] == "audio/wav"


def test_text_to_audio_speaks_a_message_of_the_user(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = speech
    message = complete(server, {"inputs": {"query": "hi"}, "user": "alice"}).json()
    # message_id takes priority over text
    r = to_audio(server, {"message_id": message["message_id"], "text": "ignored", "user": "alice", "voice": "echo"})
    assert r.status_code == 200 and r.content == b"ID3" + message["answer"].encode()
    assert up.speeches[-1]["body"] == {"model": "tts-1", "input": message["answer"], "voice": "echo"}

    spoken = len(up.speeches)
    r = to_audio(server, {"message_id": message["message_id"], "user": "bob"})
    assert_dify_error(r, 404, "not_found", "Message Not Exists.")
    r = to_audio(server, {"message_id": "00000000-0000-0000-0000-000000000000", "user": "alice"})
    assert_dify_error(r, 404, "not_found", "Message Not Exists.")
    r = to_audio(server, {"message_id": message["message_id"]})
    assert_dify_error(r, 400, "invalid_param", "Arg user must be provided.")
    assert_dify_error(to_audio(server, {"user": "alice"}), 400, "invalid_param")
    assert_dify_error(to_audio(server, {"text": 42}), 400, "invalid_param")
    r = httpx.post(server.v1 + "/text-to-audio", content=b"not json", headers=server.headers())
    assert_dify_error(r, 400, "bad_request", "Invalid JSON payload received or JSON payload is empty.")
    assert len(up.speeches) == spoken


def test_another_apps_message_is_not_spoken(tmp_path: Path, upstream: tuple[SpeechUpstream, str]) -> None:
    up, url = upstream
    catalog = speech_catalog(url)
    catalog["projects"]["other"] = copy.deepcopy(catalog["projects"]["demo"])
    with serve_app(catalog, tmp_path) as server:
        message = complete(server, {"inputs": {"query": "hi"}, "user": "alice"}).json()
        r = httpx.post(
            server.v1 + "/text-to-audio",
            json={"message_id": message["message_id"], "user": "alice"},
            headers=server.headers(server.new_key("other")),
        )
        assert_dify_error(r, 404, "not_found", "Message Not Exists.")
    assert up.speeches == []


def test_an_app_without_speech_answers_difys_codes(fake_server: RunningServer) -> None:
    p = httpx.get(fake_server.v1 + "/parameters", headers=fake_server.headers()).json()
    assert p["speech_to_text"] == {"enabled": False} and p["text_to_speech"]["enabled"] is False
    assert_dify_error(to_text(fake_server, "a.wav", WAV, "audio/wav"), 400, "provider_not_support_speech_to_text")
    r = httpx.post(fake_server.v1 + "/text-to-audio", json={"text": "hi"}, headers=fake_server.headers())
    assert_dify_error(r, 400, "provider_not_support_text_to_speech")


def test_audio_routes_need_a_key(speech: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = speech
    r = httpx.post(server.v1 + "/audio-to-text", files={"file": ("a.wav", WAV, "audio/wav")})
    assert_dify_error(r, 401, "unauthorized")
    r = httpx.post(server.v1 + "/text-to-audio", json={"text": "hi"}, headers={"Authorization": "Bearer app-nope"})
    assert_dify_error(r, 401, "unauthorized", "Access token is invalid")
    assert up.transcriptions == [] and up.speeches == []
