"""Request bodies of the Dify service API, decoded with msgspec (unknown fields are ignored, as Dify does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import msgspec

from promptd.errors import InputError

__all__ = [
    "MAX_USER_LENGTH",
    "CompletionBody",
    "FeedbackBody",
    "FileRef",
    "StopBody",
    "TextToAudioBody",
    "convert_body",
    "decode_body",
    "decode_object",
    "require_user",
]

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


def decode_object(raw: bytes) -> dict[str, Any]:
    """A JSON object body; a broken or empty body, or one that is not an object, gets Dify's 400."""
    try:
        obj = msgspec.json.decode(raw) if raw.strip() else None
    except msgspec.DecodeError:
        obj = None
    except RecursionError:  # nested deeper than the decoder's recursion limit: a client mistake, not a 500
        raise InputError("Invalid JSON payload received: nested too deeply.", code="bad_request") from None
    if not isinstance(obj, dict):
        raise InputError("Invalid JSON payload received or JSON payload is empty.", code="bad_request")
    return obj


def decode_body(raw: bytes, kind: type[T]) -> T:
    """Decode a JSON body; a broken or empty body and a wrongly typed field each get Dify's 400."""
    return convert_body(decode_object(raw), kind)


def convert_body(obj: dict[str, Any], kind: type[T]) -> T:
    """A decoded JSON object as `kind`; a missing or wrongly typed field gets Dify's 400 invalid_param."""
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        raise InputError(str(exc).replace("`$.", "`").replace("$.", "")) from None


#: The longest `user` the store keeps (end_users.external_user_id and messages.user are VARCHAR(255), as in
#: Dify): a longer one would be answered but its record refused by PostgreSQL, so it is refused up front.
MAX_USER_LENGTH = 255


def require_user(user: Any) -> str:
    """Dify's `user` argument: required, a non-empty string that the store can keep. A number is taken as
    its text (`42` is the user "42"), as Dify's `str(user)` does."""
    if user is None or user == "":
        raise InputError("Arg user must be provided.", param="user")
    if isinstance(user, int | float) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str):
        raise InputError("Arg user must be a string.", param="user")
    if len(user) > MAX_USER_LENGTH:
        raise InputError(f"Arg user must be at most {MAX_USER_LENGTH} characters.", param="user")
    if "\x00" in user:  # PostgreSQL text cannot hold NUL: the end user and message records would be refused
        raise InputError("Arg user must not contain NUL characters.", param="user")
    return user


def int_arg(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole-number query argument within [low, high] (its default when absent or empty), or a 400 naming it."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name} must be an integer", param=name) from None
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low} and {high}", param=name)
    return value
