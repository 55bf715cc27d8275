"""API keys of the projects: list, create (the key is shown in this one response), revoke."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from promptd.domain.limits import PICO, Limits, calendar_window, parse_amount, to_pico
from promptd.domain.pricing import plain
from promptd.errors import InputError, NotFound
from promptd.faces.admin.auth import authenticate
from promptd.faces.admin.wire import KeyCreate, decode_body, json_response
from promptd.store.repository import KeyInfo

__all__ = ["create_key", "key_json", "list_keys", "revoke_key"]


def key_json(k: KeyInfo, now: float) -> dict[str, Any]:
    return {
        "id": k.id,
        "project": k.project,
        "name": k.name,
        "prefix": k.prefix,
        "role": k.role,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
        "state": k.state(now),
        "limits": k.limits.to_json() or {},
    }


def _cost(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_amount(value)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}", param=name) from None


def _amount(pico: int) -> str:
    return plain((Decimal(pico) / PICO).normalize()) if pico else "0"


def _spending(k: KeyInfo, rows: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """What key `k` spent today and this month (UTC, the windows its budgets count in), and for each budget it
    has, the limit, what was spent (all currencies together, as admission counts) and what remains."""
    windows = {w: calendar_window(w, now) for w in ("day", "month")}
    spend: dict[str, Any] = {}
    for w in windows:
        costs = {r["currency"]: _amount(r[f"{w}_cost_pico"]) for r in rows if r[f"{w}_cost_pico"]}
        spend[w] = {
            "requests": sum(r[f"{w}_requests"] for r in rows),
            "tokens": sum(r[f"{w}_tokens"] for r in rows),
            "cost": costs,
        }
    budget: dict[str, Any] = {}
    for name, w, limit in (
        ("cost_per_day", "day", k.limits.cost_per_day),
        ("cost_per_month", "month", k.limits.cost_per_month),
    ):
        if limit is None:
            continue
        spent = sum(r[f"{w}_cost_pico"] for r in rows)
        window_id, remaining = windows[w]
        budget[name] = {
            "window": window_id,
            "limit": format(limit, "f"),
            "spent": _amount(spent),
            "remaining": _amount(max(0, to_pico(limit) - spent)),
            "resets_at": round(now + remaining),
        }
    return {"spend": spend, "budget": budget}


async def list_keys(request: Request) -> Response:
    """GET /admin/v1/keys[?project=]: every key (admin keys have project "*"), oldest first, each with what it
    spent today and this month and what remains of its budgets (from the daily usage rollups)."""
    admin = await authenticate(request)
    project = request.query_params.get("project") or None
    keys = await admin.svc.repo.list_keys(project)
    now = time.time()
    await admin.svc.recorder.drain()
    rows = await admin.svc.repo.key_spend(
        day=calendar_window("day", now)[0],
        month=calendar_window("month", now)[0],
        key_ids=[k.id for k in keys] if project is not None else None,
    )
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(r["key_id"], []).append(r)
    return json_response({"data": [key_json(k, now) | _spending(k, by_key.get(k.id, []), now) for k in keys]})


async def create_key(request: Request) -> Response:
    """POST /admin/v1/keys: a new app key for a project; 201 with `key`, which is never shown again."""
    admin = await authenticate(request)
    body = decode_body(await request.body(), KeyCreate)
    project = admin.project(body.project)
    if body.expires_in is not None and not body.expires_in > 0:
        raise InputError("expires_in must be a positive number of seconds", param="expires_in")
    for name, value in (("rpm", body.rpm), ("tpm", body.tpm)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be at least 1", param=name)
    if len(body.name) > 128:
        raise InputError("name is longer than 128 characters", param="name")
    limits = Limits(
        body.rpm, body.tpm, _cost(body.cost_per_day, "cost_per_day"), _cost(body.cost_per_month, "cost_per_month")
    )
    expires_at = time.time() + body.expires_in if body.expires_in is not None else None
    key, info = await admin.svc.repo.create_key(project, name=body.name, expires_at=expires_at, limits=limits)
    return json_response({"key": key, **key_json(info, time.time())}, status=201)


async def revoke_key(request: Request) -> Response:
    """DELETE /admin/v1/keys/{key_id}: revoke by id (exactly); revoking twice keeps the first time."""
    admin = await authenticate(request)
    key_id = request.path_params["key_id"]
    info = await admin.svc.repo.revoke_key(key_id, by_id_only=True)
    if info is None:
        raise NotFound(f"key {key_id!r} does not exist")
    admin.svc.keys.forget()  # this process stops accepting it now, not after the cache's TTL
    return json_response(key_json(info, time.time()))
