"""The management API's one error shape: {"error": {"status", "code", "message", "param"}}, with that status.

400 invalid_param / bad_request    a filter, a body field or a query parameter is wrong (`param` names it)
401 unauthorized                   no admin key, or a wrong, revoked, expired or non-admin key
404 not_found                      no such project, message, session, campaign, key or route
405 method_not_allowed
409 conflict                       the request conflicts with the catalog (e.g. a campaign without a metric)
503 service_unavailable            the database cannot be reached (try again)
500 internal_error                 a bug: logged with its traceback, never the client's fault
"""

from __future__ import annotations

import logging

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from promptd.errors import (
    AuthError,
    ConflictError,
    Forbidden,
    InputError,
    NotFound,
    PromptdError,
    StoreUnavailable,
    TooLarge,
)
from promptd.store.db import store_error

__all__ = ["admin_error", "admin_http_error", "error_response"]

log = logging.getLogger("promptd.admin")


def error_response(status: int, code: str, message: str, param: str | None = None) -> Response:
    body = {"error": {"status": status, "code": code, "message": message, "param": param}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(msgspec.json.encode(body), status, media_type="application/json", headers=headers)


def _status(exc: BaseException) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, StoreUnavailable):
        return 503
    return 500


async def admin_error(request: Request, exc: Exception) -> Response:
    exc = store_error(exc)
    status = _status(exc)
    if status == 500:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error")
    assert isinstance(exc, PromptdError)
    return error_response(status, exc.code, exc.message, exc.param if isinstance(exc, InputError) else None)


async def admin_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    message = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    response = error_response(exc.status_code, code, message)
    response.headers.update(exc.headers or {})
    return response
