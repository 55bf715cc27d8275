"""POST /api/v1/feedback (a metric on a completion), /comparison (a preference), /outcome (a session metric)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.catalog.schema import MetricConfig
from promptd.errors import InputError, NotFound
from promptd.faces.chat.auth import Caller, authenticate
from promptd.faces.chat.wire import (
    MAX_USER_ID_LENGTH,
    ComparisonBody,
    FeedbackBody,
    OutcomeBody,
    decode,
    free_user,
    optional_uuid,
)

__all__ = ["add_comparison", "add_feedback", "add_outcome", "find_completion", "metric_value"]


def metric_value(caller: Caller, project: str, metric: str, value: Any) -> float:
    """The metric's value as a number: bool metrics take 0, 1, true or false; scalar ones any number."""
    config: MetricConfig | None = caller.svc.catalog.projects[project].metrics.get(metric)
    if config is None:
        raise NotFound(f"metric {metric!r} does not exist in project {project!r}")
    if config.kind == "bool":
        if value in (True, 1, "true", "1"):
            return 1.0
        if value in (False, 0, "false", "0"):
            return 0.0
        raise InputError(f"metric {metric!r} is a bool metric: value must be 0, 1, true or false", param="value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"metric {metric!r} is a scalar metric: value must be a number", param="value")
    return float(value)


async def find_completion(caller: Caller, project: str, completion_id: str) -> dict[str, Any]:
    cid = optional_uuid(completion_id, "completion_id")
    assert cid is not None
    await caller.svc.recorder.drain()  # it may have been answered a moment ago
    row = await caller.svc.repo.get_message(cid, project)
    if row is None:
        raise NotFound(f"completion {completion_id!r} does not exist in project {project!r}")
    return row


async def add_feedback(request: Request) -> Response:
    caller = await authenticate(request)
    body = decode(await request.body(), FeedbackBody)
    user_id = free_user(body.user_id, "user_id", limit=MAX_USER_ID_LENGTH)
    project = caller.project(None)
    value = metric_value(caller, project, body.metric, body.value)
    completion = await find_completion(caller, project, body.completion_id)
    feedback_id = await caller.svc.repo.add_metric_feedback(
        {
            "project": project,
            "completion_id": completion["id"],
            "metric": body.metric,
            "value": value,
            "reason": body.reason,
            "details": body.details,
            "user_id": user_id,
        }
    )
    return JSONResponse({"feedback_id": feedback_id}, status_code=201)


async def _side(caller: Caller, project: str, side: str | dict[str, Any], name: str) -> dict[str, Any]:
    if isinstance(side, str):
        return {"completion_id": (await find_completion(caller, project, side))["id"]}
    if isinstance(side.get("text"), str) and isinstance(side.get("model"), str):
        return {"text": side["text"], "model": side["model"]}
    raise InputError(f"{name} must be a completion id or {{text, model}}", param=name)


async def add_comparison(request: Request) -> Response:
    caller = await authenticate(request)
    body = decode(await request.body(), ComparisonBody)
    user_id = free_user(body.user_id, "user_id", limit=MAX_USER_ID_LENGTH)
    project = caller.project(body.project)
    if body.metric not in caller.svc.catalog.projects[project].metrics:
        raise NotFound(f"metric {body.metric!r} does not exist in project {project!r}")
    if body.tied not in (None, "good", "bad"):
        raise InputError("tied must be 'good' or 'bad'", param="tied")
    preferred = await _side(caller, project, body.preferred_completion, "preferred_completion")
    other = await _side(caller, project, body.other_completion, "other_completion")
    if ("text" in preferred or "text" in other) and not body.messages:
        raise InputError("messages are required when a completion is given as text", param="messages")
    comparison_id = await caller.svc.repo.add_comparison(
        {
            "project": project,
            "metric": body.metric,
            "preferred": preferred,
            "other": other,
            "tied": body.tied,
            "messages": [{"role": m.role, "content": m.content} for m in body.messages or []] or None,
            "user_id": user_id,
        }
    )
    return JSONResponse({"comparison_id": comparison_id}, status_code=201)


async def add_outcome(request: Request) -> Response:
    caller = await authenticate(request)
    body = decode(await request.body(), OutcomeBody)
    user_id = free_user(body.user_id, "user_id", limit=MAX_USER_ID_LENGTH)
    project = caller.project(body.project_id or body.project)
    value = metric_value(caller, project, body.metric, body.value)
    session_id = optional_uuid(body.session_id, "session_id")
    assert session_id is not None
    await caller.svc.recorder.drain()
    if not await caller.svc.repo.session_turns(project, session_id):
        raise NotFound(f"session {session_id!r} does not exist in project {project!r}")
    outcome_id = await caller.svc.repo.add_outcome(
        {
            "project": project,
            "session_id": session_id,
            "metric": body.metric,
            "value": value,
            "user_id": user_id,
        }
    )
    return JSONResponse({"outcome_id": outcome_id}, status_code=201)
