"""POST /api/v1/interactions (import a logged interaction) and GET /api/v1/sessions/{id} (a session's turns)."""

from __future__ import annotations

import datetime as dt
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.errors import InputError
from promptd.faces.chat.auth import authenticate
from promptd.faces.chat.feedback import metric_value
from promptd.faces.chat.wire import InteractionBody, decode, optional_uuid, to_messages
from promptd.store.records import CallRecord
from promptd.uuids import new_uuid

__all__ = ["import_interaction", "session"]


def _timestamp(value: str | None) -> float:
    if value is None:
        return time.time()
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InputError(f"created_at must be an ISO 8601 time like 2024-02-21T09:51:03Z, got {value!r}") from None


async def import_interaction(request: Request) -> Response:
    caller = await authenticate(request)
    body = decode(await request.body(), InteractionBody)
    project = caller.project(body.project)
    model, _ = caller.svc.engine.model(project, body.model_service)
    campaign = caller.svc.engine.campaign(project, body.ab_campaign)[0] if body.ab_campaign else None
    user = optional_uuid(body.user, "user")
    session_id = optional_uuid(body.session_id, "session_id") or new_uuid()
    values = [
        {
            "metric": f.metric,
            "value": metric_value(caller, project, f.metric, f.value),
            "reason": f.reason,
            "details": f.details,
            "user_id": user,
        }
        for f in body.feedbacks or []
    ]
    config = caller.svc.catalog.models[model]
    completion_id = new_uuid()
    record = CallRecord(
        id=completion_id,
        project=project,
        face="import",
        model=model,
        provider=config.provider,
        upstream_model=config.model,
        prompt=[m.to_openai() for m in to_messages(body.messages)],
        answer=body.completion,
        status="normal",
        user=user,
        key_id=caller.key.id,
        session_id=session_id,
        labels=body.labels,
        campaign=campaign,
        created_at=_timestamp(body.created_at),
    )
    feedback_ids = await caller.svc.repo.import_interaction(record.values(), values)
    return JSONResponse(
        {"completion_id": completion_id, "session_id": session_id, "feedback_ids": feedback_ids}, status_code=201
    )


async def session(request: Request) -> Response:
    caller = await authenticate(request)
    project = caller.project(request.query_params.get("project"))
    session_id = optional_uuid(request.path_params["session_id"], "session_id")
    assert session_id is not None
    await caller.svc.recorder.drain()
    rows = await caller.svc.repo.session_turns(project, session_id)
    turns = [
        {
            "completion_id": r["id"],
            "created_at": r["created_at"],
            "model": r["model"],
            "index": r["choice_index"],
            "messages": r["prompt"],
            "completion": r["answer"],
            "status": r["status"],
            "finish_reason": r["finish_reason"],
            "labels": r["labels"] or {},
            "tags": r["tags"] or [],
            "ab_campaign": r["campaign"],
            "user": r["user"],
            "usage": {
                "prompt_tokens": r["prompt_tokens"],
                "completion_tokens": r["completion_tokens"],
                "total_tokens": r["total_tokens"],
                "total_price": r["total_price"],
                "currency": r["currency"],
            },
        }
        for r in rows
    ]
    return JSONResponse({"session_id": session_id, "project": project, "turns": turns})
