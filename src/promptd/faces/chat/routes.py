"""The Adaptive chat API under /api/v1, and the plain OpenAI aliases under /v1."""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from promptd.faces.chat import (
    audio,
    campaigns,
    completions,
    embeddings,
    errors,
    feedback,
    records,
    responses,
    text_completions,
)
from promptd.faces.chat.auth import Caller, authenticate
from promptd.faces.mount import FaceMount, default_http_error
from promptd.faces.refusal import UnknownURL

__all__ = ["get_model", "list_models", "mount", "openai_mount", "openai_routes", "routes"]


def _model(model_id: str, created: int) -> dict[str, Any]:
    """A model in OpenAI's shape. `created` is when the server loaded its catalog: the same in every answer."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "promptd"}


def _served(caller: Caller, project: str) -> list[str]:
    """The models a key of `project` may name: each one attached, then its speech models (`/v1/audio/*`'s)."""
    config = caller.svc.catalog.projects[project]
    audio = (config.audio.text_to_speech, config.audio.speech_to_text)
    return list(dict.fromkeys([*config.models, *(m for m in audio if m)]))


async def list_models(request: Request) -> Response:
    """The key's project (its default model, or its A/B campaign) and each model it serves, as `{project}/{model}`:
    those attached, and its speech models."""
    caller = await authenticate(request)
    project = caller.project(None)
    created = int(caller.svc.started_at)
    ids = [project, *(f"{project}/{m}" for m in _served(caller, project))]
    return JSONResponse({"object": "list", "data": [_model(i, created) for i in ids]})


async def get_model(request: Request) -> Response:
    """One of the ids `list_models` lists (a `/` in it is part of the path), or a bare name of one of its models."""
    caller = await authenticate(request)
    model_id = request.path_params["model_id"]
    project, model = caller.named(model_id)
    if model is None or model not in _served(caller, project):
        caller.model(model_id)  # not a model of the project's: its 404 (model_not_found)
    return JSONResponse(_model(model_id, int(caller.svc.started_at)))


def routes() -> list[BaseRoute]:
    return [
        Route("/chat/completions", completions.chat_completions, methods=["POST"]),
        Route("/embeddings", embeddings.embeddings, methods=["POST"]),
        Route("/feedback", feedback.add_feedback, methods=["POST"]),
        Route("/comparison", feedback.add_comparison, methods=["POST"]),
        Route("/outcome", feedback.add_outcome, methods=["POST"]),
        Route("/interactions", records.import_interaction, methods=["POST"]),
        Route("/sessions/{session_id}", records.session, methods=["GET"]),
        Route("/ab_campaigns/{key}", campaigns.campaign_results, methods=["GET"]),
        Route("/models", list_models, methods=["GET"]),
        Route("/models/{model_id:path}", get_model, methods=["GET"]),
    ]


#: the OpenAI alias of chat completions: the same endpoint, with OpenAI's roles and null content beside tool calls
openai_chat_completions = functools.partial(completions.chat_completions, openai=True)


def openai_routes() -> list[BaseRoute]:
    return [
        Route("/v1/chat/completions", openai_chat_completions, methods=["POST"]),
        Route("/v1/responses", responses.responses, methods=["POST"]),
        Route("/v1/completions", text_completions.text_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings.embeddings, methods=["POST"]),
        Route("/v1/audio/speech", audio.speech, methods=["POST"]),
        Route("/v1/audio/transcriptions", audio.transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", audio.translations, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        UnknownURL(),  # OpenAI's other paths (/v1/images/…, …): OpenAI's 404, not Dify's
    ]


def mount() -> FaceMount:
    """The Adaptive chat API under /api/v1; chat completions are a hot endpoint."""
    return FaceMount(
        "/api/v1",
        routes(),
        errors.adaptive_error,
        errors.http_error,
        hot={"/chat/completions": completions.chat_completions},
    )


def openai_mount() -> FaceMount:
    """The plain OpenAI aliases: /v1/chat/completions, /v1/responses (OpenAI's Responses API on the same engine call),
    /v1/completions (OpenAI's legacy completions: each prompt a user message, on the same engine call),
    /v1/embeddings, /v1/audio/{speech, transcriptions, translations}, /v1/models[/{id}], in OpenAI's error shape.
    They share /v1 with the Dify face, so they are routes of their own placed before its mount, and so is the answer
    to OpenAI's paths that are not served (faces/refusal.py)."""
    return FaceMount(
        "/v1",
        openai_routes(),
        errors.openai_error,
        default_http_error,
        hot={"/chat/completions": openai_chat_completions, "/responses": responses.responses},
        loose=True,
    )
