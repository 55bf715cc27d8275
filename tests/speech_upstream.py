"""OpenAI's audio API over real HTTP, for the speech tests of both faces (tests/faces/dify/test_audio.py,
tests/faces/chat/test_openai_audio.py).

`SpeechUpstream` is a small Starlette app run on a real socket. It stands for OpenAI's audio endpoints
(`POST /v1/audio/transcriptions` and `/v1/audio/translations`, multipart; `POST /v1/audio/speech`, JSON in, audio
bytes out), answers in the `response_format` asked (as OpenAI does), and keeps what it was sent, so the tests see
exactly what promptd forwarded. Switches stand for other OpenAI-compatible servers:

    honours = False   a server that makes one format only: MP3 speech, JSON transcripts, whatever is asked
    fail = STATUS     every endpoint answers that status, with OpenAI's error body
    usage = True      JSON transcripts report tokens, as gpt-4o-transcribe does (a token per byte in, per word out)

The upstream model `tts-1` refuses `instructions` with OpenAI's own 400 (param `instructions`), as OpenAI's does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import FAKE_CATALOG
from tests.serving import serve_in_thread

__all__ = ["AUDIO_TYPES", "WAV", "SpeechUpstream", "speech_catalog", "speech_upstream"]

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "
#: what OpenAI labels each speech format with
AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


@dataclass
class SpeechUpstream:
    transcriptions: list[dict[str, Any]] = field(default_factory=list)
    speeches: list[dict[str, Any]] = field(default_factory=list)
    fail: int | None = None
    honours: bool = True
    usage: bool = False

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/audio/transcriptions", self.transcribe, methods=["POST"]),
                Route("/v1/audio/translations", self.transcribe, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
            ]
        )

    def _error(self, status: int, message: str, param: str | None = None) -> Response:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
        return JSONResponse(body, status_code=status)

    async def transcribe(self, request: Request) -> Response:
        async with request.form() as form:
            upload: Any = form["file"]
            data = await upload.read()
            fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
            self.transcriptions.append(
                {
                    "path": request.url.path,
                    "authorization": request.headers.get("authorization"),
                    "model": form["model"],
                    "fields": fields,
                    "filename": upload.filename,
                    "content_type": upload.content_type,
                    "data": data,
                }
            )
        if self.fail:
            return self._error(self.fail, f"upstream says {self.fail}")
        verb = "translated" if request.url.path.endswith("translations") else "heard"
        text = f"{verb} {len(data)} bytes of {upload.filename}"
        asked = dict(fields).get("response_format", "json") if self.honours else "json"
        if asked == "text":
            return PlainTextResponse(text + "\n")
        if asked == "srt":
            return PlainTextResponse(f"1\n00:00:00,000 --> 00:00:01,500\n{text}\n\n")
        if asked == "vtt":
            return PlainTextResponse(f"WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n{text}\n\n")
        if asked == "verbose_json":
            segment = {"id": 0, "start": 0.0, "end": 1.5, "text": text}
            return JSONResponse({"task": "transcribe", "language": "english", "duration": 1.5, "text": text,
                                 "segments": [segment]})  # fmt: skip
        reply: dict[str, Any] = {"text": text}
        if self.usage:
            words = len(text.split())
            reply["usage"] = {"type": "tokens", "input_tokens": len(data), "output_tokens": words,
                              "total_tokens": len(data) + words}  # fmt: skip
        return JSONResponse(reply)

    async def speech(self, request: Request) -> Response:
        body = await request.json()
        self.speeches.append({"authorization": request.headers.get("authorization"), "body": body})
        if self.fail:
            return self._error(self.fail, f"upstream says {self.fail}")
        if body.get("instructions") and body["model"] == "tts-1":
            return self._error(400, "instructions are not supported with tts-1", "instructions")
        if body["voice"] == "wav-voice":  # a voice this upstream renders as WAV
            return Response(WAV + body["input"].encode(), media_type="audio/wav")
        asked = body.get("response_format", "mp3") if self.honours else "mp3"
        magic = b"ID3" if asked == "mp3" else asked.encode() + b":"  # an MP3 begins with its ID3 tag
        return Response(magic + body["input"].encode(), media_type=AUDIO_TYPES[asked])


def speech_catalog(upstream_url: str) -> dict[str, Any]:
    """The test catalog, with `demo` speaking through `tts` (upstream tts-1) and hearing through `stt` (whisper-1)."""
    catalog: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
    catalog["providers"]["openai"] = {"kind": "openai", "base_url": upstream_url, "api_key": "sk-audio"}
    catalog["models"]["stt"] = {"provider": "openai", "model": "whisper-1", "type": "speech_to_text"}
    catalog["models"]["tts"] = {"provider": "openai", "model": "tts-1", "type": "text_to_speech"}
    catalog["projects"]["demo"]["audio"] = {"speech_to_text": "stt", "text_to_speech": "tts", "voice": "nova"}
    return catalog


@contextmanager
def speech_upstream() -> Iterator[tuple[SpeechUpstream, str]]:
    """A running `SpeechUpstream`, and its base URL (`…/v1`)."""
    up = SpeechUpstream()
    with serve_in_thread(up.app()) as url:
        yield up, url + "/v1"
