"""POST /completion-messages (blocking and streaming) and POST /completion-messages/{task_id}/stop."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.engine.call import ChatCall, FormInput, Origin
from promptd.engine.request import Done, GenerationRequest, KeepAlive
from promptd.errors import ConflictError, InputError, ProviderError
from promptd.faces.dify.attachments import file_parts
from promptd.faces.dify.auth import App, authenticate
from promptd.faces.dify.errors import dify_error
from promptd.faces.dify.sse import PING, encode, event, header, message_frame, usage_metadata
from promptd.faces.dify.wire import (
    CompletionBody,
    StopBody,
    convert_body,
    decode_body,
    decode_object,
    require_user,
)
from promptd.faces.streaming import EventStream
from promptd.knowledge.prompt import KnowledgeContext, for_prompt
from promptd.timing import UPSTREAM_KEY
from promptd.types import TextDelta
from promptd.uuids import new_uuid

__all__ = ["completion_messages", "stop_completion"]

log = logging.getLogger("promptd.dify")


def _require_completion_app(app: App) -> None:
    if app.project.mode != "completion":
        raise ConflictError("App unavailable, please check your app configurations.", code="app_unavailable")


async def completion_messages(request: Request) -> Response:
    app = await authenticate(request)
    # Dify's order: the `user` argument (read by the key check), then the app's mode, then the payload
    obj = decode_object(await request.body())
    user = require_user(obj.get("user"))
    _require_completion_app(app)
    body = convert_body(obj, CompletionBody)
    body.query = body.query.replace("\x00", "")  # as Dify does (and as the form does for inputs)
    streaming = body.response_mode == "streaming"
    files = (
        [{"type": f.type, "transfer_method": f.transfer_method, "url": f.url, "upload_file_id": f.upload_file_id}
         for f in body.files]
        if body.files
        else None
    )  # fmt: skip
    context = await for_prompt(app.svc, app.name, body.inputs, body.query)  # the project's knowledge, if any
    try:
        attachments = await file_parts(app, body.files, user) if body.files else []
        form = FormInput(
            inputs=body.inputs, query=body.query, attachments=attachments, files=files, context=context.form_context
        )
        run = await app.svc.engine.generate(
            ChatCall(form=form, stream=streaming, retriever_resources=context.resources or None),
            Origin(face="dify", project=app.name, key_id=app.key.id, key_limits=app.key.limits, user=user),
            keepalive=app.svc.settings.ping_interval if streaming else None,
        )
    except InputError as exc:
        if not streaming:
            raise
        # Dify reports input-form errors of a streaming request as an `error` event in a 200 stream
        return EventStream(_single_error(exc))
    (generation,) = run.generations
    req = generation.request
    if streaming:
        return EventStream(_stream(generation, context))
    result = await generation.wait()
    request.scope[UPSTREAM_KEY] = result.upstream_s
    if result.error is not None:
        raise result.error
    return Response(  # msgspec: the stdlib encoder behind JSONResponse cost a tenth of the handler
        encode(
            {
                "event": "message",
                "task_id": req.task_id,
                "id": req.message_id,
                "message_id": req.message_id,
                "mode": "completion",
                "answer": result.answer,
                "metadata": {"usage": usage_metadata(result), **context.metadata},
                "created_at": int(req.created_at),
            }
        ),
        media_type="application/json",
    )


def _error_event(message_id: str, created_at: int, exc: BaseException) -> bytes:
    status, code, message = dify_error(exc)
    if isinstance(exc, ProviderError):
        # a stream reports every model invoke error, a rate limit too, as 400 completion_request_error
        # (Dify's `_error_to_stream_response`); only a blocking answer turns a rate limit into a 429
        status, code = 400, "completion_request_error"
    if status >= 500:
        message = "Internal Server Error, please contact support."
    return event(
        {
            "event": "error",
            "message_id": message_id,
            "created_at": created_at,
            "status": status,
            "code": code,
            "message": message,
        }
    )


async def _single_error(exc: InputError) -> AsyncIterator[bytes]:
    yield _error_event(new_uuid(), int(time.time()), exc)


async def _stream(generation: Any, context: KnowledgeContext) -> AsyncIterator[bytes]:
    req: GenerationRequest = generation.request
    head = header(req)
    before, after = message_frame(head)
    finished = False
    try:
        while not finished:
            ev = await generation.next_event()
            if isinstance(ev, TextDelta):
                yield before + encode(ev.text) + after
            elif isinstance(ev, KeepAlive):
                yield PING
            elif isinstance(ev, Done):
                finished = True
                result = ev.result
                if result.error is not None:
                    yield _error_event(req.message_id, head["created_at"], result.error)
                else:
                    if result.replaced:  # output moderation flagged the answer the client has seen
                        yield event(
                            {"event": "message_replace", **head, "answer": result.answer, "reason": "output_moderation"}
                        )
                    metadata = {"usage": usage_metadata(result), **context.metadata}
                    yield event({"event": "message_end", **head, "metadata": metadata, "files": None})
    finally:
        if not finished:  # the client went away: stop the upstream call, the record says so
            generation.stop("client disconnected")


async def stop_completion(request: Request) -> Response:
    app = await authenticate(request)
    body = decode_body(await request.body(), StopBody)
    user = require_user(body.user)
    _require_completion_app(app)
    await app.svc.engine.stop(request.path_params["task_id"], project=app.name, end_user_id=app.end_user(user))
    return JSONResponse({"result": "success"})
