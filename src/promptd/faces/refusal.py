"""The body of a request refused by the server itself, before any face saw it (too large, too slow, too
many connections), in the error shape of the API its path belongs to: the admin API's, the Adaptive face's
under /api, OpenAI's for the /v1 aliases, Dify's for the rest of /v1."""

from __future__ import annotations

import msgspec

from promptd.faces.dify.errors import error_body

__all__ = ["OPENAI_PATHS", "refusal_body"]

OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/models")


def refusal_body(path: str, status: int, code: str, message: str) -> bytes:
    if path.startswith("/admin/"):
        body: object = {"error": {"status": status, "code": code, "message": message, "param": None}}
    elif path.startswith("/api/"):
        body = {"error": message}
    elif path.startswith(OPENAI_PATHS):
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    elif path.startswith("/v1/"):
        body = error_body(status, code, message)
    else:
        body = {"error": message}
    return msgspec.json.encode(body)
