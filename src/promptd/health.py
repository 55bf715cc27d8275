"""Liveness and readiness: `GET /livez` (the process answers), `GET /readyz` (it can serve: the database answers,
Redis answers when configured, the embedded model is loaded or loadable when the catalog uses it) and the older
`GET /health`. No key is needed; readiness answers 503 naming each check that failed (docs/observability.md)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd import __version__
from promptd.services import Services, services

__all__ = ["CHECK_TIMEOUT", "health", "livez", "readiness", "readyz"]

CHECK_TIMEOUT = 2.0  # seconds each dependency has to answer


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__, "pid": os.getpid()})


async def livez(request: Request) -> Response:
    """The process is up and its event loop turns (nothing else is checked: a restart would not fix a
    dependency)."""
    return JSONResponse({"status": "ok", "pid": os.getpid()})


def _failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:g} s"
    return " ".join(str(exc).split())[:300] or type(exc).__name__


async def _database(svc: Services) -> None:
    async with svc.repo.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check(name: str, work: Any) -> tuple[str, dict[str, Any]]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await work
    except Exception as exc:
        return name, {"ok": False, "error": _failure(exc)}
    return name, {"ok": True}


def _models(svc: Services) -> dict[str, dict[str, Any]]:
    """The embedded-model providers the catalog's models use, each loaded or loadable."""
    used = {d.provider for model in svc.catalog.models.values() for d in model.all_deployments}
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(used):
        readiness = getattr(svc.providers.get(name), "readiness", None)
        if readiness is not None:
            ok, detail = readiness()
            out[f"model:{name}"] = {"ok": ok, "state" if ok else "error": detail}
    return out


async def readiness(svc: Services) -> dict[str, dict[str, Any]]:
    """Every check by name: {"ok": bool, "error": why} (the checks run at once, each within CHECK_TIMEOUT)."""
    work = [_check("database", _database(svc))]
    if svc.settings.redis_url:
        work.append(_check("redis", svc.engine.coordinator.ping()))
    checks = dict(await asyncio.gather(*work))
    checks.update(_models(svc))
    return checks


async def readyz(request: Request) -> Response:
    svc = services(request)
    checks = await readiness(svc)
    failed = sorted(name for name, check in checks.items() if not check["ok"])
    body = {"status": "fail" if failed else "ok", "failed": failed, "checks": checks, "catalog": svc.catalog_version}
    return JSONResponse(body, status_code=503 if failed else 200)
