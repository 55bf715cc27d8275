"""The management API's routes, mounted at /admin/v1 (docs/management-api.md)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from promptd.faces.admin import campaigns, catalog, errors, keys, reload, traffic, usage
from promptd.faces.mount import FaceMount

__all__ = ["mount", "routes"]


def routes() -> list[BaseRoute]:
    return [
        Route("/me", catalog.me, methods=["GET"]),
        Route("/catalog", reload.catalog, methods=["GET"]),
        Route("/reload", reload.reload, methods=["POST"]),
        Route("/projects", catalog.projects, methods=["GET"]),
        Route("/projects/{project}", catalog.project, methods=["GET"]),
        Route("/projects/{project}/campaigns/{key}", campaigns.campaign, methods=["GET"]),
        Route("/campaigns", campaigns.campaigns, methods=["GET"]),
        Route("/overview", traffic.overview, methods=["GET"]),
        Route("/rejections", traffic.rejections, methods=["GET"]),
        Route("/users", traffic.users, methods=["GET"]),
        Route("/messages", traffic.messages, methods=["GET"]),
        Route("/messages/{message_id}", traffic.message, methods=["GET"]),
        Route("/sessions", traffic.sessions, methods=["GET"]),
        Route("/sessions/{session_id}", traffic.session, methods=["GET"]),
        Route("/usage", usage.usage, methods=["GET"]),
        Route("/keys", keys.list_keys, methods=["GET"]),
        Route("/keys", keys.create_key, methods=["POST"]),
        Route("/keys/{key_id}", keys.revoke_key, methods=["DELETE"]),
    ]


def mount() -> FaceMount:
    """The management API under /admin/v1, in its own error shape."""
    return FaceMount("/admin/v1", routes(), errors.admin_error, errors.admin_http_error)
