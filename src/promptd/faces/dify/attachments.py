"""A completion request's `files` (and `file` / `file-list` inputs) as content the model can read.

- images: OpenAI `image_url` parts (a vision model is required);
- documents (txt, md, html, csv, pdf, docx; a `custom` file whose extension is one of those): their text,
  extracted by promptd/documents.py, as a text part;
- audio: transcribed by the project's `audio.speech_to_text` model (the speech provider path of
  /audio-to-text), as a text part;
- video: a `video_url` part for a model declared `video: true`; any other model is a clear 400.

Which files an app takes is its `file_upload` config: the older `image` block, or Dify's newer keys
(`enabled`, `allowed_file_types`, `allowed_file_extensions`, `allowed_file_upload_methods`, `number_limits`).
Every refusal is a 400 saying why; nothing is dropped silently. Remote URLs must be http(s)
(`check_remote_url`), and the files promptd fetches itself go through the SSRF guard (promptd/urlguard.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass

from promptd import urlguard
from promptd.catalog.schema import FileUploadConfig
from promptd.documents import extract_text, readable
from promptd.engine.call import TranscriptionCall
from promptd.errors import InputError
from promptd.faces.dify.auth import App
from promptd.faces.dify.wire import FileRef
from promptd.types import ContentPart

__all__ = ["check_remote_url", "file_parts", "takes_files"]

MB = 1024 * 1024


def check_remote_url(url: str) -> None:
    """Only http(s) URLs; what promptd fetches itself is then checked by the SSRF guard in `_fetch`."""
    if not url.startswith(("http://", "https://")):
        raise InputError("url must be an http(s) URL for remote_url", param="files")


@dataclass(slots=True)
class _Loaded:
    data: bytes
    name: str
    extension: str
    mime_type: str


def _allowed(config: FileUploadConfig) -> tuple[list[str], list[str], int]:
    """(file types, transfer methods, most files) the app takes; the newer keys win when `enabled`."""
    if config.enabled:
        return list(config.allowed_file_types), list(config.allowed_file_upload_methods), config.number_limits
    if config.image.enabled:
        return ["image"], list(config.image.transfer_methods), config.image.number_limits
    return [], [], 0


async def _fetch(app: App, url: str, limit_mb: float) -> bytes:
    """A remote file's bytes, within the upload limit of its kind and the remote fetch timeout, fetched through
    the SSRF guard (promptd/urlguard.py): loopback, private and link-local targets, and redirects to them, are
    refused unless `fetch_allow_networks` allows them."""
    settings = app.svc.settings
    with _fetch_errors(url, limit_mb):
        data, _ = await urlguard.fetch(
            url, time_limit=settings.remote_fetch_timeout, max_bytes=int(limit_mb * MB), allow=settings.fetch_allow
        )
    return data


async def _inline_image(app: App, url: str) -> str:
    """A remote image as a data URL (`inline_remote_images`), fetched as `_fetch` fetches, its content type an
    image's."""
    settings = app.svc.settings
    limit_mb = settings.upload_limit_mb("image")
    with _fetch_errors(url, limit_mb):
        return await urlguard.inline(
            url,
            kind="image",
            time_limit=settings.remote_fetch_timeout,
            max_bytes=int(limit_mb * MB),
            allow=settings.fetch_allow,
        )


@contextlib.contextmanager
def _fetch_errors(url: str, limit_mb: float) -> Iterator[None]:
    """The guard's refusals, in Dify's words."""
    try:
        yield
    except InputError as exc:
        reason = exc.message.removeprefix("url: ")
        if "larger than" in reason:
            raise InputError(f"The file at {url} is larger than the {limit_mb:g} MB allowed.", param="files") from None
        raise InputError(f"The file at {url} could not be fetched ({reason}).", param="files") from None


async def _load(app: App, f: FileRef, i: int, end_user: str, kind: str) -> _Loaded:
    if f.transfer_method == "remote_url":
        assert f.url is not None
        name = f.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "file"
        extension = name.rsplit(".", 1)[1].lower() if "." in name else ""
        data = await _fetch(app, f.url, app.svc.settings.upload_limit_mb(kind))
        return _Loaded(data, name, extension, mimetypes.guess_type(name)[0] or "")
    row = await app.svc.repo.get_file(f.upload_file_id or "", app.name)
    if row is None or row["created_by"] != end_user:
        raise InputError("Invalid upload file", param="files")
    if kind == "image" and row["kind"] != "image":
        raise InputError(f"files[{i}]: the uploaded file is not an image", param="files")
    try:
        data = await asyncio.to_thread((app.svc.settings.files_dir / row["storage_key"]).read_bytes)
    except OSError:
        raise InputError("Invalid upload file", param="files") from None  # its bytes are gone
    return _Loaded(data, row["name"], row["extension"], row["mime_type"])


