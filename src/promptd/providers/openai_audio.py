"""OpenAI's audio wire format, as an OpenAI-compatible upstream answers it: the audio type of each speech
`response_format`, and a transcript in each transcription `response_format`.

An upstream may not honour a format it is asked for (a server that only makes MP3, or only answers JSON): what it
answers is then checked against what was asked, and an answer in another format is refused (a
`ProviderBadRequest` naming `response_format`), never passed on as if it were the one asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from promptd.errors import ProviderBadRequest, ProviderError
from promptd.types import Transcript, Usage

__all__ = ["SPEECH_TYPES", "speech_type", "transcript"]

_decode = msgspec.json.Decoder().decode

#: speech `response_format` (types.SPEECH_FORMATS) → (the MIME type it is answered as, the other types an upstream
#: may label it with)
SPEECH_TYPES: Mapping[str, tuple[str, frozenset[str]]] = {
    "mp3": ("audio/mpeg", frozenset({"audio/mp3", "audio/mpeg3", "audio/x-mpeg"})),
    "opus": ("audio/opus", frozenset({"audio/ogg"})),
    "aac": ("audio/aac", frozenset({"audio/aacp", "audio/x-aac", "audio/mp4"})),
    "flac": ("audio/flac", frozenset({"audio/x-flac"})),
    "wav": ("audio/wav", frozenset({"audio/x-wav", "audio/wave", "audio/vnd.wave"})),
    "pcm": ("audio/pcm", frozenset({"audio/l16", "audio/raw"})),
}
_LABELS = {label: name for name, (main, others) in SPEECH_TYPES.items() for label in (main, *others)}
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


def speech_type(asked: str | None, media_type: str, who: str) -> str:
    """The MIME type of an upstream's audio, asked for in `asked` (None: not asked, any audio) and labelled
    `media_type`: the format's own type when the label is another name for it or says nothing (empty,
    `application/octet-stream`); a label of another audio format is refused."""
    label = media_type.split(";", 1)[0].strip().lower()
    if asked is None or asked not in SPEECH_TYPES:  # not asked (or not OpenAI's: the upstream's own), as answered
        return label or "audio/mpeg"  # OpenAI's default format
    made = _LABELS.get(label)
    if made is not None and made != asked:
        raise ProviderBadRequest(
            f"{who}: asked for {asked} audio, the upstream answered {made} ({label}): it does not make {asked}",
            code="unsupported_value",
            param="response_format",
        )
    return SPEECH_TYPES[asked][0]


def transcript(body: bytes, media_type: str, asked: str, who: str) -> Transcript:
    """An upstream's answer to a transcription asked in `asked`, checked to be in that format: JSON with `text`
    (verbose_json with the segments, words or duration that make it verbose; diarized_json with segments),
    plain text (a JSON transcript is read as its text), or subtitles (SubRip's `-->` cues, WebVTT's header)."""
    reply = _json(body) if asked != "text" or "json" in media_type else None
    if asked == "text":
        if isinstance(reply, dict) and isinstance(reply.get("text"), str):  # the same words, in JSON
            return Transcript(reply["text"], reply["text"].encode(), _TEXT, _usage(reply))
        return Transcript(body.decode("utf-8", "replace"), body, _TEXT)
    if asked in ("srt", "vtt"):
        text = body.decode("utf-8", "replace")
        cues = text.lstrip("\ufeff").startswith("WEBVTT") if asked == "vtt" else "-->" in text or not text.strip()
        if reply is not None or not cues:
            raise _not_made(asked, who)
        return Transcript(text, body, _TEXT)
    if not isinstance(reply, dict) or not isinstance(reply.get("text"), str):
        if asked == "json":
            raise ProviderError(f"{who}: unexpected transcription reply: {body[:200]!r}")
        raise _not_made(asked, who)
    if asked == "verbose_json" and not {"segments", "words", "duration"} & reply.keys():
        raise _not_made(asked, who)
    if asked == "diarized_json" and "segments" not in reply:
        raise _not_made(asked, who)
    return Transcript(reply["text"], body, _JSON, _usage(reply))


def _json(body: bytes) -> object:
    try:
        return _decode(body)
    except msgspec.DecodeError:
        return None


def _not_made(asked: str, who: str) -> ProviderBadRequest:
    return ProviderBadRequest(
        f"{who}: asked for a transcript in {asked}, the upstream answered another format: it does not make {asked}",
        code="unsupported_value",
        param="response_format",
    )


def _usage(reply: dict[str, object]) -> Usage | None:
    """The tokens a transcription reported (gpt-4o-transcribe: `usage: {type: tokens, input_tokens,
    output_tokens}`); None when it reported none (whisper-1 reports seconds of audio, or nothing)."""
    usage = reply.get("usage")
    if not isinstance(usage, dict) or usage.get("type", "tokens") != "tokens":
        return None
    tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
        return None
    return Usage(prompt_tokens=tokens_in, completion_tokens=tokens_out)
