"""OpenAI's audio formats as an upstream answers them (providers/openai_audio.py): pure, no I/O. The same through a
real server and the SDK: tests/faces/chat/test_openai_audio.py."""

from __future__ import annotations

import pytest

from promptd.errors import ProviderBadRequest, ProviderError
from promptd.providers.openai_audio import speech_type, transcript
from promptd.types import Transcript, Usage

WHO = "provider 'up'"


@pytest.mark.parametrize(
    ("asked", "label", "answered"),
    [
        (None, "audio/mpeg", "audio/mpeg"),
        (None, "", "audio/mpeg"),  # OpenAI's default format
        (None, "audio/wav", "audio/wav"),  # not asked: whatever the upstream made, as labelled
        ("wav", "audio/x-wav", "audio/wav"),  # another name of the format asked
        ("wav", "application/octet-stream", "audio/wav"),  # a label that says nothing
        ("wav", "", "audio/wav"),
        ("opus", "audio/ogg", "audio/opus"),
        ("mp3", "Audio/MPEG; charset=binary", "audio/mpeg"),
        ("pcm", "audio/L16", "audio/pcm"),
    ],
)
def test_speech_is_answered_as_the_format_asked(asked: str | None, label: str, answered: str) -> None:
    assert speech_type(asked, label, WHO) == answered


@pytest.mark.parametrize(("asked", "label"), [("wav", "audio/mpeg"), ("mp3", "audio/flac"), ("pcm", "audio/wav")])
def test_speech_in_another_format_is_refused(asked: str, label: str) -> None:
    with pytest.raises(ProviderBadRequest) as refused:
        speech_type(asked, label, WHO)
    assert (refused.value.param, refused.value.code) == ("response_format", "unsupported_value")


def test_a_json_transcript_keeps_its_body_and_reported_tokens() -> None:
    body = b'{"text": "hi there", "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 2}}'
    assert transcript(body, "application/json", "json", WHO) == Transcript(
        "hi there", body, "application/json", Usage(prompt_tokens=14, completion_tokens=2)
    )
    seconds = b'{"text": "hi", "usage": {"type": "duration", "seconds": 3}}'  # whisper-1: no tokens
    assert transcript(seconds, "application/json", "json", WHO).usage is None


def test_a_transcript_that_is_not_one_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as failed:
        transcript(b"<html>oops</html>", "text/html", "json", WHO)
    assert not isinstance(failed.value, ProviderBadRequest)


def test_text_is_the_upstreams_or_a_json_transcripts_words() -> None:
    assert transcript(b"hi there\n", "text/plain", "text", WHO).body == b"hi there\n"
    made = transcript(b'{"text": "hi there"}', "application/json", "text", WHO)
    assert (made.text, made.body, made.media_type) == ("hi there", b"hi there", "text/plain; charset=utf-8")


@pytest.mark.parametrize(
    ("asked", "body"),
    [
        ("srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n"),
        ("srt", b""),  # silence: no cue
        ("vtt", b"WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n"),
        ("vtt", b"\xef\xbb\xbfWEBVTT\n"),  # with a byte-order mark
        ("verbose_json", b'{"text": "hi", "duration": 1.0, "segments": []}'),
        ("diarized_json", b'{"text": "hi", "segments": [{"speaker": "A", "text": "hi"}]}'),
    ],
)
def test_the_format_asked_is_passed_on(asked: str, body: bytes) -> None:
    assert transcript(body, "text/plain" if asked in ("srt", "vtt") else "application/json", asked, WHO).body == body


@pytest.mark.parametrize(
    ("asked", "body", "label"),
    [
        ("srt", b'{"text": "hi"}', "application/json"),
        ("srt", b"hi", "text/plain"),  # plain text is no subtitles
        ("vtt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n", "text/plain"),  # SubRip is no WebVTT
        ("verbose_json", b'{"text": "hi"}', "application/json"),
        ("diarized_json", b'{"text": "hi"}', "application/json"),
        ("verbose_json", b"hi", "text/plain"),
    ],
)
def test_another_format_is_refused(asked: str, body: bytes, label: str) -> None:
    with pytest.raises(ProviderBadRequest) as refused:
        transcript(body, label, asked, WHO)
    assert (refused.value.param, refused.value.code) == ("response_format", "unsupported_value")
