"""OpenAI's audio endpoints on the /v1 aliases: POST /v1/audio/speech, /v1/audio/transcriptions and
/v1/audio/translations, on the key's project's `audio.text_to_speech` and `audio.speech_to_text` models, through
the engine (admitted, metered and recorded like a chat: kinds `speech`, `transcription`, `translation`).

What the face does not read goes upstream as it came (speed, instructions, language, prompt, include[], …), so
the upstream judges it; what promptd cannot do (a streamed answer) is refused, and an upstream's answer in a
format other than the one asked for is refused (providers/openai_audio.py), never passed on.
"""

from __future__ import annotations

import mimetypes

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from promptd.engine.call import Origin, SpeechCall, TranscriptionCall
from promptd.errors import InputError, TooLarge
from promptd.faces.chat.auth import Caller, authenticate
from promptd.faces.chat.wire import SPEECH_FIELDS, SpeechBody, decode, other_fields
from promptd.faces.uploads import MB, Upload, mime_type, single_file
from promptd.timing import UPSTREAM_KEY
from promptd.types import SPEECH_FORMATS, TRANSCRIPT_FORMATS

__all__ = ["AUDIO_EXTENSIONS", "speech", "transcriptions", "translations"]

#: the audio files OpenAI transcribes, by extension (as its 400 lists them)
AUDIO_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
#: MIME subtypes (of audio/ or video/) that name one of them, for a file whose name does not
_SUBTYPES = {
    "flac": "flac", "x-flac": "flac", "mpeg": "mp3", "mp3": "mp3", "mpga": "mpga", "mp4": "mp4", "m4a": "m4a",
    "x-m4a": "m4a", "ogg": "ogg", "oga": "oga", "wav": "wav", "x-wav": "wav", "wave": "wav", "vnd.wave": "wav",
    "webm": "webm",
}  # fmt: skip
#: translations have no diarized_json
_TRANSLATION_FORMATS = tuple(f for f in TRANSCRIPT_FORMATS if f != "diarized_json")
_GRANULARITIES = ("word", "segment")


def _origin(caller: Caller, project: str, model: str | None) -> Origin:
    return Origin(face="chat", project=project, model=model, key_id=caller.key.id, key_limits=caller.key.limits)


def _one_of(value: str, allowed: tuple[str, ...], param: str) -> None:
    if value not in allowed:
        raise InputError(
            f"Invalid value for '{param}': {value!r}; supported values are: {', '.join(allowed)}",
            code="invalid_value",
            param=param,
        )


async def speech(request: Request) -> Response:
    """The audio of `input`, in `response_format` (mp3 when none is asked), on the project's text-to-speech model:
    `model` is the project (`demo`), or `demo/<its text-to-speech model>`."""
    caller = await authenticate(request)
    raw = await request.body()
    body = decode(raw, SpeechBody)
    project, model = caller.named(body.model)
    if body.response_format is not None:
        _one_of(body.response_format, SPEECH_FORMATS, "response_format")
    if body.stream_format == "sse":
        raise InputError(
            "stream_format 'sse' is not supported: promptd answers the whole audio (stream_format 'audio')",
            code="unsupported_value",
            param="stream_format",
        )
    if body.stream_format is not None:
        _one_of(body.stream_format, ("sse", "audio"), "stream_format")
    voice = body.voice
    if isinstance(voice, dict) and not isinstance(voice.get("id"), str):
        raise InputError("voice must be a voice's name, or a custom voice {'id': 'voice_…'}", param="voice")
    call = SpeechCall(
        text=body.input,
        voice=voice or caller.svc.catalog.projects[project].audio.voice,  # OpenAI requires one; the project has one
        params=other_fields(raw, SPEECH_FIELDS),
    )
    answer = await caller.svc.engine.speak(call, _origin(caller, project, model))
    request.scope[UPSTREAM_KEY] = answer.result.upstream_s
    audio, media_type = answer.value
    return Response(audio, media_type=media_type)


async def transcriptions(request: Request) -> Response:
    """The text of an audio `file`, on the project's speech-to-text model, in `response_format` (json when none
    is asked: `{"text": …}`)."""
    return await _transcribe(request, translate=False)


