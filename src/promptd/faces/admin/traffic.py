"""What the traffic looked like: the overview's charts, the log search with one message's detail, sessions."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from promptd.errors import NotFound
from promptd.faces.admin.auth import authenticate
from promptd.faces.admin.wire import cursor, json_response, log_filter, page_limit, stats_json, time_range
from promptd.store.analytics import Analytics, LogFilter, Stats

__all__ = ["last_user_text", "message", "messages", "overview", "rejections", "session", "sessions", "users"]


async def overview(request: Request) -> Response:
    """GET /admin/v1/overview: per time bucket and per (project, model) in the range, with the range's totals."""
    admin = await authenticate(request)
    span = time_range(request.query_params)
    f = dataclasses.replace(log_filter(request.query_params), start=span.start, end=span.end)
    await admin.svc.recorder.drain()
    analytics = Analytics(admin.svc.repo.engine)
    series = await analytics.series(f, start=span.start, end=span.end, bucket=span.bucket)
    rows = await analytics.breakdown(f)
    totals = (await analytics.stats(f, [])).get((), Stats())
    # requests refused before any model call have no record (and no model): counted apart, per project
    rejected = await analytics.rejected_series(start=span.start, end=span.end, bucket=span.bucket, project=f.project)
    groups = await analytics.rejected(
        start=span.start, end=span.end, group=("project", "face", "status", "code"), project=f.project
    )
    return json_response(
        {
            "start": span.start,
            "end": span.end,
            "bucket": span.bucket,
            "series": [
                {"t": span.start + i * span.bucket, **stats_json(s), "rejected": rejected[i]}
                for i, s in enumerate(series)
            ],
            "totals": {**stats_json(totals), "rejected": sum(rejected)},
            "breakdown": [{"project": p, "model": m, **stats_json(s)} for (p, m), s in sorted(rows.items())],
            "rejections": [_rejection_json(g) for g in groups],
        }
    )


def _rejection_json(group: dict[str, Any]) -> dict[str, Any]:
    last = group.pop("last_minute")
    out = {**group, "last_at": float(last) if last is not None else None}
    for name in ("project", "key_id", "face"):
        if name in out:
            out[name] = out[name] or None  # "" in the table: none was known
    return out


async def rejections(request: Request) -> Response:
    """GET /admin/v1/rejections: requests refused before any model call in the range (`range`, or `start` and
    `end`; default the last day), per project, key, face, status and code, most first; `project`, `key_id`
    narrow it."""
    admin = await authenticate(request)
    span = time_range(request.query_params)
    project = request.query_params.get("project") or None
    if project is not None:
        admin.project(project)
    await admin.svc.recorder.drain()
    groups = await Analytics(admin.svc.repo.engine).rejected(
        start=span.start,
        end=span.end,
        project=project,
        key_id=request.query_params.get("key_id") or None,
        limit=page_limit(request.query_params, default=200, maximum=1000),
    )
    data = [_rejection_json(g) for g in groups]
    return json_response(
        {"start": span.start, "end": span.end, "total": sum(g["requests"] for g in data), "data": data}
    )


async def users(request: Request) -> Response:
    """GET /admin/v1/users: spend per end user (project and `user`) in the range (`range`, or `start` and `end`;
    default the last day), the dearest first; `project` narrows it, `limit` (default 100) caps it."""
    admin = await authenticate(request)
    span = time_range(request.query_params)
    project = request.query_params.get("project") or None
    if project is not None:
        admin.project(project)
    limit = page_limit(request.query_params, default=100, maximum=1000)
    await admin.svc.recorder.drain()
    f = LogFilter(start=span.start, end=span.end, project=project)
    rows = await Analytics(admin.svc.repo.engine).per_user(f, limit=limit)
    return json_response(
        {
            "start": span.start,
            "end": span.end,
            "data": [{"project": p, "user": u, **stats_json(s)} for p, u, s in rows],
        }
    )


async def messages(request: Request) -> Response:
    """GET /admin/v1/messages: the log, newest first, filtered; `next_cursor` continues it."""
    admin = await authenticate(request)
    f = log_filter(request.query_params)
    limit, after = page_limit(request.query_params), cursor(request.query_params)
    await admin.svc.recorder.drain()
    page = await Analytics(admin.svc.repo.engine).search(f, limit=limit, after=after)
    return json_response({"data": page.rows, "next_cursor": page.next.encode() if page.next else None})


async def message(request: Request) -> Response:
    """GET /admin/v1/messages/{id}: inputs, rendered prompt, answer, every attempt, usage, cost, feedback."""
    admin = await authenticate(request)
    message_id = request.path_params["message_id"]
    await admin.svc.recorder.drain()
    found = await Analytics(admin.svc.repo.engine).message(message_id)
    if found is None:
        raise NotFound(f"message {message_id!r} does not exist")
    return json_response(found)


SESSION_WINDOW = 30 * 86400  # without `start`, sessions active in the last 30 days (a bounded scan)


async def sessions(request: Request) -> Response:
    """GET /admin/v1/sessions: sessions active in the range (or matching the filters), latest first."""
    admin = await authenticate(request)
    f = log_filter(request.query_params)
    if f.start is None:
        f = dataclasses.replace(f, start=(f.end or time.time()) - SESSION_WINDOW)
    limit = page_limit(request.query_params)
    await admin.svc.recorder.drain()
    return json_response({"data": await Analytics(admin.svc.repo.engine).sessions(f, limit=limit)})


async def session(request: Request) -> Response:
    """GET /admin/v1/sessions/{session_id}: the session's turns in order."""
    admin = await authenticate(request)
    session_id = request.path_params["session_id"]
    await admin.svc.recorder.drain()
    turns = await Analytics(admin.svc.repo.engine).session(session_id)
    if not turns:
        raise NotFound(f"session {session_id!r} has no stored turns")
    for turn in turns:
        turn["input"] = turn["query"] if turn["query"] is not None else last_user_text(turn["prompt"])
    return json_response({"session_id": session_id, "project": turns[0]["project"], "turns": turns})


def last_user_text(prompt: Any) -> str | None:
    """The text of the last user message of a stored prompt (the chat API stores no separate query)."""
    if not isinstance(prompt, list):
        return None
    for m in reversed(prompt):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text"))
    return None
