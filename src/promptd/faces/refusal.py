"""Which API a path belongs to, and so the error shape it is refused in: the admin API's under /admin, the
Adaptive face's under /api, OpenAI's for OpenAI's own paths under /v1 (served or not), Dify's for the rest of
/v1. One decision, for every refusal made outside a face's handlers: by the server itself before any face saw
the request (too large, too slow, too many connections: serving.py), a CORS preflight (app.py), a URL nobody
serves (`UnknownURL`), and the count of rejections per face (rejections.py).

/v1 is shared by Dify's service API and the OpenAI aliases. OpenAI's paths are told apart by their first
segment (`/v1/images/...`, `/v1/moderations`: none is Dify's), and `/v1/files` by what follows it: Dify has
`/v1/files/upload` and `/v1/files/{id}/preview`, OpenAI `/v1/files`, `/v1/files/{id}` and its `/content`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from starlette.datastructures import URLPath
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from promptd.access import note_error
from promptd.faces.dify.errors import error_body

__all__ = ["OPENAI_SEGMENTS", "Api", "UnknownURL", "api_of", "refusal_body"]

Api = Literal["admin", "adaptive", "openai", "dify", "other"]

#: the first segments of OpenAI's API paths under /v1 (`/v1/files` is decided apart: Dify has some of it)
OPENAI_SEGMENTS = frozenset(
    {
        "chat", "completions", "embeddings", "models", "responses", "assistants", "threads", "batches",
        "moderations", "images", "audio", "fine_tuning", "fine-tunes", "vector_stores", "uploads", "realtime",
        "evals", "containers", "organization", "engines", "edits",
    }
)  # fmt: skip


def api_of(path: str) -> Api:
    """The API `path` (without the app's root path) belongs to."""
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/api/"):
        return "adaptive"
    if not path.startswith("/v1/"):
        return "other"
    segment, _, rest = path[len("/v1/") :].partition("/")
    if segment in OPENAI_SEGMENTS:
        return "openai"
    if segment == "files" and rest != "upload" and not rest.endswith("/preview"):
        return "openai"
    return "dify"


def refusal_body(path: str, status: int, code: str | None, message: str) -> bytes:
    """The error body for `path`'s API. `code` None is OpenAI's null (a URL it does not know); the other shapes
    say `not_found` then."""
    api = api_of(path)
    body: object
    if api == "admin":
        body = {"error": {"status": status, "code": code or "not_found", "message": message, "param": None}}
    elif api == "openai":
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    elif api == "dify":
        body = error_body(status, code or "not_found", message)
    else:
        body = {"error": message}
    return msgspec.json.encode(body)


class UnknownURL(BaseRoute):
    """Every OpenAI path under /v1 that no alias serves (`POST /v1/moderations`, `GET /v1/files`, a wrong method on
    an alias: `GET /v1/completions`): 404 `Invalid URL (POST /v1/moderations)` in OpenAI's shape, with a null
    `code`, as OpenAI answers a URL it does not know. Placed after the aliases' routes and before the Dify face's
    /v1 mount."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and api_of(_path(scope)) == "openai":
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        note_error("not_found")
        path = _path(scope)
        body = refusal_body(path, 404, None, f"Invalid URL ({scope['method']} {path})")
        await Response(body, 404, media_type="application/json")(scope, receive, send)


def _path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path
