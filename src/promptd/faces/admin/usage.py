"""GET /admin/v1/usage: daily usage per project, key and model from the rollups the recorder keeps, with exact
costs. Fast at any volume of records (a few rows per day), and kept after retention deletes the records."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from promptd.domain.limits import PICO
from promptd.domain.pricing import plain
from promptd.errors import InputError
from promptd.faces.admin.auth import authenticate
from promptd.faces.admin.wire import json_response

__all__ = ["usage"]

MAX_DAYS = 366
SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens")


def _day(request: Request, name: str, default: dt.date) -> dt.date:
    raw = request.query_params.get(name)
    if not raw:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise InputError(f"{name} must be a UTC day, YYYY-MM-DD", param=name) from None


async def usage(request: Request) -> Response:
    """Rows (day, project, key_id, model, currency, requests, errors, tokens, cost) from `since` to `until`
    (UTC days, inclusive; default the last 30 days), optionally for one project or key, and their totals."""
    admin = await authenticate(request)
    today = dt.datetime.fromtimestamp(time.time(), dt.UTC).date()
    until = _day(request, "until", today)
    since = _day(request, "since", until - dt.timedelta(days=29))
    if since > until:
        raise InputError("since must not be after until", param="since")
    if (until - since).days >= MAX_DAYS:
        raise InputError(f"at most {MAX_DAYS} days at a time", param="since")
    project = request.query_params.get("project") or None
    if project is not None:
        admin.scope(project)  # a project, or a knowledge base's scope
    await admin.svc.recorder.drain()
    rows = await admin.svc.repo.usage(
        since=since.isoformat(),
        until=until.isoformat(),
        project=project,
        key_id=request.query_params.get("key_id") or None,
    )
    data: list[dict[str, Any]] = []
    totals: dict[str, Any] = dict.fromkeys(SUMS, 0)
    costs: dict[str, Decimal] = {}
    for row in rows:
        cost = Decimal(row["cost_pico"]) / PICO
        costs[row["currency"]] = costs.get(row["currency"], Decimal(0)) + cost
        for name in SUMS:
            totals[name] += row[name]
        data.append(
            {
                **{k: row[k] for k in ("day", "project", "model", "currency", *SUMS)},
                "key_id": row["key_id"] or None,
                "cost": plain(cost.normalize() if cost else Decimal(0)),
            }
        )
    totals["cost"] = {currency: plain(c.normalize() if c else Decimal(0)) for currency, c in costs.items()}
    return json_response({"since": since.isoformat(), "until": until.isoformat(), "data": data, "totals": totals})
