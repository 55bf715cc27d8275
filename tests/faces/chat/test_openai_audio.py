"""OpenAI's audio endpoints on the /v1 aliases, driven by the `openai` SDK (and raw HTTP for what the SDK would not
send): `client.audio.speech.create`, `client.audio.transcriptions.create`, `client.audio.translations.create`.

`SpeechUpstream` (tests/speech_upstream.py) stands for OpenAI's audio API on a real socket: it answers in the
format asked and keeps what it was sent, so each test sees what reached the upstream. Limits, budgets, metering and
the record of the same calls through both faces: tests/engine/test_governed.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from promptd.domain.limits import Limits
from tests.faces.chat.helpers import assert_openai_error
from tests.serving import RunningServer, serve_app
from tests.speech_upstream import AUDIO_TYPES, WAV, SpeechUpstream, speech_catalog, speech_upstream

KB = 1024
HEARD = f"heard {len(WAV)} bytes of hello.wav"


@pytest.fixture
def audio(tmp_path: Path) -> Iterator[tuple[RunningServer, SpeechUpstream]]:
    """promptd with `demo` speaking through tts-1 and hearing through whisper-1, `voiced` speaking through
    gpt-4o-mini-tts (which takes instructions), `plain` with no audio model; audio files up to 10 KiB."""
    with speech_upstream() as (up, url):
        catalog = speech_catalog(url)
        catalog["models"]["mini-tts"] = {"provider": "openai", "model": "gpt-4o-mini-tts", "type": "text_to_speech"}
        catalog["projects"]["voiced"] = copy.deepcopy(catalog["projects"]["demo"])
        catalog["projects"]["voiced"]["audio"] = {"text_to_speech": "mini-tts"}
        catalog["projects"]["plain"] = {"mode": "chat", "models": ["echo"]}
        with serve_app(catalog, tmp_path / "data", audio_limit_mb=10 / KB) as server:
            yield server, up


def sdk(server: RunningServer, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key=key or server.key, max_retries=0)


def speak(server: RunningServer, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(server.v1 + "/audio/speech", json=body, headers=server.headers(key), timeout=30)


def transcribe(
    server: RunningServer,
    fields: dict[str, Any],
    file: tuple[str, bytes, str] | None = ("hello.wav", WAV, "audio/wav"),
    path: str = "/audio/transcriptions",
) -> httpx.Response:
    files = {"file": file} if file is not None else None
    return httpx.post(server.v1 + path, data=fields, files=files, headers=server.headers(), timeout=30)


def stored(server: RunningServer, kind: str) -> list[dict[str, Any]]:
    """The records of `demo` of this kind, oldest first."""
    server.settle()
    rows = server.repo_call(lambda repo: repo.list_messages("demo", limit=100))
    return sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["created_at"])


# --- speech ---------------------------------------------------------------------------------------------------------


def test_the_sdk_speaks_on_the_projects_speech_model(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    with sdk(server) as client:
        spoken = client.audio.speech.create(model="demo", voice="alloy", input="hello")
        assert spoken.content == b"ID3hello" and spoken.response.headers["content-type"] == "audio/mpeg"
        assert up.speeches[-1] == {
            "authorization": "Bearer sk-audio",
            "body": {"model": "tts-1", "input": "hello", "voice": "alloy"},
        }
        # `project/<its text-to-speech model>`, or its bare name, names the same; format and speed go upstream as sent
        assert client.audio.speech.create(model="tts", voice="alloy", input="hello").content == b"ID3hello"
        assert client.audio.transcriptions.create(model="stt", file=("hello.wav", WAV)).text == HEARD
        spoken = client.audio.speech.create(
            model="demo/tts", voice="echo", input="hi", response_format="wav", speed=1.5
        )
        assert spoken.content == b"wav:hi" and spoken.response.headers["content-type"] == "audio/wav"
        sent = {"model": "tts-1", "input": "hi", "voice": "echo", "response_format": "wav", "speed": 1.5}
        assert up.speeches[-1]["body"] == sent
        for fmt, media_type in AUDIO_TYPES.items():
            spoken = client.audio.speech.create(model="demo", voice="echo", input="x", response_format=fmt)  # type: ignore[arg-type]
            assert spoken.response.headers["content-type"] == media_type
        spoken = client.audio.speech.create(model="demo", voice="echo", input="x" * 4096)  # OpenAI's longest input
        assert spoken.content == b"ID3" + b"x" * 4096


def test_instructions_a_custom_voice_and_stream_format_audio_go_upstream(
    audio: tuple[RunningServer, SpeechUpstream],
) -> None:
    server, up = audio
    with sdk(server, server.new_key("voiced")) as client:
        spoken = client.audio.speech.create(
            model="voiced",
            voice={"id": "voice_1234"},
            input="hey",
            instructions="Whisper it.",
            response_format="opus",
            stream_format="audio",
        )
    assert spoken.content == b"opus:hey" and spoken.response.headers["content-type"] == "audio/opus"
    assert up.speeches[-1]["body"] == {
        "model": "gpt-4o-mini-tts",
        "input": "hey",
        "voice": {"id": "voice_1234"},
        "instructions": "Whisper it.",
        "response_format": "opus",
        "stream_format": "audio",
    }


def test_without_a_voice_the_projects_voice_speaks(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    assert speak(server, {"model": "demo", "input": "hi"}).status_code == 200
    assert up.speeches[-1]["body"]["voice"] == "nova"  # the catalog's audio.voice


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "x" * 4097}, "input", "invalid_param"),
        ({"input": ""}, "input", "invalid_param"),
        ({"input": 42}, "input", "invalid_param"),
        ({"input": None}, "input", "invalid_param"),
        ({"speed": 4.5}, "speed", "invalid_param"),
        ({"speed": 0.2}, "speed", "invalid_param"),
        ({"response_format": "ogg"}, "response_format", "invalid_value"),
        ({"stream_format": "sse"}, "stream_format", "unsupported_value"),
        ({"stream_format": "chunks"}, "stream_format", "invalid_value"),
        ({"voice": {"name": "alloy"}}, "voice", "invalid_param"),
    ],
)
def test_a_bad_speech_request_names_its_param(
    audio: tuple[RunningServer, SpeechUpstream], body: dict[str, Any], param: str, code: str
) -> None:
    server, up = audio
    sent = {k: v for k, v in {"model": "demo", "input": "hi", "voice": "alloy", **body}.items() if v is not None}
    assert_openai_error(speak(server, sent), 400, param, code)
    assert up.speeches == []


@pytest.mark.parametrize(
    ("model", "status", "param", "code"),
    [
        ("nope", 404, "model", "model_not_found"),
        ("demo/nope", 404, "model", "model_not_found"),
        ("demo/echo", 400, "model", "invalid_param"),  # a chat model
        ("demo/stt", 400, "model", "invalid_param"),  # the project's speech-to-text model
        ("demo/mini-tts", 404, "model", "model_not_found"),  # another project's text-to-speech model
        ("plain", 403, None, "forbidden"),  # another key's project
    ],
)
def test_speech_takes_the_projects_speech_model_only(
    audio: tuple[RunningServer, SpeechUpstream], model: str, status: int, param: str | None, code: str
) -> None:
    server, up = audio
    assert_openai_error(speak(server, {"model": model, "input": "hi", "voice": "alloy"}), status, param, code)
    assert up.speeches == []


def test_the_projects_speech_models_are_listed_and_retrieved(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, _ = audio
    with sdk(server) as client:
        listed = [m.id for m in client.models.list()]
        assert listed[-2:] == ["demo/tts", "demo/stt"]  # after the models attached: what /v1/audio/* may name
        for model_id in ("demo/tts", "demo/stt", "tts", "stt"):
            assert client.models.retrieve(model_id).id == model_id
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("demo/mini-tts")  # another project's speech model
    with sdk(server, server.new_key("plain")) as client:
        assert [m.id for m in client.models.list()] == ["plain", "plain/echo"]


def test_a_project_without_audio_models_says_so(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    key = server.new_key("plain")
    error = assert_openai_error(speak(server, {"model": "plain", "input": "hi", "voice": "alloy"}, key), 400, "model")
    assert "declares no text_to_speech model (`audio.text_to_speech` in the catalog)" in error["message"]
    files = {"file": ("hello.wav", WAV, "audio/wav")}
    r = httpx.post(
        server.v1 + "/audio/transcriptions", data={"model": "plain"}, files=files, headers=server.headers(key)
    )
    assert "declares no speech_to_text model" in assert_openai_error(r, 400, "model")["message"]
    assert up.speeches == [] and up.transcriptions == []


def test_what_the_upstream_cannot_honour_is_a_400_naming_it(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    with sdk(server) as client:
        # tts-1 takes no instructions: OpenAI's own 400, with its param
        with pytest.raises(openai.BadRequestError) as refused:
            client.audio.speech.create(model="demo", voice="alloy", input="hi", instructions="Whisper it.")
        assert refused.value.body["param"] == "instructions"  # type: ignore[index]
        assert "instructions are not supported with tts-1" in refused.value.body["message"]  # type: ignore[index]
        # a server that makes MP3 only: asked for WAV, its MP3 is refused, never passed on as WAV
        up.honours = False
        with pytest.raises(openai.BadRequestError) as refused:
            client.audio.speech.create(model="demo", voice="alloy", input="hi", response_format="wav")
        assert refused.value.body["param"] == "response_format"  # type: ignore[index]
        assert refused.value.body["code"] == "unsupported_value"  # type: ignore[index]
        assert client.audio.speech.create(model="demo", voice="alloy", input="hi", response_format="mp3").content
    failed = stored(server, "speech")[:2]
    assert [r["status"] for r in failed] == ["error", "error"]
    assert failed[1]["error_code"] == "unsupported_value"


# --- transcriptions and translations --------------------------------------------------------------------------------


def test_the_sdk_transcribes_on_the_projects_speech_to_text_model(
    audio: tuple[RunningServer, SpeechUpstream],
) -> None:
    server, up = audio
    with sdk(server) as client:
        heard = client.audio.transcriptions.create(
            model="demo", file=("hello.wav", WAV, "audio/wav"), language="fr", prompt="Bonjour", temperature=0.2
        )
        assert heard.text == HEARD
        sent = up.transcriptions[-1]
        assert sent["path"] == "/v1/audio/transcriptions" and sent["model"] == "whisper-1"
        assert sent["filename"] == "hello.wav" and sent["content_type"] == "audio/wav" and sent["data"] == WAV
        assert dict(sent["fields"]) == {
            "model": "whisper-1",
            "language": "fr",
            "prompt": "Bonjour",
            "temperature": "0.2",
        }
        assert sent["authorization"] == "Bearer sk-audio"

        text = client.audio.transcriptions.create(model="demo/stt", file=("hello.wav", WAV), response_format="text")
        assert text == HEARD + "\n"  # the upstream's body, as it came
        srt = client.audio.transcriptions.create(model="demo", file=("hello.wav", WAV), response_format="srt")
        assert "00:00:00,000 --> 00:00:01,500" in srt and HEARD in srt
        vtt = client.audio.transcriptions.create(model="demo", file=("hello.wav", WAV), response_format="vtt")
        assert vtt.startswith("WEBVTT") and HEARD in vtt
        verbose = client.audio.transcriptions.create(
            model="demo",
            file=("hello.wav", WAV),
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
        assert verbose.text == HEARD and verbose.duration == 1.5 and verbose.segments
        granularities = [v for k, v in up.transcriptions[-1]["fields"] if k == "timestamp_granularities[]"]
        assert granularities == ["word", "segment"]

        with pytest.warns(DeprecationWarning):  # OpenAI's SDK marks translations deprecated; its API serves them
            translated = client.audio.translations.create(model="demo", file=("hello.wav", WAV, "audio/wav"))
        assert translated.text == f"translated {len(WAV)} bytes of hello.wav"
        assert up.transcriptions[-1]["path"] == "/v1/audio/translations"
    assert [r["answer"] for r in stored(server, "translation")] == [translated.text]


def test_formats_the_upstream_does_not_make_are_refused(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    """A server that answers JSON whatever is asked: its JSON is no subtitles nor a verbose transcript; as text,
    it is the same words."""
    server, up = audio
    up.honours = False
    for fmt in ("srt", "vtt", "verbose_json"):
        assert_openai_error(transcribe(server, {"model": "demo", "response_format": fmt}), 400, "response_format")
    r = transcribe(server, {"model": "demo", "response_format": "text"})
    assert r.status_code == 200 and r.text == HEARD and r.headers["content-type"].startswith("text/plain")
    assert len(up.transcriptions) == 4


@pytest.mark.parametrize(
    ("fields", "file", "param", "code"),
    [
        ({"model": "demo"}, None, "file", "invalid_param"),
        ({}, ("hello.wav", WAV, "audio/wav"), "model", "invalid_param"),
        ({"model": "demo"}, ("notes.txt", b"hello", "text/plain"), "file", "invalid_file_format"),
        ({"model": "demo"}, ("clip.amr", b"#!AMR", "audio/amr"), "file", "invalid_file_format"),
        ({"model": "demo", "temperature": "2"}, ("hello.wav", WAV, "audio/wav"), "temperature", "invalid_param"),
        ({"model": "demo", "temperature": "hot"}, ("hello.wav", WAV, "audio/wav"), "temperature", "invalid_param"),
        ({"model": "demo", "response_format": "xml"}, ("hello.wav", WAV, "audio/wav"), "response_format", None),
        ({"model": "demo", "stream": "true"}, ("hello.wav", WAV, "audio/wav"), "stream", "unsupported_value"),
        (
            {"model": "demo", "timestamp_granularities[]": "word"},  # with json
            ("hello.wav", WAV, "audio/wav"),
            "timestamp_granularities",
            "invalid_param",
        ),
        (
            {"model": "demo", "response_format": "verbose_json", "timestamp_granularities[]": "line"},
            ("hello.wav", WAV, "audio/wav"),
            "timestamp_granularities",
            "invalid_value",
        ),
        ({"model": "demo/tts"}, ("hello.wav", WAV, "audio/wav"), "model", "invalid_param"),
        ({"model": "nope"}, ("hello.wav", WAV, "audio/wav"), "model", "model_not_found"),
    ],
)
def test_a_bad_transcription_request_names_its_param(
    audio: tuple[RunningServer, SpeechUpstream],
    fields: dict[str, str],
    file: tuple[str, bytes, str] | None,
    param: str,
    code: str | None,
) -> None:
    server, up = audio
    status = 404 if code == "model_not_found" else 400
    assert_openai_error(transcribe(server, fields, file), status, param, code)
    assert up.transcriptions == []


def test_a_json_body_or_diarized_translation_is_refused(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    r = httpx.post(server.v1 + "/audio/transcriptions", json={"model": "demo"}, headers=server.headers())
    assert_openai_error(r, 400, "file")
    fields = {"model": "demo", "response_format": "diarized_json"}
    assert_openai_error(transcribe(server, fields, path="/audio/translations"), 400, "response_format")
    assert up.transcriptions == []


@pytest.mark.parametrize(
    ("file", "sent_as"),
    [
        (("a.flac", b"fLaC", "audio/flac"), ("a.flac", "audio/flac")),
        (("a.ogg", b"OggS", "audio/ogg"), ("a.ogg", "audio/ogg")),
        (("a.m4a", b"....ftyp", "audio/x-m4a"), ("a.m4a", "audio/x-m4a")),
        (("a.webm", b"\x1aE\xdf\xa3", "video/webm"), ("a.webm", "video/webm")),
        (("a.mp4", b"....ftyp", "video/mp4"), ("a.mp4", "video/mp4")),
        (("rec.webm", b"\x1aE\xdf\xa3", "audio/webm;codecs=opus"), ("rec.webm", "audio/webm")),
        (("a.mp3", b"ID3", "application/octet-stream"), ("a.mp3", "audio/mpeg")),  # the type from the name
        (("voice", b"ID3", "audio/mpeg"), ("voice.mp3", "audio/mpeg")),  # a name the upstream can tell it by
        (("blob", b"RIFF", "audio/x-wav"), ("blob.wav", "audio/x-wav")),
    ],
)
def test_openais_audio_types_are_taken(
    audio: tuple[RunningServer, SpeechUpstream], file: tuple[str, bytes, str], sent_as: tuple[str, str]
) -> None:
    server, up = audio
    r = transcribe(server, {"model": "demo"}, file)
    assert r.status_code == 200, r.text
    assert (up.transcriptions[-1]["filename"], up.transcriptions[-1]["content_type"]) == sent_as


def test_audio_over_the_limit_is_openais_413(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    assert transcribe(server, {"model": "demo"}, ("ok.mp3", b"\0" * (10 * KB), "audio/mpeg")).status_code == 200
    # just over the limit (read, then refused) and far over it (refused from its Content-Length, unread)
    for size in (10 * KB + 1, 2 * KB * KB):
        r = transcribe(server, {"model": "demo"}, ("big.mp3", b"\0" * size, "audio/mpeg"))
        error = assert_openai_error(r, 413, "file", "file_too_large")
        assert f"Maximum content size limit ({10 * KB}) exceeded" in error["message"]
    assert len(up.transcriptions) == 1


def test_a_body_the_server_refuses_is_openais_413(tmp_path: Path) -> None:
    """Past the server's own limit on a multipart body (`max_upload_mb`), refused before the face reads it."""
    with (
        speech_upstream() as (up, url),
        serve_app(speech_catalog(url), tmp_path / "data", max_upload_mb=0.01) as server,
    ):
        r = transcribe(server, {"model": "demo"}, ("big.mp3", b"\0" * (20 * KB), "audio/mpeg"))
        assert_openai_error(r, 413, None)
    assert up.transcriptions == []


