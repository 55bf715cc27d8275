"""POST /completion-messages (blocking and streaming) and POST /completion-messages/{task_id}/stop."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.domain.forms import validate_inputs
from promptd.domain.templates import render_prompt, template_variables
from promptd.engine.request import Done, GenerationRequest, KeepAlive
from promptd.errors import ConflictError, InputError, ProviderError
from promptd.faces.dify.auth import App, authenticate
from promptd.faces.dify.errors import dify_error
from promptd.faces.dify.sse import PING, encode, event, header, message_frame, usage_metadata
from promptd.faces.dify.wire import (
    CompletionBody,
    FileRef,
    StopBody,
    convert_body,
    decode_body,
    decode_object,
    require_user,
)
from promptd.faces.streaming import EventStream
from promptd.knowledge.prompt import KnowledgeContext, for_prompt, with_context
from promptd.timing import UPSTREAM_KEY
from promptd.types import ContentPart, Message, TextDelta

__all__ = ["completion_messages", "stop_completion"]

log = logging.getLogger("promptd.dify")


def _prompt(app: App, body: CompletionBody, context: KnowledgeContext) -> tuple[dict[str, Any], str]:
    """Validate inputs against the form and render the prompt. The legacy top-level `query` fills a `query`
    variable the request left empty, or else is appended to the prompt. Retrieved knowledge fills `{{context}}`."""
    project = app.project
    template = with_context(project.prompt or "", context)
    raw = dict(body.inputs)
    form_vars = {f.variable for f in project.inputs}
    if body.query and "query" in form_vars and not raw.get("query"):
        raw["query"] = body.query
    inputs = validate_inputs(project.inputs, raw)
    values = dict(inputs)
    if "query" not in form_vars:
        values["query"] = body.query
    values["context"] = context.text
    text = render_prompt(template, values)
    if body.query and "query" not in form_vars and "query" not in template_variables(template):
        text = f"{text}\n\n{body.query}" if text else body.query
    return inputs, text


async def _image_parts(app: App, files: list[FileRef], end_user: str, vision: bool) -> list[ContentPart]:
    """Resolve `files` to image content parts the model can read, with Dify-style errors for each misuse."""
    config = app.project.file_upload.image
    if not config.enabled:
        raise InputError("File upload is not enabled for this app.", param="files")
    if len(files) > config.number_limits:
        raise InputError(f"Number of image files exceeds the maximum limit of {config.number_limits}.", param="files")
    parts: list[ContentPart] = []
    for i, f in enumerate(files):
        if f.type != "image":
            raise InputError(f"files[{i}]: only image files are accepted by this app, not {f.type}", param="files")
        if f.transfer_method not in config.transfer_methods:
            raise InputError(f"files[{i}]: transfer method {f.transfer_method} is not allowed", param="files")
        if f.transfer_method == "remote_url":
            if not f.url or not f.url.startswith(("http://", "https://")):
                raise InputError(f"files[{i}]: url must be an http(s) URL for remote_url", param="files")
            url = f.url
        else:
            if not f.upload_file_id:
                raise InputError(f"files[{i}]: upload_file_id is required for local_file", param="files")
            row = await app.svc.repo.get_file(f.upload_file_id, app.name)
            if row is None or row["created_by"] != end_user:
                raise InputError("Invalid upload file", param="files")
            if row["kind"] != "image":
                raise InputError(f"files[{i}]: the uploaded file is not an image", param="files")
            try:
                data = await asyncio.to_thread((app.svc.settings.files_dir / row["storage_key"]).read_bytes)
            except OSError:
                raise InputError("Invalid upload file", param="files") from None  # its bytes are gone
            url = f"data:{row['mime_type']};base64,{base64.b64encode(data).decode()}"
        parts.append({"type": "image_url", "image_url": {"url": url, "detail": config.detail}})
    if not vision:
        raise InputError("The model of this app does not accept images (it is not vision-capable).", param="files")
    return parts


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
    end_user = app.end_user(user)
    streaming = body.response_mode == "streaming"
    model_key, model = app.svc.engine.model(app.name, None)
    context = await for_prompt(app.svc, app.name, body.inputs, body.query)
    try:
        inputs, text = _prompt(app, body, context)
        content: str | list[ContentPart] = text
        if body.files:
            images = await _image_parts(app, body.files, end_user, model.vision)
            content = [{"type": "text", "text": text}, *images]
    except InputError as exc:
        if not streaming:
            raise
        # Dify reports input-form errors of a streaming request as an `error` event in a 200 stream
        return EventStream(_single_error(exc))
    messages = []
    if app.project.system_prompt:
        messages.append(Message("system", render_prompt(app.project.system_prompt, inputs)))
    messages.append(Message("user", content))
    req = GenerationRequest(
        project=app.name,
        model=model_key,
        messages=messages,
        face="dify",
        user=user,
        end_user_id=end_user,
        key_id=app.key.id,
        inputs=inputs,
        query=body.query or None,
        files=[
            {"type": f.type, "transfer_method": f.transfer_method, "url": f.url, "upload_file_id": f.upload_file_id}
            for f in body.files
        ]
        if body.files
        else None,
        retriever_resources=context.resources or None,
    )
    await app.svc.engine.admit([req], app.key.limits)  # over a limit: a 429 with Retry-After, stream or not
    if streaming:
        req.streaming = True
        generation = app.svc.engine.start(req, keepalive=app.svc.settings.ping_interval)
        return EventStream(_stream(generation, context))
    result = await app.svc.engine.start(req).wait()
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
    req = GenerationRequest(project="", model="", messages=[], face="dify")
    yield _error_event(req.message_id, int(req.created_at), exc)


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
