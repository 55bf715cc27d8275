"""CORS, so that browser clients may call the APIs: origins allowed for every API (settings `cors_origins`,
`--cors-origin`, PROMPTD_CORS_ORIGINS) and per project (the catalog's `projects.<name>.cors_origins`).

A preflight (`OPTIONS` with `Access-Control-Request-Method`) carries no key, so it is answered for an origin
that is allowed globally or by any project; an origin allowed nowhere gets a 403 in the API's own error shape.
The actual request's answer carries `Access-Control-Allow-Origin` when the origin is allowed globally, or by
the project of the key that made it (the faces' authentication notes the project: `note_project`): a
project's origin cannot read another project's answers. Keys travel in the Authorization header, never in
cookies, so credentials are not allowed. Without any origin configured this costs two dictionary look-ups
(`applies`, asked by the app before this layer is entered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptd.catalog.schema import Catalog
from promptd.domain.origins import valid_origin

__all__ = ["PROJECT_KEY", "Cors", "note_project", "valid_origin"]

PROJECT_KEY = "promptd.project"  # the authenticated project, in the request's scope state
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
EXPOSE_HEADERS = "Server-Timing, Retry-After, X-Request-Id"
MAX_AGE = "600"

Refusal = Callable[[str, str], Response]  # (path, message) → a 403 in the shape of the API at that path


def note_project(request: Request, project: str) -> None:
    """Called by a face once the key is known: the project whose `cors_origins` apply to this answer."""
    request.scope.setdefault("state", {})[PROJECT_KEY] = project


class _Origins:
    """The origins in force for one catalog: global, and per project."""

    __slots__ = ("any_project", "by_project", "catalog", "everyone")

    def __init__(self, catalog: Catalog | None, everyone: frozenset[str]) -> None:
        self.catalog = catalog
        self.everyone = everyone
        self.by_project: dict[str, frozenset[str]] = {}
        if catalog is not None:
            self.by_project = {n: frozenset(p.cors_origins) for n, p in catalog.projects.items() if p.cors_origins}
        self.any_project = frozenset().union(*self.by_project.values())

    @property
    def active(self) -> bool:
        return bool(self.everyone or self.any_project)

    def allowed(self, origin: str, project: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for this origin (and project; None: any project), or None."""
        for origins in (self.everyone, self.any_project if project is None else self.by_project.get(project, ())):
            if origin in origins:
                return origin
            if "*" in origins:
                return "*"
        return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class Cors:
    """The CORS layer, outermost (promptd's hot routes skip Starlette's middleware stack)."""

    def __init__(self, app: ASGIApp, origins: Iterable[str], refuse: Refusal) -> None:
        bad = [o for o in origins if not valid_origin(o)]
        if bad:
            raise ValueError(f"CORS origins must be * or scheme://host[:port]: {bad}")
        self.app = app
        self.everyone = frozenset(origins)
        self.refuse = refuse
        self._origins = _Origins(None, self.everyone)

    def _current(self, scope: Scope) -> _Origins:
        svc: Any = scope.get("state", {}).get("services")
        catalog = None if svc is None else svc.catalog
        if catalog is not self._origins.catalog:  # first request, or a reload swapped the catalog
            self._origins = _Origins(catalog, self.everyone)
        return self._origins

    def applies(self, scope: Scope) -> bool:
        """Whether this HTTP request has anything to do with CORS: some origin is allowed (globally or by a
        project) and the request names its Origin. The app asks first, so that the rest skip this layer."""
        return self._current(scope).active and _header(scope, b"origin") is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origins = self._current(scope)
        origin = _header(scope, b"origin") if origins.active else None
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method") is not None:
            await self._preflight(scope, origins, origin)(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                project = scope.get("state", {}).get(PROJECT_KEY)
                allowed = origins.allowed(origin, project or "")  # no key (yet): the global origins only
                headers = list(message.get("headers", []))
                headers.append((b"vary", b"Origin"))
                if allowed is not None:
                    headers.append((b"access-control-allow-origin", allowed.encode("latin-1")))
                    headers.append((b"access-control-expose-headers", EXPOSE_HEADERS.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_cors)

    def _preflight(self, scope: Scope, origins: _Origins, origin: str) -> Response:
        allowed = origins.allowed(origin, None)
        if allowed is None:
            return self.refuse(
                scope["path"],
                f"Origin {origin} may not call this API from a browser; allow it with cors_origins "
                "(PROMPTD_CORS_ORIGINS, or the project's cors_origins in the catalog).",
            )
        headers = {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Max-Age": MAX_AGE,
            "Vary": "Origin",
        }
        requested = _header(scope, b"access-control-request-headers")
        if requested:
            headers["Access-Control-Allow-Headers"] = requested
        return Response(status_code=204, headers=headers)