# --- what every call shares: the key, limits, the record --------------------------------------------------------


def test_a_bad_key_is_openais_401(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    with sdk(server, "app-nope") as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            client.audio.speech.create(model="demo", voice="alloy", input="hi")
        assert refused.value.body["code"] == "invalid_api_key"  # type: ignore[index]
        with pytest.raises(openai.AuthenticationError):
            client.audio.transcriptions.create(model="demo", file=("hello.wav", WAV))
    assert up.speeches == [] and up.transcriptions == []


def test_a_keys_rate_limit_is_openais_429(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio

    async def make(repo: Any) -> str:
        key, _ = await repo.create_key("demo", limits=Limits(rpm=2))
        return str(key)

    key = server.repo_call(make)
    with sdk(server, key) as client:
        client.audio.speech.create(model="demo", voice="alloy", input="hi")
        client.audio.transcriptions.create(model="demo", file=("hello.wav", WAV))
        with pytest.raises(openai.RateLimitError) as limited:
            client.audio.speech.create(model="demo", voice="alloy", input="hi")
        assert int(limited.value.response.headers["retry-after"]) >= 1
        assert limited.value.body["type"] == "requests"  # type: ignore[index]
        assert limited.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
        with pytest.raises(openai.RateLimitError):
            client.audio.transcriptions.create(model="demo", file=("hello.wav", WAV))
    assert len(up.speeches) == 1 and len(up.transcriptions) == 1


def test_an_upstream_failure_is_openais_error(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    up.fail = 429
    error = assert_openai_error(
        speak(server, {"model": "demo", "input": "hi"}), 429, None, "rate_limit_exceeded", "requests"
    )
    assert "upstream says 429" in error["message"]
    up.fail = 500
    assert transcribe(server, {"model": "demo"}).status_code == 502


def test_each_call_is_recorded_with_its_text_and_tokens(audio: tuple[RunningServer, SpeechUpstream]) -> None:
    server, up = audio
    up.usage = True  # as gpt-4o-transcribe reports them
    with sdk(server) as client:
        client.audio.speech.create(model="demo", voice="alloy", input="Say this")
        client.audio.transcriptions.create(model="demo", file=("hello.wav", WAV, "audio/wav"))
    key_id = server.repo_call(lambda repo: repo.list_keys("demo"))[0].id
    (spoken,) = stored(server, "speech")
    assert (spoken["face"], spoken["model"], spoken["query"], spoken["status"]) == ("chat", "tts", "Say this", "normal")
    (heard,) = stored(server, "transcription")
    assert (heard["model"], heard["answer"], heard["key_id"]) == ("stt", HEARD, key_id)
    assert (heard["prompt_tokens"], heard["completion_tokens"]) == (len(WAV), len(HEARD.split()))
