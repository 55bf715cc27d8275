"""A completion request's `files` and its `file` / `file-list` inputs as content the model can read.

- images: OpenAI `image_url` parts (a vision model is required);
- documents (txt, md, html, csv, pdf, docx; a `custom` file whose extension is one of those): their text,
  extracted by promptd/documents.py, as a text part;
- audio: transcribed by the project's `audio.speech_to_text` model (the speech provider path of
  /audio-to-text), as a text part;
- video: a `video_url` part for a model declared `video: true` (a remote one's URL passed on); any other model
  is a clear 400.

Which files a request's `files` may hold is the app's `file_upload` config: the older `image` block, or Dify's
newer keys (`enabled`, `allowed_file_types`, `allowed_file_extensions`, `allowed_file_upload_methods`,
`number_limits`). A `file` / `file-list` input takes what its own form field allows (the same keys), whatever
`file_upload` says, as Dify's `_prepare_user_inputs` builds them with the variable's own config. Both go one
way (`_parts`) and end as content parts after the prompt's text: the request's `files` first, then the form's
files in form order. Every refusal is a 400 saying why, its `params` the `files` or the input variable;
nothing is dropped silently. Remote URLs must be http(s) (`check_remote_url`), and every one passes the URL
guard (promptd/urlguard.py) before anything is done with it: the files promptd fetches at every hop, and the
URLs passed on for the model's provider to fetch (images without `inline_remote_images`, videos) are vetted.

What needs the network or a model (a remote file's bytes, an inlined image, a vetted URL, a document's text, an
audio transcript) is a pending part (engine/pending.py): a placeholder the engine fills once it has admitted the call
and moderated its input, so a refused request fetches, reads and transcribes nothing. Everything the request
and its uploads say (types, methods, URLs, counts, extensions, whose upload it is) is checked before.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from promptd import urlguard
from promptd.catalog.schema import FileUploadConfig, FormField
from promptd.documents import extract_text, readable
from promptd.domain.forms import FILE_FIELDS, validate_inputs, with_query
from promptd.engine.call import Origin, TranscriptionCall
from promptd.engine.pending import Make, Pending
from promptd.errors import InputError
from promptd.faces.dify.auth import App
from promptd.faces.dify.wire import FileRef
from promptd.types import ContentPart

__all__ = ["Attachments", "check_remote_url", "file_parts", "input_files", "input_parts", "takes_files"]

MB = 1024 * 1024


def check_remote_url(url: str, param: str = "files") -> None:
    """Only http(s) URLs naming a host (the guard's own syntax check, in Dify's words); the URL guard then vets
    it once the call is admitted (`_fetch`, `_vet`)."""
    try:
        urlguard.check_url(url, "url", schemes=("http", "https"))
    except InputError:
        raise InputError("url must be an http(s) URL for remote_url", param=param) from None


@dataclass(frozen=True, slots=True)
class _Rules:
    """What one set of files may hold, and how a refusal names them: the request's `files` (the app's
    `file_upload`) or one file input (its form field)."""

    types: Sequence[str]
    methods: Sequence[str]
    extensions: Sequence[str]
    param: str  # the error's `params`: "files", or the input's variable
    single: bool = False  # a `file` input: its one file is named `doc`, not `doc[0]`

    def where(self, i: int) -> str:
        return self.param if self.single else f"{self.param}[{i}]"


@dataclass(slots=True)
class Attachments:
    """A request's files as content parts after its prompt's text, and those of them the engine makes once it
    has admitted the call (`ChatCall.pending`)."""

    parts: list[ContentPart]
    pending: list[Pending]


@dataclass(slots=True)
class _Loaded:
    data: bytes | None  # None: a remote file, fetched once the call is admitted (`_read`)
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


async def _fetch(app: App, url: str, limit_mb: float, param: str) -> bytes:
    """A remote file's bytes, within the upload limit of its kind and the remote fetch timeout, fetched through
    the SSRF guard (promptd/urlguard.py): loopback, private and link-local targets, and redirects to them, are
    refused unless `fetch_allow_networks` allows them."""
    settings = app.svc.settings
    with _fetch_errors(url, limit_mb, param):
        data, _ = await urlguard.fetch(
            url, time_limit=settings.remote_fetch_timeout, max_bytes=int(limit_mb * MB), allow=settings.fetch_allow
        )
    return data


def _inline_image(app: App, param: str) -> Make:
    """How a remote image part gets its image as a data URL (`inline_remote_images`), fetched as `_fetch`
    fetches, its content type an image's."""
    settings = app.svc.settings
    limit_mb = settings.upload_limit_mb("image")

    async def inline(part: ContentPart, origin: Origin) -> ContentPart:
        url = str(part["image_url"]["url"])
        with _fetch_errors(url, limit_mb, param):
            data_url = await urlguard.inline(
                url,
                kind="image",
                time_limit=settings.remote_fetch_timeout,
                max_bytes=int(limit_mb * MB),
                allow=settings.fetch_allow,
            )
        return {**part, "image_url": {**part["image_url"], "url": data_url}}

    return inline


