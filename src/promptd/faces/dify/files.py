"""Files and audio: POST /files/upload, GET /files/{id}/preview, POST /audio-to-text, POST /text-to-audio."""

from __future__ import annotations

import asyncio
import mimetypes
import time

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from promptd.engine.call import Origin, SpeechCall, TranscriptionCall
from promptd.errors import InputError, NotFound
from promptd.faces.dify.auth import App, authenticate
from promptd.faces.dify.errors import DifyHTTPError
from promptd.faces.dify.wire import TextToAudioBody, decode_body, require_user
from promptd.faces.uploads import MB, mime_type, single_file
from promptd.uuids import new_uuid

__all__ = ["audio_to_text", "dify_origin", "file_kind", "preview_file", "text_to_audio", "upload_file"]

UPLOAD_KINDS = ("image", "audio", "video", "document")
IMAGE_EXTENSIONS = {"jpg", "jpeg", "png", "webp", "gif", "svg"}
AUDIO_EXTENSIONS = {"mp3", "m4a", "wav", "amr", "mpga", "ogg", "webm", "flac"}
VIDEO_EXTENSIONS = {"mp4", "mov", "mpeg", "webm", "avi", "mkv"}
#: MIME subtypes accepted by /audio-to-text (Dify's list)
STT_TYPES = {"mp3", "mp4", "mpeg", "mpga", "m4a", "wav", "webm", "amr"}
#: Files a browser would run as a page if it opened them from the API's origin. HTML is served as a download
#: of type application/octet-stream; SVG and XML keep their type (so an <img> still shows them) but are
#: served as attachments with a CSP that forbids scripts. Dify's file preview does the same.
HTML_TYPES = {"text/html", "application/xhtml+xml"}
HTML_EXTENSIONS = {"html", "htm"}
SCRIPTABLE_TYPES = {"image/svg+xml", "text/xml", "application/xml"}
SCRIPTABLE_EXTENSIONS = {"svg", "svgz", "xml"}
INERT_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / MB:.2f}".rstrip("0").rstrip(".") + " MB"


def file_kind(extension: str, mime_type: str) -> str:
    if mime_type.startswith("image/") or extension in IMAGE_EXTENSIONS:
        return "image"
    if mime_type.startswith("audio/") or extension in AUDIO_EXTENSIONS:
        return "audio"
    if mime_type.startswith("video/") or extension in VIDEO_EXTENSIONS:
        return "video"
    return "document"


async def upload_file(request: Request) -> Response:
    app = await authenticate(request)
    settings = app.svc.settings
    largest = max(settings.upload_limit_mb(kind) for kind in UPLOAD_KINDS) * MB
    upload = await single_file(
        request,
        none=DifyHTTPError(400, "no_file_uploaded", "Please upload your file."),
        many=DifyHTTPError(400, "too_many_files", "Only one file is allowed."),
        too_large=DifyHTTPError(413, "file_too_large", f"File size exceeded. The largest upload is {_mb(largest)}."),
        max_bytes=int(largest),
    )
    name = upload.filename
    if not name:
        raise DifyHTTPError(400, "filename_not_exists_error", "The specified filename does not exist.")
    if "/" in name or "\\" in name:
        raise InputError("Filename contains invalid characters.", param="file")
    mime = mime_type(upload.content_type)
    if not mime or (mime == "application/octet-stream" and "." not in name):
        raise DifyHTTPError(415, "unsupported_file_type", "File type not allowed.")
    extension = name.rsplit(".", 1)[1].lower() if "." in name else ""
    kind = file_kind(extension, mime)
    data = upload.data
    limit = settings.upload_limit_mb(kind) * MB
    if len(data) > limit:
        raise DifyHTTPError(
            413, "file_too_large", f"File size exceeded. {_mb(len(data))} > {_mb(limit)} allowed for {kind} files."
        )
    user = upload.field("user")
    owner = require_user(user) if user else "DEFAULT-USER"  # length and NUL checked, as elsewhere
    end_user_id = app.end_user(owner)
    file_id = new_uuid()
    files_dir = app.svc.settings.files_dir
    files_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread((files_dir / file_id).write_bytes, data)  # up to 100 MB: off the event loop
    now = time.time()
    await app.svc.repo.ensure_end_user(end_user_id, app.name, owner)
    await app.svc.repo.add_file(
        {
            "id": file_id,
            "project": app.name,
            "name": name,
            "size": len(data),
            "extension": extension,
            "mime_type": mime,
            "kind": kind,
            "created_by": end_user_id,
            "created_at": now,
            "storage_key": file_id,
        }
    )
    return JSONResponse(
        status_code=201,
        content={
            "id": file_id,
            "name": name,
            "size": len(data),
            "extension": extension,
            "mime_type": mime,
            "created_by": end_user_id,
            "created_at": int(now),
            "preview_url": None,
            "source_url": str(request.url_for("dify_file_preview", file_id=file_id)),
            "original_url": None,
            "user_id": None,
            "tenant_id": app.name,
            "conversation_id": None,
            "file_key": None,
        },
    )


