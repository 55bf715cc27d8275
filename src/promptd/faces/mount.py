"""How a face is served: its routes under its prefix, its hot endpoints, and its error handlers. Each face exports
one `FaceMount` (faces/*/routes.py); app.py only composes them. Every error of a face's routes leaves in that
face's own shape, hot endpoints included.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.types import ExceptionHandler, Message, Receive, Scope, Send

from promptd.errors import PromptdError
from promptd.timing import header_value

__all__ = ["Endpoint", "FaceMount", "HotRoute", "default_http_error"]

Endpoint = Callable[[Request], Awaitable[Response]]


async def default_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answer to an HTTPException, for routes outside a face's mount."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


class HotRoute:
    """One POST endpoint served without Starlette's routing and middleware layers, with the same outcome:
    the Server-Timing header, and every error answered by its face's handlers (an exception that is not
    promptd's own is then raised on, as Starlette's ServerErrorMiddleware does, for the server's log)."""

    __slots__ = ("endpoint", "errors", "http_errors")

    def __init__(self, endpoint: Endpoint, errors: ExceptionHandler, http_errors: ExceptionHandler) -> None:
        self.endpoint = endpoint
        self.errors = errors
        self.http_errors = http_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        started = False

        async def timed(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"server-timing", header_value(scope, start))]
            await send(message)

        request = Request(scope, receive, timed)
        try:
            response = await self.endpoint(request)
            await response(scope, receive, timed)
        except Exception as exc:
            if started:
                raise
            handler: Any = self.http_errors if isinstance(exc, HTTPException) else self.errors
            response = await handler(request, exc)
            await response(scope, receive, timed)
            if not isinstance(exc, PromptdError | HTTPException):
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
            self.prefix + path: HotRoute(endpoint, self.errors, self.http_errors) for path, endpoint in self.hot.items()
        }

    def mount(self) -> list[BaseRoute]:
        """What the app's router gets: the face's sub-application, or (loose) its routes as they are."""
        if self.loose:
            return list(self.routes)
        app = Starlette(
            routes=self.routes,
            exception_handlers={PromptdError: self.errors, HTTPException: self.http_errors, Exception: self.errors},
        )
        return [Mount(self.prefix, app=app)]

    @property
    def handlers(self) -> dict[Any, ExceptionHandler]:
        return {PromptdError: self.errors, Exception: self.errors}
