"""How a face is served: its routes under its prefix, its hot endpoints, and its error handlers. Each face exports
one `FaceMount` (faces/*/routes.py); app.py only composes them. Every error of a face's routes leaves in that
face's own shape, hot endpoints included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.types import ExceptionHandler, Receive, Scope, Send

from promptd.access import INFO_KEY, RequestInfo, note_error
from promptd.engine.request import GenerationResult
from promptd.errors import PromptdError
from promptd.store.db import store_error

__all__ = ["Endpoint", "FaceMount", "HotRoute", "default_http_error", "error_code", "noted", "served_headers"]

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def error_code(exc: BaseException) -> str:
    """promptd's code for the error a request is answered with (the same whatever the face's shape)."""
    exc = store_error(exc) if isinstance(exc, Exception) else exc
    if isinstance(exc, PromptdError):
        return exc.code
    if isinstance(exc, HTTPException):
        return _HTTP_CODES.get(exc.status_code, "bad_request")
    if isinstance(exc, ClientDisconnect):
        return "client_disconnected"
    return "internal_error"


def noted(handler: Any) -> Handler:
    """`handler`, noting first which error the request is answered with (promptd/access.py: the access line
    and the count of rejected requests, promptd/rejections.py)."""

    async def handle(request: Request, exc: Exception) -> Response:
        note_error(error_code(exc))
        response: Response = await handler(request, exc)
        return response

    return handle


async def default_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answer to an HTTPException, for routes outside a face's mount."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


class HotRoute:
    """One POST endpoint served without Starlette's routing and middleware layers, with the same outcome:
    every error answered by its face's handlers (an exception that is not promptd's own is then raised on,
    as Starlette's ServerErrorMiddleware does, for the server's log). Server-Timing and X-Request-Id are
    added by `Observed` (promptd/access.py), around every route."""

    __slots__ = ("endpoint", "errors", "http_errors")

    def __init__(self, endpoint: Endpoint, errors: ExceptionHandler, http_errors: ExceptionHandler) -> None:
        self.endpoint = endpoint
        self.errors = errors
        self.http_errors = http_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self.endpoint(request)
            await response(scope, receive, send)
        except Exception as exc:
            info: RequestInfo | None = scope.get(INFO_KEY)
            if info is None or info.status is not None:  # the response has started: nothing else can be sent
                raise
            if isinstance(exc, ClientDisconnect):
                return  # gone before its request was read (or refused by the server's limits): no one to answer
            handler: Any = self.http_errors if isinstance(exc, HTTPException) else self.errors
            response = await handler(request, exc)
            await response(scope, receive, send)
            if not isinstance(store_error(exc), PromptdError | HTTPException):
                raise


@dataclass(frozen=True, slots=True)
class FaceMount:
    """One face: `routes` under `prefix` (mounted as one sub-application, or, `loose`, placed at the top level:
    the OpenAI aliases share /v1 with the Dify face), `hot` endpoints (path under the prefix → endpoint,
    dispatched by exact path before any routing), and the handlers that give its errors its own shape."""

    prefix: str
    routes: list[BaseRoute]
    errors: ExceptionHandler
    http_errors: ExceptionHandler
    hot: Mapping[str, Endpoint] = field(default_factory=dict)
    loose: bool = False

    def hot_routes(self) -> dict[str, HotRoute]:
        return {
            self.prefix + path: HotRoute(endpoint, noted(self.errors), noted(self.http_errors))
            for path, endpoint in self.hot.items()
        }

    def mount(self) -> list[BaseRoute]:
        """What the app's router gets: the face's sub-application, or (loose) its routes as they are."""
        if self.loose:
            return list(self.routes)
        handlers = {HTTPException: noted(self.http_errors), **self.handlers}
        app = Starlette(routes=self.routes, exception_handlers=handlers)
        return [Mount(self.prefix, app=app)]

    @property
    def handlers(self) -> dict[Any, ExceptionHandler]:
        # a database outage (OSError, DBAPIError) is a 503 in the face's shape, without a traceback per request,
        # and a client gone mid-request is no server error: Starlette re-raises whatever reaches its `Exception`
        # handler, so these get handlers of their own
        errors = noted(self.errors)
        return {
            PromptdError: errors,
            OSError: errors,
            DBAPIError: errors,
            ClientDisconnect: noted(_client_gone),
            Exception: errors,
        }


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client went away before its request was read (or the server refused it, serving.py): the answer
    goes nowhere, and it is not a server error."""
    return Response(status_code=400)


def served_headers(result: GenerationResult) -> dict[str, str]:
    """Which model and which attempt answered (1-based, in the record's `attempts`)."""
    answered = next((i for i, a in enumerate(result.attempts, 1) if a.get("status") == "ok"), len(result.attempts))
    return {"X-Promptd-Model": result.model, "X-Promptd-Attempt": str(answered)}