def _vet(app: App, url: str, param: str) -> Make:
    """How a remote file passed on as its URL (an image without `inline_remote_images`, a video) is vetted by the
    URL guard before the model's provider is given it: the part is kept as it is."""
    settings = app.svc.settings

    async def vet(part: ContentPart, origin: Origin) -> ContentPart:
        with _fetch_errors(url, 0, param, "cannot be used"):
            await urlguard.vet(url, settings.fetch_allow, time_limit=settings.remote_fetch_timeout, passed_on=True)
        return part

    return vet


@contextlib.contextmanager
def _fetch_errors(url: str, limit_mb: float, param: str, failed: str = "could not be fetched") -> Iterator[None]:
    """The guard's refusals, in Dify's words."""
    try:
        yield
    except InputError as exc:
        reason = exc.message.removeprefix("url: ")
        if "larger than" in reason:
            raise InputError(f"The file at {url} is larger than the {limit_mb:g} MB allowed.", param=param) from None
        raise InputError(f"The file at {url} {failed} ({reason}).", param=param) from None


async def _load(app: App, f: FileRef, where: str, param: str, end_user: str, kind: str) -> _Loaded:
    """An upload's bytes (its owner checked), or a remote file's name, its bytes left to `_read`."""
    if f.transfer_method == "remote_url":
        assert f.url is not None
        name = f.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "file"
        extension = name.rsplit(".", 1)[1].lower() if "." in name else ""
        return _Loaded(None, name, extension, mimetypes.guess_type(name)[0] or "")
    row = await app.svc.repo.get_file(f.upload_file_id or "", app.name)
    if row is None or row["created_by"] != end_user:
        raise InputError("Invalid upload file", param=param)
    if kind == "image" and row["kind"] != "image":
        raise InputError(f"{where}: the uploaded file is not an image", param=param)
    try:
        data = await asyncio.to_thread((app.svc.settings.files_dir / row["storage_key"]).read_bytes)
    except OSError:
        raise InputError("Invalid upload file", param=param) from None  # its bytes are gone
    return _Loaded(data, row["name"], row["extension"], row["mime_type"])


async def _read(app: App, f: FileRef, loaded: _Loaded, kind: str, param: str) -> bytes:
    """A file's bytes: an upload's, or a remote file's, fetched now."""
    if loaded.data is not None:
        return loaded.data
    assert f.url is not None
    return await _fetch(app, f.url, app.svc.settings.upload_limit_mb(kind), param)


def _data_url(data: bytes, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode()}"


async def _transcribe(app: App, name: str, data: bytes, mime_type: str, origin: Origin) -> str:
    """The audio's transcript, by the project's speech-to-text model: through the engine, so it is admitted,
    metered and recorded like any model call, as one made for the call (`origin`)."""
    model_key = app.project.audio.speech_to_text
    assert model_key is not None  # checked with the request (`_part`)
    call = TranscriptionCall(filename=name, data=data, mime_type=mime_type or "audio/mpeg")
    answer = await app.svc.engine.transcribe(call, origin, model_key)
    return answer.value


def takes_files(config: FileUploadConfig) -> bool:
    """Whether the app takes any file at all (when it does not, Dify ignores a request's `files`)."""
    return bool(_allowed(config)[0])


async def file_parts(app: App, files: list[FileRef], user: str, into: Attachments) -> None:
    """Resolve a request's `files` to content parts the model can read (`into`), with Dify-style errors for each
    misuse. Whether the model can read images and video is the engine's check (it knows which model the call is
    routed to)."""
    types, methods, most = _allowed(app.project.file_upload)
    if not types:
        raise InputError("File upload is not enabled for this app.", param="files")
    if len(files) > most:
        noun = "image files" if types == ["image"] else "files"
        raise InputError(f"Number of {noun} exceeds the maximum limit of {most}.", param="files")
    rules = _Rules(types, methods, app.project.file_upload.allowed_file_extensions, "files")
    await _parts(app, files, user, rules, into)


def input_files(app: App, inputs: Mapping[str, Any], query: str) -> list[tuple[FormField, list[FileRef]]]:
    """The request's `file` / `file-list` inputs, each with the files it names, checked as Dify checks the
    whole form (every input in form order, Dify's messages: required, not a file, too many), before anything
    is fetched or read. Nothing (and no work) for a form without file fields."""
    form = app.project.inputs
    if not any(f.type in FILE_FIELDS for f in form):
        return []
    checked = validate_inputs(form, with_query(form, inputs, query))
    out: list[tuple[FormField, list[FileRef]]] = []
    for field in form:
        value = checked[field.variable] if field.type in FILE_FIELDS else None
        if value is None or value == "" or value == []:  # no value ({} is a file mapping without its fields)
            continue
        refs = []
        for i, mapping in enumerate([value] if field.type == "file" else value):
            try:
                refs.append(msgspec.convert(mapping, FileRef))
            except msgspec.ValidationError as exc:
                where = field.variable if field.type == "file" else f"{field.variable}[{i}]"
                detail = str(exc).replace("`$.", "`").replace("$.", "")
                raise InputError(f"{where}: {detail}", param=field.variable) from None
        out.append((field, refs))
    return out


