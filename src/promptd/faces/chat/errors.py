"""Error shapes of the chat face: Adaptive's `{"error": "..."}` under /api/v1, OpenAI's under the /v1 aliases."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.errors import (
    AuthError,
    BudgetExceeded,
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
    StoreUnavailable,
    TooLarge,
    retry_after_header,
)
from promptd.store.db import store_error

__all__ = ["adaptive_error", "chat_status", "http_error", "openai_error", "openai_type"]

log = logging.getLogger("promptd.chat")


def chat_status(exc: BaseException) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, TooLarge):
        return 413
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
    if isinstance(exc, LimitsUnavailable | StoreUnavailable):
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
    exc = store_error(exc)
    status = chat_status(exc)
    _log(request, exc, status)
    return Response(
        msgspec.json.encode({"error": _message(exc)}), status, media_type="application/json", headers=_headers(exc)
    )


def openai_type(exc: BaseException, status: int) -> tuple[str, str]:
    """OpenAI's `type` and `code` for an error: OpenAI's own words where it has some (a bad key, a rate limit, a
    spent quota), else `invalid_request_error` (4xx) or `server_error` (5xx: what OpenAI's API sends with a 500 or
    503; `api_error` is Anthropic's word) and promptd's code."""
    if isinstance(exc, AuthError):
        return "invalid_request_error", "invalid_api_key"
    if isinstance(exc, BudgetExceeded):
        return "insufficient_quota", "insufficient_quota"
    if isinstance(exc, LimitExceeded):
        return ("tokens" if exc.what == "tokens" else "requests"), "rate_limit_exceeded"
    if isinstance(exc, ProviderRateLimited):  # the upstream's limit: OpenAI's own answer would say the same
        return "requests", "rate_limit_exceeded"
    code = exc.code if isinstance(exc, PromptdError) else "internal_error"
    return ("invalid_request_error" if status < 500 else "server_error"), code


def openai_body(exc: BaseException, status: int) -> dict[str, Any]:
    """OpenAI's error object, `{"error": {message, type, param, code}}`: the body of an error answer, and the last
    event of a stream that failed after its first chunk (OpenAI's SDKs read a chunk with `error` as a failure)."""
    kind, code = openai_type(exc, status)
    param = exc.param if isinstance(exc, InputError | ProviderBadRequest) else None
    return {"error": {"message": _message(exc), "type": kind, "param": param, "code": code}}


async def openai_error(request: Request, exc: Exception) -> Response:
    exc = store_error(exc)
    status = chat_status(exc)
    _log(request, exc, status)
    body = openai_body(exc, status)
    return Response(msgspec.json.encode(body), status, media_type="application/json", headers=_headers(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) in Adaptive's shape."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)
