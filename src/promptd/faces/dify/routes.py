"""The Dify service API for completion apps, mounted under /v1."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from promptd.errors import ConflictError
from promptd.faces.dify import app_info, completion, datasets, errors, files
from promptd.faces.dify.auth import authenticate
from promptd.faces.mount import FaceMount

__all__ = ["CHAT_ONLY", "WORKFLOW_ONLY", "routes"]

#: Chat-app routes: a completion app answers them with 400 not_chat_app, as Dify does.
CHAT_ONLY: list[tuple[str, list[str]]] = [
    ("/chat-messages", ["POST"]),
    ("/chat-messages/{task_id}/stop", ["POST"]),
    ("/messages/{message_id}/suggested", ["GET"]),
    ("/messages", ["GET"]),
    ("/conversations", ["GET"]),
    ("/conversations/{conversation_id}", ["DELETE"]),
    ("/conversations/{conversation_id}/name", ["POST"]),
    ("/conversations/{conversation_id}/variables", ["GET"]),
    ("/conversations/{conversation_id}/variables/{variable_id}", ["PUT"]),
    ("/apps/annotations", ["GET", "POST"]),
    ("/apps/annotations/{annotation_id}", ["PUT", "DELETE"]),
    ("/apps/annotation-reply/{action}", ["POST"]),
    ("/apps/annotation-reply/{action}/status/{job_id}", ["GET"]),
]

#: Workflow-app routes: a completion app answers them with 400 not_workflow_app, as Dify does.
WORKFLOW_ONLY: list[tuple[str, list[str]]] = [
    ("/workflows/run", ["POST"]),
    ("/workflows/run/{workflow_run_id}", ["GET"]),
    ("/workflows/tasks/{task_id}/stop", ["POST"]),
    ("/workflows/logs", ["GET"]),
    ("/workflows/{workflow_id}/run", ["POST"]),
]


async def not_chat_app(request: Request) -> Response:
    app = await authenticate(request)
    if app.project.mode == "chat":
        raise ConflictError(
            "This app is served by the chat API: POST /api/v1/chat/completions.", code="app_unavailable"
        )
    raise ConflictError("Please check if your Chat app mode matches the right API route.", code="not_chat_app")


async def not_workflow_app(request: Request) -> Response:
    await authenticate(request)
    raise ConflictError("Please check if your Workflow app mode matches the right API route.", code="not_workflow_app")


def routes() -> list[BaseRoute]:
    out: list[BaseRoute] = [
        Route("/completion-messages", completion.completion_messages, methods=["POST"]),
        Route("/completion-messages/{task_id}/stop", completion.stop_completion, methods=["POST"]),
        Route("/messages/{message_id}/feedbacks", app_info.message_feedback, methods=["POST"]),
        Route("/app/feedbacks", app_info.app_feedbacks, methods=["GET"]),
        Route("/files/upload", files.upload_file, methods=["POST"]),
        Route("/files/{file_id}/preview", files.preview_file, methods=["GET"], name="dify_file_preview"),
        Route("/end-users/{end_user_id}", app_info.end_user, methods=["GET"]),
        Route("/audio-to-text", files.audio_to_text, methods=["POST"]),
        Route("/text-to-audio", files.text_to_audio, methods=["POST"]),
        Route("/info", app_info.info, methods=["GET"]),
        Route("/parameters", app_info.parameters, methods=["GET"]),
        Route("/meta", app_info.meta, methods=["GET"]),
        Route("/site", app_info.site, methods=["GET"]),
    ]
    out += datasets.routes()  # the Knowledge (dataset) API, with dataset keys
    out += [Route(path, not_chat_app, methods=methods) for path, methods in CHAT_ONLY]
    out += [Route(path, not_workflow_app, methods=methods) for path, methods in WORKFLOW_ONLY]
    return out


def mount() -> FaceMount:
    """The Dify service API under /v1; completions are a hot endpoint."""
    return FaceMount(
        "/v1",
        routes(),
        errors.handle_exception,
        errors.http_error,
        hot={"/completion-messages": completion.completion_messages},
    )
