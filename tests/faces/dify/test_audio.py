"""Speech through an OpenAI-compatible speech provider (tests/upstream.py stands for OpenAI's audio API)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAKE_CATALOG
from tests.faces.dify.helpers import assert_dify_error, complete
from tests.serving import RunningServer, serve_app
from tests.upstream import FakeUpstream, fake_upstream


@pytest.fixture
def speech(tmp_path: Path) -> Iterator[tuple[RunningServer, FakeUpstream]]:
    with fake_upstream() as up:
        catalog: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
        catalog["providers"]["openai"] = {"kind": "openai", "base_url": up.url, "api_key": "sk-audio"}
        catalog["models"]["stt"] = {"provider": "openai", "model": "whisper-1", "type": "speech_to_text"}
        catalog["models"]["tts"] = {"provider": "openai", "model": "tts-1", "type": "text_to_speech"}
        catalog["projects"]["demo"]["audio"] = {"speech_to_text": "stt", "text_to_speech": "tts", "voice": "nova"}
        with serve_app(catalog, tmp_path / "data", audio_limit_mb=1) as server:
            yield server, up


def to_text(server: RunningServer, name: str, data: bytes, mime: str) -> httpx.Response:
    return httpx.post(
        server.v1 + "/audio-to-text",
        files={"file": (name, data, mime)},
        data={"user": "alice"},
        headers=server.headers(),
    )


def test_parameters_show_speech_enabled(speech: tuple[RunningServer, FakeUpstream]) -> None:
    server, _ = speech
    p = httpx.get(server.v1 + "/parameters", headers=server.headers()).json()
    assert p["speech_to_text"] == {"enabled": True}
    assert p["text_to_speech"]["enabled"] is True and p["text_to_speech"]["voice"] == "nova"


def test_audio_to_text_goes_through_the_speech_model(speech: tuple[RunningServer, FakeUpstream]) -> None:
    server, up = speech
    r = to_text(server, "hello.wav", b"RIFF....WAVE", "audio/wav")
    assert r.status_code == 200 and r.json() == {"text": "transcribed 12 bytes of hello.wav"}
    assert up.requests[-1]["model"] == "whisper-1"
    assert up.requests[-1]["headers"]["authorization"] == "Bearer sk-audio"


def test_audio_to_text_errors(speech: tuple[RunningServer, FakeUpstream]) -> None:
    server, _ = speech
    r = httpx.post(server.v1 + "/audio-to-text", data={"user": "a"}, headers=server.headers())
    assert_dify_error(r, 400, "no_audio_uploaded", "Please upload your audio.")
    for name, mime in (("a.flac", "audio/flac"), ("a.txt", "text/plain")):
        assert_dify_error(to_text(server, name, b"x", mime), 415, "unsupported_audio_type", "Audio type not allowed.")
    big = b"\0" * (1024 * 1024 + 10)
    assert_dify_error(to_text(server, "big.mp3", big, "audio/mp3"), 413, "audio_too_large", "Audio size exceeded.")


def test_text_to_audio_speaks_text_or_a_message(speech: tuple[RunningServer, FakeUpstream]) -> None:
    server, up = speech
    r = httpx.post(server.v1 + "/text-to-audio", json={"text": "hello", "user": "alice"}, headers=server.headers())
    assert r.status_code == 200 and r.content == b"ID3fake-mp3:hello" and r.headers["content-type"] == "audio/mpeg"
    assert up.requests[-1]["body"] == {"model": "tts-1", "input": "hello", "voice": "nova"}

    message = complete(server, {"inputs": {"query": "hi"}, "user": "alice"}).json()
    r = httpx.post(
        server.v1 + "/text-to-audio",
        json={"message_id": message["message_id"], "user": "alice", "voice": "echo"},
        headers=server.headers(),
    )
    assert r.content == b"ID3fake-mp3:" + message["answer"].encode()
    assert up.requests[-1]["body"]["voice"] == "echo"
    r = httpx.post(
        server.v1 + "/text-to-audio",
        json={"message_id": message["message_id"], "user": "bob"},
        headers=server.headers(),
    )
    assert_dify_error(r, 404, "not_found", "Message Not Exists.")
    assert_dify_error(
        httpx.post(server.v1 + "/text-to-audio", json={"user": "a"}, headers=server.headers()), 400, "invalid_param"
    )


def test_an_app_without_speech_answers_difys_codes(fake_server: RunningServer) -> None:
    r = to_text(fake_server, "a.wav", b"RIFF", "audio/wav")
    assert_dify_error(r, 400, "provider_not_support_speech_to_text")
    r = httpx.post(fake_server.v1 + "/text-to-audio", json={"text": "hi"}, headers=fake_server.headers())
    assert_dify_error(r, 400, "provider_not_support_text_to_speech")
