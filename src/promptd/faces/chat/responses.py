"""POST /v1/responses: OpenAI's Responses API, served by the chat face's engine call.

The body is read as a chat call (faces/chat/responses_wire.py) and handed to `completions.chat_call`, the
translation /v1/chat/completions uses: the engine then governs it as any chat call (limits, budgets, templates,
sessions, campaigns, moderation, `store`, metering, the record). Only the answer's shape is this API's: a
`response` object with `message` and `function_call` output items, or its stream of `response.*` events
(faces/chat/responses_stream.py).

Ids come from the record's: `resp_<hex>` for the response, `msg_<hex>` for its message, so a later request may
name an earlier answer by an `item_reference` to its message id (what the Vercel AI SDK sends for an assistant
turn), read back from the store.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from promptd.errors import InputError, NotFound
from promptd.faces.chat.auth import Caller, authenticate
from promptd.faces.chat.completions import chat_call
from promptd.faces.chat.responses_items import call_item, finished, head, message_item, outcome
from promptd.faces.chat.responses_stream import stream_events
from promptd.faces.chat.responses_wire import (
    CHAT_NAMES,
    ResponsesBody,
    chat_messages,
    chat_tool_choice,
    chat_tools,
    item_ids,
    referenced,
    responses_params,
)
from promptd.faces.chat.wire import ChatBody, decode
from promptd.faces.disconnect import unless_gone
from promptd.faces.mount import served_headers
from promptd.faces.streaming import EventStream
from promptd.timing import UPSTREAM_KEY

__all__ = ["responses"]

_encode = msgspec.json.Encoder().encode


async def responses(request: Request) -> Response:
    caller = await authenticate(request)
    raw = await request.body()
    body = decode(raw, ResponsesBody)
    params = responses_params(raw, body)
    project, _ = caller.model(body.model)
    answers = await _answers(caller, project, referenced(body.input))
    chat = ChatBody(
        messages=chat_messages(body.input, body.instructions, answers),
        model=body.model,
        max_completion_tokens=body.max_output_tokens,  # the name OpenAI's reasoning models take
        temperature=body.temperature,
        top_p=body.top_p,
        max_ttft_ms=body.max_ttft_ms,
        stream=body.stream,
        session_id=body.session_id,
        user=body.user,
        ab_campaign=body.ab_campaign,
        labels=body.labels,
        metadata=body.metadata,
        system_prompt_args=body.system_prompt_args,
        tags=body.tags,
        use_tools=body.use_tools,
        tools=chat_tools(body.tools),
        tool_choice=chat_tool_choice(body.tool_choice),
        store=body.store,
    )
    call, origin = chat_call(caller, chat, params)
    settings = caller.svc.settings
    try:
        run = await caller.svc.engine.generate(call, origin, keepalive=settings.ping_interval if body.stream else None)
    except InputError as exc:
        raise _in_responses_terms(exc) from None
    generation = run.generations[0]
    shared = head(body, params, origin, item_ids(generation.request.message_id))
    shared["model"] = f"{project}/{run.model}"
    if body.stream:
        events = stream_events(generation, shared, commit_wait=settings.stream_commit_wait)
        return EventStream(events, hold=True)
    result = await unless_gone(request, generation.wait(), generation)  # a client that goes stops it
    request.scope[UPSTREAM_KEY] = result.upstream_s
    if result.error is not None:
        raise result.error
    output = [message_item(shared, result.answer, outcome(result)[0])] if result.answer or not result.tool_calls else []
    output += [call_item(shared, i, call) for i, call in enumerate(result.tool_calls or [])]
    answer = finished(shared, result, output)
    return Response(_encode(answer), media_type="application/json", headers=served_headers(result))


async def _answers(caller: Caller, project: str, references: dict[str, str]) -> dict[str, str]:
    """The text of each assistant message an `item_reference` names (item id → text), read from the store: a
    record of the key's own project and key, kept with its content (`store` was not false). The record is
    written off the request path, so one not found yet is looked for again once the recorder has written what
    it holds (it may have been answered a moment ago)."""
    answers: dict[str, str] = {}
    drained = False
    for item_id, record_id in references.items():
        row = await caller.svc.repo.get_message(record_id, project)
        if row is None and not drained:
            await caller.svc.recorder.drain()
            drained = True
            row = await caller.svc.repo.get_message(record_id, project)
        if row is None or row["key_id"] != caller.key.id or row["kind"] != "chat":
            raise NotFound(
                f"Item with id {item_id!r} not found (promptd keeps the answers of its key's own calls, when "
                "they were stored: not those made with store false)",
                param="input",
            )
        answers[item_id] = row["answer"]
    return answers


def _in_responses_terms(exc: InputError) -> InputError:
    """An error about a chat parameter this face filled from a Responses API field, in that field's name
    (`response_format` → `text.format`); any other as it is."""
    name = CHAT_NAMES.get(exc.param or "")
    if name is None:
        return exc
    message = exc.message
    for chat_name, responses_name in CHAT_NAMES.items():
        message = message.replace(chat_name, responses_name)
    return InputError(message, code=exc.code, param=name)
