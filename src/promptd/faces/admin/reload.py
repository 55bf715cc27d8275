"""The catalog in force: `GET /admin/v1/catalog` (its version and source) and `POST /admin/v1/reload` (read it
again, validate it, swap it in: promptd/reload.py)."""

from __future__ import annotations

import contextlib
import os
import signal

from starlette.requests import Request
from starlette.responses import Response

from promptd.errors import CatalogError
from promptd.faces.admin.auth import authenticate
from promptd.faces.admin.errors import error_response
from promptd.faces.admin.wire import json_response
from promptd.reload import read_pid, reload_catalog

__all__ = ["catalog", "reload"]


async def catalog(request: Request) -> Response:
    """GET /admin/v1/catalog: the version of the catalog serving, where it is read from, and its size."""
    svc = (await authenticate(request)).svc
    return json_response(
        {
            "version": svc.catalog_version,
            "source": str(svc.settings.catalog_path) if svc.settings.catalog_path else "<built-in catalog>",
            "providers": len(svc.catalog.providers),
            "models": len(svc.catalog.models),
            "projects": len(svc.catalog.projects),
        }
    )


async def reload(request: Request) -> Response:
    """POST /admin/v1/reload: 200 with the new version, or 422 catalog_invalid with the checker's messages (the
    current catalog keeps serving). With several workers, this one reloads and signals the others through the
    serving parent process (SIGHUP)."""
    svc = (await authenticate(request)).svc
    try:
        outcome = await reload_catalog(svc)
    except CatalogError as exc:
        return error_response(422, "catalog_invalid", exc.message)
    workers = "this process"
    if svc.settings.workers > 1:
        parent = read_pid(svc.settings.data_dir)
        if parent is not None and parent != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(parent, signal.SIGHUP)
                workers = "every worker"
    return json_response(
        {
            "version": outcome.version,
            "previous": outcome.previous,
            "changed": outcome.changed,
            "projects": outcome.projects,
            "reloaded": workers,
        }
    )