async def translations(request: Request) -> Response:
    """The English text of an audio `file` (the upstream's `/audio/translations`), as `transcriptions`."""
    return await _transcribe(request, translate=True)


async def _transcribe(request: Request, *, translate: bool) -> Response:
    caller = await authenticate(request)
    upload = await _upload(request, caller)
    model = upload.field("model")
    if model is None:
        raise InputError("you must provide a model parameter", param="model")
    project, name = caller.named(model)
    params = [(k, v) for k, v in upload.fields if k != "model"]
    _check_params(params, _TRANSLATION_FORMATS if translate else TRANSCRIPT_FORMATS)
    filename, media_type = _audio_file(upload)
    call = TranscriptionCall(
        filename=filename, data=upload.data, mime_type=media_type, params=params, translate=translate
    )
    answer = await caller.svc.engine.transcribe(call, _origin(caller, project, name))
    request.scope[UPSTREAM_KEY] = answer.result.upstream_s
    return Response(answer.value.body, media_type=answer.value.media_type)


async def _upload(request: Request, caller: Caller) -> Upload:
    """The request's audio `file` and its form fields, up to the setting `audio_limit_mb` (else a 413)."""
    limit = int(caller.svc.settings.audio_limit_mb * MB)
    too_large = TooLarge(f"Maximum content size limit ({limit}) exceeded", param="file")
    try:
        upload = await single_file(
            request,
            none=InputError("file is required: a multipart/form-data body with the audio in `file`", param="file"),
            many=InputError("only one file is taken, in `file`", param="file"),
            too_large=too_large,
            max_bytes=limit,
        )
    except HTTPException as exc:  # Starlette's multipart parser refusing the body
        raise InputError(f"invalid multipart body: {exc.detail}", param="file") from None
    if len(upload.data) > limit:
        raise TooLarge(f"Maximum content size limit ({limit}) exceeded ({len(upload.data)} bytes read)", param="file")
    return upload


def _check_params(params: list[tuple[str, str]], formats: tuple[str, ...]) -> None:
    """OpenAI's rules for the fields the face knows: a response_format of OpenAI's, a temperature in [0, 1],
    timestamp granularities (word, segment) with verbose_json only, and no streamed answer (promptd answers whole)."""
    given = dict(params)
    response_format = given.get("response_format") or "json"
    _one_of(response_format, formats, "response_format")
    if "temperature" in given:
        try:
            temperature = float(given["temperature"])
        except ValueError:
            temperature = -1.0
        if not 0 <= temperature <= 1:
            raise InputError("temperature must be a number between 0 and 1", param="temperature")
    granularities = [v for k, v in params if k in ("timestamp_granularities[]", "timestamp_granularities")]
    for value in granularities:
        _one_of(value, _GRANULARITIES, "timestamp_granularities")
    if granularities and response_format != "verbose_json":
        raise InputError(
            "timestamp_granularities needs response_format 'verbose_json'", param="timestamp_granularities"
        )
    if given.get("stream", "false").lower() not in ("false", "0", ""):
        raise InputError(
            "stream is not supported: promptd answers the whole transcript", code="unsupported_value", param="stream"
        )


def _audio_file(upload: Upload) -> tuple[str, str]:
    """(file name, MIME type) of an audio file OpenAI takes, told by its name's extension or by its MIME type (a
    name without one of OpenAI's extensions gets the type's: the upstream may tell by the name)."""
    name = upload.filename or ""
    extension = name.rsplit(".", 1)[1].lower() if "." in name else ""
    media_type = mime_type(upload.content_type)
    major, _, minor = media_type.partition("/")
    typed = _SUBTYPES.get(minor) if major in ("audio", "video") else None
    if extension not in AUDIO_EXTENSIONS:
        if typed is None:
            raise InputError(
                f"Invalid file format. Supported formats: {list(AUDIO_EXTENSIONS)}",
                code="invalid_file_format",
                param="file",
            )
        name = f"{name or 'audio'}.{typed}"
    elif typed is None:  # application/octet-stream, or no type: the extension's
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, media_type