def _data_url(loaded: _Loaded, fallback: str) -> str:
    return f"data:{loaded.mime_type or fallback};base64,{base64.b64encode(loaded.data).decode()}"


async def _transcribe(app: App, loaded: _Loaded, end_user: str | None) -> str:
    """The audio's transcript, by the project's speech-to-text model: through the engine, so it is admitted,
    metered and recorded like any model call."""
    from promptd.faces.dify.files import dify_origin

    model_key = app.project.audio.speech_to_text
    if model_key is None:
        raise InputError(
            "Audio files need a speech-to-text model: this app sets no audio.speech_to_text.", param="files"
        )
    call = TranscriptionCall(filename=loaded.name, data=loaded.data, mime_type=loaded.mime_type or "audio/mpeg")
    answer = await app.svc.engine.transcribe(call, dify_origin(app, end_user), model_key)
    return answer.value


def takes_files(config: FileUploadConfig) -> bool:
    """Whether the app takes any file at all (when it does not, Dify ignores a request's `files`)."""
    return bool(_allowed(config)[0])


async def file_parts(app: App, files: list[FileRef], user: str) -> list[ContentPart]:
    """Resolve `files` to content parts the model can read, with Dify-style errors for each misuse. Whether the
    model can read images and video is the engine's check (it knows which model the call is routed to)."""
    end_user = app.end_user(user)
    config = app.project.file_upload
    types, methods, most = _allowed(config)
    if not types:
        raise InputError("File upload is not enabled for this app.", param="files")
    if len(files) > most:
        noun = "image files" if types == ["image"] else "files"
        raise InputError(f"Number of {noun} exceeds the maximum limit of {most}.", param="files")
    parts: list[ContentPart] = []
    for i, f in enumerate(files):
        if f.type not in types:
            allowed = ", ".join(types)
            raise InputError(f"files[{i}]: only {allowed} files are accepted by this app, not {f.type}", param="files")
        if f.transfer_method not in methods:
            raise InputError(f"files[{i}]: transfer method {f.transfer_method} is not allowed", param="files")
        if f.transfer_method == "remote_url":
            check_remote_url(f.url or "")
        elif not f.upload_file_id:
            raise InputError(f"files[{i}]: upload_file_id is required for local_file", param="files")
        if f.type == "image":
            if f.transfer_method == "remote_url":  # the model fetches it (as Dify passes it on), or promptd does
                url = f.url or ""
                if app.svc.settings.inline_remote_images:
                    url = await _inline_image(app, url)
                parts.append({"type": "image_url", "image_url": {"url": url, "detail": config.image.detail}})
            else:
                loaded = await _load(app, f, i, end_user, "image")
                url = _data_url(loaded, "image/png")
                parts.append({"type": "image_url", "image_url": {"url": url, "detail": config.image.detail}})
            continue
        if f.type == "video":
            parts.append(await _video(app, f, i, end_user))
            continue
        loaded = await _load(app, f, i, end_user, "document" if f.type == "custom" else f.type)
        parts.append(await _part(app, f, i, loaded, config, user))
    return parts


async def _video(app: App, f: FileRef, i: int, end_user: str) -> ContentPart:
    if f.transfer_method == "remote_url":
        return {"type": "video_url", "video_url": {"url": f.url}}
    loaded = await _load(app, f, i, end_user, "video")
    return {"type": "video_url", "video_url": {"url": _data_url(loaded, "video/mp4")}}


async def _part(app: App, f: FileRef, i: int, loaded: _Loaded, config: FileUploadConfig, user: str) -> ContentPart:
    if f.type == "custom":
        wanted = {e.lower().lstrip(".") for e in config.allowed_file_extensions}
        if loaded.extension.lower() not in wanted:
            raise InputError(f"files[{i}]: .{loaded.extension} is not an allowed file extension", param="files")
        if not readable(loaded.extension, loaded.mime_type):
            raise InputError(f"files[{i}]: promptd cannot give a .{loaded.extension} file to a model", param="files")
    if f.type in ("document", "custom"):
        text = await asyncio.to_thread(
            extract_text, loaded.data, extension=loaded.extension, mime_type=loaded.mime_type
        )
        return {"type": "text", "text": f"Document {loaded.name}:\n{text}"}
    return {"type": "text", "text": f"Audio {loaded.name} (transcript):\n{await _transcribe(app, loaded, user)}"}
