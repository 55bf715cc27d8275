"""The catalog as loaded, read-only: projects with their prompts, inputs, models (with prices), tools, metrics
and campaigns. Provider secrets (keys, headers) are never shown."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from promptd import __version__
from promptd.catalog.schema import Catalog
from promptd.engine.engine import campaign_id
from promptd.faces.admin.auth import authenticate
from promptd.faces.admin.wire import json_response

__all__ = ["me", "project", "projects"]


def _model(catalog: Catalog, name: str) -> dict[str, Any]:
    cfg = catalog.models[name]
    return {
        "name": name,
        "type": cfg.type,
        "deployments": [
            {"provider": d.provider, "kind": catalog.providers[d.provider].kind, "model": d.model, "weight": d.weight}
            for d in cfg.all_deployments
            if d.provider in catalog.providers
        ],
        "price": cfg.price.model_dump(mode="json"),
        "fallbacks": cfg.fallbacks,
        "max_ttft_ms": cfg.max_ttft_ms,
    }


def _summary(catalog: Catalog, name: str) -> dict[str, Any]:
    cfg = catalog.projects[name]
    return {
        "project": name,
        "name": cfg.name or name,
        "mode": cfg.mode,
        "description": cfg.description,
        "models": cfg.models,
        "default_model": cfg.default,
        "campaigns": list(cfg.campaigns),
    }


async def me(request: Request) -> Response:
    """GET /admin/v1/me: who is logged in (the console's login check)."""
    admin = await authenticate(request)
    key = admin.key
    return json_response({"key_id": key.id, "prefix": key.prefix, "name": key.name, "version": __version__})


async def projects(request: Request) -> Response:
    admin = await authenticate(request)
    catalog = admin.svc.catalog
    return json_response({"data": [_summary(catalog, name) for name in catalog.projects]})


async def project(request: Request) -> Response:
    admin = await authenticate(request)
    name = admin.project(request.path_params["project"])
    catalog = admin.svc.catalog
    cfg = catalog.projects[name]
    body = cfg.model_dump(mode="json", exclude={"campaigns", "models"})
    return json_response(
        {
            **_summary(catalog, name),
            "config": body,
            "models": [_model(catalog, m) for m in cfg.models],
            "campaigns": [
                {"key": key, "id": campaign_id(name, key, c), **c.model_dump(mode="json", exclude={"id"})}
                for key, c in cfg.campaigns.items()
            ],
        }
    )