async def input_parts(app: App, fields: list[tuple[FormField, list[FileRef]]], user: str, into: Attachments) -> None:
    """The files of `input_files` as content parts (`into`), each field's files under its own upload keys."""
    for field, refs in fields:
        rules = _Rules(
            field.allowed_file_types or [],
            field.allowed_file_upload_methods or [],
            field.allowed_file_extensions or [],
            field.variable,
            single=field.type == "file",
        )
        await _parts(app, refs, user, rules, into)


async def _parts(app: App, files: list[FileRef], user: str, rules: _Rules, into: Attachments) -> None:
    """The one way files become content parts: each file's type and transfer method checked against `rules`,
    then an image (inline, or its URL), a video, a document's text or an audio transcript."""
    end_user = app.end_user(user)
    detail = app.project.file_upload.image.detail
    param = rules.param
    parts = into.parts
    for i, f in enumerate(files):
        where = rules.where(i)
        if f.type not in rules.types:
            allowed = ", ".join(rules.types)
            whose = "this app" if param == "files" else param
            raise InputError(f"{where}: only {allowed} files are accepted by {whose}, not {f.type}", param=param)
        if f.transfer_method not in rules.methods:
            raise InputError(f"{where}: transfer method {f.transfer_method} is not allowed", param=param)
        if f.transfer_method == "remote_url":
            check_remote_url(f.url or "", param)
        elif not f.upload_file_id:
            raise InputError(f"{where}: upload_file_id is required for local_file", param=param)
        if f.type == "image":
            if f.transfer_method == "remote_url":  # the model fetches it (as Dify passes it on), or promptd does
                part: ContentPart = {"type": "image_url", "image_url": {"url": f.url or "", "detail": detail}}
                inlined = app.svc.settings.inline_remote_images
                make = _inline_image(app, param) if inlined else _vet(app, f.url or "", param)
                into.pending.append(Pending(part, make))
            else:
                loaded = await _load(app, f, where, param, end_user, "image")
                assert loaded.data is not None
                url = _data_url(loaded.data, loaded.mime_type or "image/png")
                part = {"type": "image_url", "image_url": {"url": url, "detail": detail}}
            parts.append(part)
            continue
        if f.type == "video":
            parts.append(await _video(app, f, where, param, end_user, into))
            continue
        loaded = await _load(app, f, where, param, end_user, "document" if f.type == "custom" else f.type)
        parts.append(_part(app, f, where, loaded, rules, into))


async def _video(app: App, f: FileRef, where: str, param: str, end_user: str, into: Attachments) -> ContentPart:
    if f.transfer_method == "remote_url":  # passed on, vetted first
        part: ContentPart = {"type": "video_url", "video_url": {"url": f.url}}
        into.pending.append(Pending(part, _vet(app, f.url or "", param)))
        return part
    loaded = await _load(app, f, where, param, end_user, "video")
    assert loaded.data is not None
    return {"type": "video_url", "video_url": {"url": _data_url(loaded.data, loaded.mime_type or "video/mp4")}}


def _part(app: App, f: FileRef, where: str, loaded: _Loaded, rules: _Rules, into: Attachments) -> ContentPart:
    """A document's text or an audio file's transcript, as a placeholder text part the engine fills once it has
    admitted the call (reading a document, and transcribing, are work a refused call must not make; a remote
    file needs the network). What needs neither (an extension, a speech-to-text model) is checked now."""
    param = rules.param
    if f.type == "custom":
        wanted = {e.lower().lstrip(".") for e in rules.extensions}
        if loaded.extension.lower() not in wanted:
            raise InputError(f"{where}: .{loaded.extension} is not an allowed file extension", param=param)
        if not readable(loaded.extension, loaded.mime_type):
            raise InputError(f"{where}: promptd cannot give a .{loaded.extension} file to a model", param=param)
    kind = "audio" if f.type == "audio" else "document"
    if kind == "audio" and app.project.audio.speech_to_text is None:
        raise InputError("Audio files need a speech-to-text model: this app sets no audio.speech_to_text.", param=param)

    async def make(part: ContentPart, origin: Origin) -> ContentPart:
        data = await _read(app, f, loaded, kind, param)
        if kind == "document":
            text = await asyncio.to_thread(extract_text, data, extension=loaded.extension, mime_type=loaded.mime_type)
            return {"type": "text", "text": f"Document {loaded.name}:\n{text}"}
        transcript = await _transcribe(app, loaded.name, data, loaded.mime_type, origin)
        return {"type": "text", "text": f"Audio {loaded.name} (transcript):\n{transcript}"}

    placeholder: ContentPart = {"type": "text", "text": ""}
    into.pending.append(Pending(placeholder, make))
    return placeholder
