"""The app's description endpoints (info, parameters, meta, site), feedback, and end users."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.domain.forms import form_to_dify
from promptd.domain.ids import app_uuid, conversation_id
from promptd.engine.moderation import dify_config
from promptd.errors import Forbidden, InputError, NotFound
from promptd.faces.dify.auth import authenticate
from promptd.faces.dify.wire import FeedbackBody, decode_body, int_arg, require_user

__all__ = ["app_feedbacks", "end_user", "info", "message_feedback", "meta", "parameters", "site"]


def naive_iso(ts: float) -> str:
    """Dify's `datetime.isoformat()` of a UTC time kept without a zone: `2024-05-01T12:34:56.123456`."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).replace(tzinfo=None).isoformat()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def info(request: Request) -> Response:
    app = await authenticate(request)
    p = app.project
    return JSONResponse(
        {
            "name": p.name or app.name,
            "description": p.description,
            "tags": list(p.tags),
            "mode": p.mode,
            "author_name": p.author,
        }
    )


def _whole(mb: float) -> int | float:
    """Dify reports limits as whole MB; a fractional limit (a test's, say) is reported as it is."""
    return int(mb) if float(mb).is_integer() else mb


async def parameters(request: Request) -> Response:
    app = await authenticate(request)
    p, settings = app.project, app.svc.settings
    image = p.file_upload.image
    return JSONResponse(
        {
            "opening_statement": p.opening_statement,
            "suggested_questions": list(p.suggested_questions),
            "suggested_questions_after_answer": {"enabled": False},
            "speech_to_text": {"enabled": p.audio.speech_to_text is not None},
            "text_to_speech": {
                "enabled": p.audio.text_to_speech is not None,
                "voice": p.audio.voice,
                "language": p.audio.language,
                "autoPlay": "disabled",
            },
            "retriever_resource": {"enabled": False},
            "annotation_reply": {"enabled": False},
            "more_like_this": {"enabled": p.more_like_this},
            "sensitive_word_avoidance": dify_config(p.moderation),
            "user_input_form": form_to_dify(p.inputs),
            "file_upload": {
                "enabled": p.file_upload.enabled,
                "allowed_file_types": list(p.file_upload.allowed_file_types),
                "allowed_file_extensions": list(p.file_upload.allowed_file_extensions),
                "allowed_file_upload_methods": list(p.file_upload.allowed_file_upload_methods),
                "number_limits": p.file_upload.number_limits,
                "image": {
                    "enabled": image.enabled,
                    "number_limits": image.number_limits,
                    "detail": image.detail,
                    "transfer_methods": list(image.transfer_methods),
                },
            },
            "system_parameters": {
                "file_size_limit": _whole(settings.upload_limit_mb("document")),
                "image_file_size_limit": _whole(settings.upload_limit_mb("image")),
                "audio_file_size_limit": _whole(settings.upload_limit_mb("audio")),
                "video_file_size_limit": _whole(settings.upload_limit_mb("video")),
                "workflow_file_upload_limit": 10,
            },
        }
    )


async def meta(request: Request) -> Response:
    app = await authenticate(request)
    return JSONResponse({"tool_icons": dict(app.project.tool_icons)})


async def site(request: Request) -> Response:
    app = await authenticate(request)
    s = app.project.site
    if s is None:
        raise Forbidden("Site is not enabled for this app.")
    return JSONResponse(
        {
            "title": s.title or app.project.name or app.name,
            "chat_color_theme": s.chat_color_theme,
            "chat_color_theme_inverted": False,
            "icon_type": "emoji",
            "icon": s.icon,
            "icon_background": s.icon_background,
            "icon_url": None,
            "description": s.description if s.description is not None else app.project.description,
            "copyright": s.copyright,
            "privacy_policy": s.privacy_policy,
            "custom_disclaimer": s.custom_disclaimer,
            "default_language": s.default_language,
            "show_workflow_steps": False,
            "use_icon_as_answer_icon": False,
        }
    )


async def message_feedback(request: Request) -> Response:
    app = await authenticate(request)
    body = decode_body(await request.body(), FeedbackBody)
    user = require_user(body.user)
    end_user_id = app.end_user(user)
    message_id = request.path_params["message_id"]
    await app.svc.recorder.drain()  # the message may have been answered a moment ago
    message = await app.svc.repo.get_message(message_id, app.name)
    if message is None or message["end_user_id"] != end_user_id:
        raise NotFound("Message Not Exists.")
    done = await app.svc.repo.set_feedback(
        project=app.name, message_id=message_id, end_user_id=end_user_id, rating=body.rating, content=body.content
    )
    if not done:
        raise InputError("rating cannot be None when feedback not exists", param="rating")
    return JSONResponse({"result": "success"})


async def app_feedbacks(request: Request) -> Response:
    app = await authenticate(request)
    page = int_arg(request.query_params, "page", 1, 1, 1_000_000)
    limit = int_arg(request.query_params, "limit", 20, 1, 101)
    rows = await app.svc.repo.list_feedbacks(app.name, page=page, limit=limit)
    data: list[dict[str, Any]] = [
        {
            "id": r["id"],
            "app_id": app_uuid(app.name),
            "conversation_id": conversation_id(r["message_id"]),
            "message_id": r["message_id"],
            "rating": r["rating"],
            "content": r["content"],
            "from_source": r["from_source"],
            "from_end_user_id": r["from_end_user_id"],
            "from_account_id": r["from_account_id"],
            "created_at": naive_iso(r["created_at"]),
            "updated_at": naive_iso(r["updated_at"]),
        }
        for r in rows
    ]
    return JSONResponse({"data": data})


async def end_user(request: Request) -> Response:
    app = await authenticate(request)
    await app.svc.recorder.drain()
    row = await app.svc.repo.get_end_user(request.path_params["end_user_id"], app.name)
    if row is None:
        raise NotFound("End user not found.", code="end_user_not_found")
    return JSONResponse(
        {
            "id": row["id"],
            "tenant_id": app.name,
            "app_id": app.name,
            "type": row["type"],
            "external_user_id": row["external_user_id"],
            "name": None,
            "is_anonymous": bool(row["is_anonymous"]),
            "session_id": row["external_user_id"],
            "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
        }
    )
