"""Error shapes of the chat face: Adaptive's `{"error": "..."}` under /api/v1, OpenAI's under the /v1 aliases."""

from __future__ import annotations

import logging

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.errors import (
    AuthError,
    ConflictError,
    Forbidden,
    InputError,
    LimitExceeded,
    LimitsUnavailable,
    NotFound,
    PromptdError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    retry_after_header,
)

__all__ = ["adaptive_error", "chat_status", "http_error", "openai_error"]

log = logging.getLogger("promptd.chat")


def chat_status(exc: BaseException) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InputError | ConflictError):
        return 400
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, ProviderTimeout) and exc.code == "first_token_timeout":
        return 408
    if isinstance(exc, ProviderRateLimited | LimitExceeded):
        return 429
    if isinstance(exc, ProviderBadRequest):
        return 400
    if isinstance(exc, LimitsUnavailable):
        return 503
    if isinstance(exc, ProviderTimeout):
        return 504
    if isinstance(exc, ProviderError):
        return 502
    return 500


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, PromptdError) else "internal server error"


def _headers(exc: BaseException) -> dict[str, str] | None:
    if isinstance(exc, AuthError):
        return {"WWW-Authenticate": "Bearer"}
    return retry_after_header(exc) or None


def _log(request: Request, exc: BaseException, status: int) -> None:
    if status >= 500 and not isinstance(exc, PromptdError):
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)


async def adaptive_error(request: Request, exc: Exception) -> Response:
    status = chat_status(exc)
    _log(request, exc, status)
    return Response(
        msgspec.json.encode({"error": _message(exc)}), status, media_type="application/json", headers=_headers(exc)
    )


async def openai_error(request: Request, exc: Exception) -> Response:
    status = chat_status(exc)
    _log(request, exc, status)
    kind = "invalid_request_error" if status < 500 else "api_error"
    code = exc.code if isinstance(exc, PromptdError) else "internal_error"
    param = exc.param if isinstance(exc, InputError) else None
    body = {"error": {"message": _message(exc), "type": kind, "param": param, "code": code}}
    return Response(msgspec.json.encode(body), status, media_type="application/json", headers=_headers(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) in Adaptive's shape."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)
