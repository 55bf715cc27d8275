"""POST /completion-messages (blocking and streaming) and POST /completion-messages/{task_id}/stop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.engine.call import ChatCall, FormInput, Origin
from promptd.engine.request import Done, GenerationRequest, KeepAlive
from promptd.errors import ConflictError
from promptd.faces.dify.attachments import Attachments, file_parts, input_files, input_parts, takes_files
from promptd.faces.dify.auth import App, authenticate
from promptd.faces.dify.errors import dify_error
from promptd.faces.dify.sse import PING, encode, event, header, message_frame, metadata
from promptd.faces.dify.wire import (
    CompletionBody,
    StopBody,
    convert_body,
    decode_body,
    decode_object,
    require_user,
)
from promptd.faces.disconnect import unless_gone
from promptd.faces.mount import served_headers
from promptd.faces.streaming import EventStream
from promptd.knowledge.prompt import answer_metadata
from promptd.timing import UPSTREAM_KEY
from promptd.types import TextDelta

__all__ = ["completion_messages", "stop_completion"]

log = logging.getLogger("promptd.dify")

IGNORED_KEY = "promptd.ignored"  # request scope: what the face ignored of the request (for the header)


#: the response header that tells a client what part of its request was ignored (`files`, today)
IGNORED_HEADER = "X-Promptd-Ignored"


def uploads_on(app: App, request: Request) -> bool:
    """Whether the app takes files. When it does not, Dify ignores a request's `files` (no error): so does
    promptd, and says so in the `X-Promptd-Ignored: files` header (set on the request's scope, added by the
    response) and in the log."""
    if takes_files(app.project.file_upload):
        return True
    log.info("files ignored: uploads are off for app %r", app.name)
    request.scope[IGNORED_KEY] = "files"
    return False


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
    given = body.files if body.files and uploads_on(app, request) else None
    files = (
        [{"type": f.type, "transfer_method": f.transfer_method, "url": f.url, "upload_file_id": f.upload_file_id}
         for f in given]
        if given
        else None
    )  # fmt: skip
    # Dify checks the request before any stream exists: a mistake (inputs, files) is a 400 JSON answer in both
    # modes; over a limit is a 429 with Retry-After, stream or not
    form_files = input_files(app, body.inputs, body.query)  # file / file-list inputs (the form checked first)
    attached = Attachments([], [])  # what needs the network or a model is made once the engine admits the call
    if given:
        await file_parts(app, given, user, attached)
    if form_files:
        await input_parts(app, form_files, user, attached)
    form = FormInput(inputs=body.inputs, query=body.query, attachments=attached.parts, files=files)
    run = await app.svc.engine.generate(  # the engine searches the project's knowledge, if it attaches any
        ChatCall(form=form, stream=streaming, pending=attached.pending),
        Origin(face="dify", project=app.name, key_id=app.key.id, key_limits=app.key.limits, user=user),
        keepalive=app.svc.settings.ping_interval if streaming else None,
    )
    (generation,) = run.generations
    req = generation.request
    if streaming:
        return EventStream(_stream(generation), headers=_ignored(request))
    result = await unless_gone(request, generation.wait(), generation)  # a client that goes stops it
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
                "metadata": {**metadata(result), **answer_metadata(req)},
                "created_at": int(req.created_at),
            }
        ),
        media_type="application/json",
        headers={**(_ignored(request) or {}), **served_headers(result)},
    )


def _ignored(request: Request) -> dict[str, str] | None:
    ignored = request.scope.get(IGNORED_KEY)
    return {IGNORED_HEADER: ignored} if ignored else None


def _error_event(message_id: str, created_at: int, exc: BaseException) -> bytes:
    status, code, message = dify_error(exc)
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


async def _stream(generation: Any) -> AsyncIterator[bytes]:
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
                    meta = {**metadata(result), **answer_metadata(generation.request)}
                    yield event({"event": "message_end", **head, "metadata": meta, "files": None})
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
