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
from promptd.store.analytics import Analytics, Stats

__all__ = ["last_user_text", "message", "messages", "overview", "session", "sessions"]


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
    return json_response(
        {
            "start": span.start,
            "end": span.end,
            "bucket": span.bucket,
            "series": [{"t": span.start + i * span.bucket, **stats_json(s)} for i, s in enumerate(series)],
            "totals": stats_json(totals),
            "breakdown": [{"project": p, "model": m, **stats_json(s)} for (p, m), s in sorted(rows.items())],
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
