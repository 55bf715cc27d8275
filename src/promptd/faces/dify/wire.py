"""Request bodies of the Dify service API, decoded with msgspec (unknown fields are ignored, as Dify does)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

from promptd.errors import InputError

__all__ = ["CompletionBody", "FeedbackBody", "FileRef", "StopBody", "TextToAudioBody", "decode_body", "require_user"]

T = TypeVar("T")


class FileRef(msgspec.Struct):
    type: Literal["image", "document", "audio", "video", "custom"]
    transfer_method: Literal["remote_url", "local_file"]
    url: str | None = None
    upload_file_id: str | None = None


class CompletionBody(msgspec.Struct):
    inputs: dict[str, Any]
    user: Any = None
    query: str = ""
    files: list[FileRef] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None


class StopBody(msgspec.Struct):
    user: Any = None


class FeedbackBody(msgspec.Struct):
    user: Any = None
    rating: Literal["like", "dislike"] | None = None
    content: str | None = None


class TextToAudioBody(msgspec.Struct):
    user: Any = None
    message_id: str | None = None
    text: str | None = None
    voice: str | None = None
    streaming: bool | None = None


def decode_body(raw: bytes, kind: type[T]) -> T:
    """Decode a JSON body; a broken or empty body and a wrongly typed field each get Dify's 400."""
    try:
        obj = msgspec.json.decode(raw) if raw.strip() else None
    except msgspec.DecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise InputError("Invalid JSON payload received or JSON payload is empty.", code="bad_request")
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        raise InputError(str(exc).replace("`$.", "`").replace("$.", "")) from None


def require_user(user: Any) -> str:
    """Dify's `user` argument: required, a non-empty string."""
    if user is None or user == "":
        raise InputError("Arg user must be provided.", param="user")
    if not isinstance(user, str):
        raise InputError("Arg user must be a string.", param="user")
    return user