async def preview_file(request: Request) -> Response:
    app = await authenticate(request)
    row = await app.svc.repo.get_file(request.path_params["file_id"], app.name)
    if row is None:
        raise NotFound("File not found.", code="file_not_found")
    user = request.query_params.get("user")
    if user and row["created_by"] != app.end_user(user):
        raise DifyHTTPError(403, "file_access_denied", "Access to the requested file is denied.")
    path = app.svc.settings.files_dir / row["storage_key"]
    if not path.is_file():
        raise NotFound("File not found.", code="file_not_found")
    as_attachment = request.query_params.get("as_attachment", "false").lower() == "true"
    media_type, extension = mime_type(row["mime_type"]), row["extension"].lower()
    headers = {"X-Content-Type-Options": "nosniff"}
    if media_type in HTML_TYPES or extension in HTML_EXTENSIONS:
        media_type, as_attachment = "application/octet-stream", True
    elif media_type in SCRIPTABLE_TYPES or extension in SCRIPTABLE_EXTENSIONS:
        as_attachment = True
        headers["Content-Security-Policy"] = INERT_CSP
    return FileResponse(
        path,
        media_type=media_type,
        headers=headers,
        filename=row["name"] if as_attachment else None,
        content_disposition_type="attachment" if as_attachment else "inline",
    )


def dify_origin(app: App, user: str | None) -> Origin:
    """Who calls through the Dify face: the app's key, and the end user."""
    return Origin(face="dify", project=app.name, key_id=app.key.id, key_limits=app.key.limits, user=user)


async def audio_to_text(request: Request) -> Response:
    app = await authenticate(request)
    too_large = DifyHTTPError(413, "audio_too_large", "Audio size exceeded.")
    limit = int(app.svc.settings.audio_limit_mb * MB)
    upload = await single_file(
        request,
        none=DifyHTTPError(400, "no_audio_uploaded", "Please upload your audio."),
        many=DifyHTTPError(400, "too_many_files", "Only one file is allowed."),
        too_large=too_large,
        max_bytes=limit,
    )
    model_key = app.project.audio.speech_to_text
    if model_key is None:
        raise DifyHTTPError(400, "provider_not_support_speech_to_text", "Speech to text is not enabled for this app.")
    mime = mime_type(upload.content_type)
    major, _, minor = mime.partition("/")
    if major not in ("audio", "video") or minor not in STT_TYPES:
        raise DifyHTTPError(415, "unsupported_audio_type", "Audio type not allowed.")
    data = upload.data
    if len(data) > limit:
        raise too_large
    call = TranscriptionCall(filename=upload.filename or "audio", data=data, mime_type=mime)
    answer = await app.svc.engine.transcribe(call, dify_origin(app, upload.field("user")), model_key)
    return JSONResponse({"text": answer.value.text})


async def text_to_audio(request: Request) -> Response:
    app = await authenticate(request)
    body = decode_body(await request.body(), TextToAudioBody)
    model_key = app.project.audio.text_to_speech
    if model_key is None:
        raise DifyHTTPError(400, "provider_not_support_text_to_speech", "Text to speech is not enabled for this app.")
    text = body.text
    if body.message_id:
        user = require_user(body.user)
        await app.svc.recorder.drain()
        message = await app.svc.repo.get_message(body.message_id, app.name)
        if message is None or message["end_user_id"] != app.end_user(user):
            raise NotFound("Message Not Exists.")
        text = message["answer"]
    if not text:
        raise InputError("text or message_id is required", param="text")
    call = SpeechCall(text=text, voice=body.voice or app.project.audio.voice)
    answer = await app.svc.engine.speak(
        call, dify_origin(app, body.user if isinstance(body.user, str) else None), model_key
    )
    audio, mime = answer.value
    return Response(audio, media_type=mime or mimetypes.types_map.get(".mp3", "audio/mpeg"))
