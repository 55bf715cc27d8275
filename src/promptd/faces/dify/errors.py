"""Dify's error shape: every error is `{"code", "message", "status"}` with Dify's codes and statuses."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from promptd.errors import (
    AuthError,
    BudgetExceeded,
    ConflictError,
    Forbidden,
    InputError,
    LimitExceeded,
    LimitsUnavailable,
    ModerationUnavailable,
    NotFound,
    PromptdError,
    ProviderError,
    StoreUnavailable,
    TooLarge,
    retry_after_header,
)
from promptd.store.db import store_error

__all__ = ["DifyHTTPError", "dify_error", "error_body", "error_response", "handle_exception", "http_error"]

log = logging.getLogger("promptd.dify")

INTERNAL_MESSAGE = (
    "The server encountered an internal error and was unable to complete your request. Either the server is "
    "overloaded or there is an error in the application."
)


class DifyHTTPError(PromptdError):
    """An error with an explicit Dify status (e.g. 413 file_too_large, 415 unsupported_file_type)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


def dify_error(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) for any exception, the way Dify's service API reports it."""
    if isinstance(exc, DifyHTTPError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, NotFound):
        return 404, exc.code, exc.message
    if isinstance(exc, TooLarge):
        return 413, exc.code, exc.message
    if isinstance(exc, InputError):
        return 400, exc.code, exc.message
    if isinstance(exc, AuthError):
        return 401, "unauthorized", exc.message
    if isinstance(exc, Forbidden):
        return 403, exc.code, exc.message
    if isinstance(exc, ConflictError):
        return 400, exc.code, exc.message
    if isinstance(exc, BudgetExceeded):
        return 429, "rate_limit_error", exc.message  # Dify's code for a used-up quota
    if isinstance(exc, LimitExceeded):
        return 429, "too_many_requests", exc.message
    if isinstance(exc, LimitsUnavailable | StoreUnavailable | ModerationUnavailable):
        return 503, exc.code, exc.message
    if isinstance(exc, ProviderError):  # an upstream's 429 too: Dify's completion endpoint has no 429 for it
        return 400, "completion_request_error", exc.message
    if isinstance(exc, PromptdError):
        return 400, exc.code, exc.message
    return 500, "internal_server_error", INTERNAL_MESSAGE


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status, **extra}


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else None
    return Response(
        msgspec.json.encode(error_body(status, code, message, **extra)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def handle_exception(request: Request, exc: Exception) -> Response:
    exc = store_error(exc)
    status, code, message = dify_error(exc)
    if status >= 500 and not isinstance(exc, PromptdError):
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    extra = {"params": exc.param} if isinstance(exc, InputError) and exc.param else {}
    response = error_response(status, code, message, **extra)
    response.headers.update(retry_after_header(exc))
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) in Dify's shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    message = {404: "The requested URL was not found on the server."}.get(exc.status_code, str(exc.detail))
    response = error_response(exc.status_code, code, message)
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response
