"""One uploaded file in a multipart/form-data request, read whole with the form's text fields, for every face
that takes one (Dify's /files/upload and /audio-to-text, OpenAI's /v1/audio/transcriptions). Each face says
which of its errors answers a missing file, a file too many, and a body too large.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

__all__ = ["MB", "Upload", "mime_type", "single_file"]

MB = 1024 * 1024


def mime_type(raw: str | None) -> str:
    """A part's MIME type the way Dify reads it (werkzeug's `mimetype`): lower case, without parameters, so
    a browser's `audio/webm;codecs=opus` is `audio/webm`."""
    return (raw or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str | None
    content_type: str | None
    data: bytes
    fields: list[tuple[str, str]]  # the form's text fields, in order (a name may repeat)

    def field(self, name: str) -> str | None:
        """The first value of the text field `name`, unless empty."""
        return next((v for k, v in self.fields if k == name), None) or None


async def single_file(
    request: Request, *, none: Exception, many: Exception, too_large: Exception, max_bytes: int
) -> Upload:
    """The `file` part of a multipart request (the first, when several parts are named `file`, as Dify takes;
    a file under another name too is `many`), read and the form closed, and the form's text fields. A body
    far over `max_bytes` (more than the 1 MB allowed for the form around the file) is refused unread."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + MB:
        raise too_large
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise none
    try:
        async with request.form(max_files=10, max_fields=100) as form:
            items = form.multi_items()
            parts = [(k, v) for k, v in items if isinstance(v, UploadFile)]
            uploads = [v for k, v in parts if k == "file"]
            if not uploads:
                raise none
            if len({k for k, _ in parts}) > 1:  # Dify counts file fields, not parts: of two `file`s, the first
                raise many
            part = uploads[0]
            fields = [(k, v) for k, v in items if isinstance(v, str)]
            return Upload(part.filename, part.content_type, await part.read(), fields)
    except HTTPException as exc:  # Starlette's multipart parser refusing the body
        if "Too many files" in str(exc.detail):
            raise many from None
        raise
