"""POST /api/v1/chat/completions (and the OpenAI alias POST /v1/chat/completions)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from promptd.domain.pricing import plain
from promptd.engine.call import ChatCall, Origin, ToolSwitches
from promptd.engine.generation import Generation
from promptd.engine.pending import Pending
from promptd.engine.request import Done, GenerationResult, KeepAlive
from promptd.errors import InputError, PromptdError
from promptd.faces.chat.auth import Caller, authenticate
from promptd.faces.chat.errors import chat_status, openai_body
from promptd.faces.chat.wire import ChatBody, chat_body, free_user, generation_params, optional_uuid, to_messages
from promptd.faces.disconnect import unless_gone
from promptd.faces.mount import served_headers
from promptd.faces.streaming import EventStream
from promptd.settings import Settings
from promptd.timing import UPSTREAM_KEY
from promptd.types import ContentPart, Message, TextDelta, ToolCallDelta
from promptd.urlguard import inline_image, remote_images, vet_image
from promptd.uuids import new_uuid

__all__ = [
    "MAX_N",
    "chat_call",
    "chat_completions",
    "finish_reason",
    "merge_events",
    "tool_switches",
    "usage_body",
    "with_fingerprint",
]

_encode = msgspec.json.Encoder().encode
MAX_N = 16


def tool_switches(body: ChatBody) -> ToolSwitches:
    """The wire's `use_tools` and `tools` as switches: `{id, enabled}` items override the project's tools, OpenAI
    function definitions are the client's own."""
    switches = ToolSwitches(use_tools=body.use_tools)
    for i, item in enumerate(body.tools or []):
        if item.get("type") == "function" and isinstance(item.get("function"), dict):
            switches.client_tools.append(item)
            continue
        tool_id, enabled = item.get("id"), item.get("enabled")
        if not isinstance(tool_id, str) or not isinstance(enabled, bool):
            raise InputError(f"tools[{i}] must be {{id, enabled}} or an OpenAI function tool", param="tools")
        switches.overrides[tool_id] = enabled
    return switches


def _remote_images(messages: list[Message], settings: Settings) -> list[Pending]:
    """The remote images of `messages`, each through the URL guard once the engine admits the call: with
    `inline_remote_images` fetched by promptd and sent as data URLs, else their URLs vetted (one per host) and
    passed on for the model's provider to fetch."""
    allow = settings.fetch_allow
    if not settings.inline_remote_images:

        async def vet(part: ContentPart, origin: Origin) -> ContentPart:
            return await vet_image(part, time_limit=settings.remote_fetch_timeout, allow=allow)

        return [Pending(part, vet) for part in remote_images(messages, fetched=False)]
    limit = int(settings.upload_limit_mb("image") * 1024 * 1024)

    async def inline(part: ContentPart, origin: Origin) -> ContentPart:
        return await inline_image(part, time_limit=settings.remote_fetch_timeout, max_bytes=limit, allow=allow)

    return [Pending(part, inline) for part in remote_images(messages, fetched=True)]


def usage_body(results: list[GenerationResult], n: int | None = None) -> dict[str, Any]:
    """Token counts as OpenAI counts them for `n` choices: the prompt once (the largest count, should a choice
    have fallen back to a model that counts otherwise), the completions summed. The cost, in the Dify face's
    fields, is what was spent: each choice is its own upstream call, so the prompt is paid `n` times, and that
    is what budgets, metering and each choice's record hold. `results` may hold several prompts' choices, `n`
    each in a row (OpenAI's legacy completions): each prompt is counted once."""
    per = n or len(results)
    prompt = sum(max(r.usage.prompt_tokens for r in results[k : k + per]) for k in range(0, len(results), per))
    completion = sum(r.usage.completion_tokens for r in results)
    prompt_price = sum((r.cost.prompt_price for r in results), Decimal(0))
    completion_price = sum((r.cost.completion_price for r in results), Decimal(0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_price": plain(prompt_price),
        "completion_price": plain(completion_price),
        "total_price": plain(prompt_price + completion_price),
        "currency": results[0].cost.currency,
    }


def chat_call(caller: Caller, body: ChatBody, params: dict[str, Any]) -> tuple[ChatCall, Origin]:
    """The engine call and its origin that a chat body asks for (`params`: its generation parameters). One
    translation for every endpoint that reaches the engine's chat entry point (chat completions here, OpenAI's
    Responses API in faces/chat/responses.py), so that limits, budgets, templates, sessions, campaigns, `store`
    and records apply to each alike."""
    project, model_name = caller.model(body.model)
    user = free_user(body.user)
    given_session = optional_uuid(body.session_id, "session_id")
    session_id = given_session or new_uuid()
    n = 1 if body.n in (None, 0) else body.n  # Adaptive's schema allows 0: the default, one choice
    if not 1 <= n <= MAX_N:
        raise InputError(f"n must be between 1 and {MAX_N}", param="n")
    max_tokens = body.max_tokens or body.max_completion_tokens or None  # Adaptive's 0: the default
    if body.max_ttft_ms is not None and body.max_ttft_ms < 0:
        raise InputError("max_ttft_ms must be >= 0", param="max_ttft_ms")
    messages = to_messages(body.messages)
    call = ChatCall(
        messages=messages,  # the engine adds the project's knowledge, if it attaches any
        system_prompt_args=body.system_prompt_args,
        max_tokens=max_tokens,
        # sent on under the name the client used: OpenAI's reasoning models take only max_completion_tokens
        token_param="max_completion_tokens" if body.max_tokens is None and body.max_completion_tokens else "max_tokens",
        params=params,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=[body.stop] if isinstance(body.stop, str) else body.stop,
        tools=tool_switches(body),
        tool_choice=body.tool_choice,
        n=n,
        stream=bool(body.stream),
        max_ttft_ms=body.max_ttft_ms,
        pending=_remote_images(messages, caller.svc.settings),
    )
    origin = Origin(
        face="chat",
        project=project,
        model=model_name,
        ab_campaign=body.ab_campaign,
        key_id=caller.key.id,
        key_limits=caller.key.limits,
        user=user,
        store=body.store is not False,
        session_id=session_id,
        sticky=given_session or user or session_id,
        labels={**(body.metadata or {}), **(body.labels or {})} or None,
        tags=body.tags,
    )
    return call, origin


async def chat_completions(request: Request, *, openai: bool = False) -> Response:
    """The Adaptive face's endpoint, or (`openai`) the OpenAI alias's, which differs only where the two APIs do:
    OpenAI's message roles only, and null `content` beside tool calls (Adaptive's SDK wants a string)."""
    caller = await authenticate(request)
    raw = await request.body()
    body = chat_body(raw, openai=openai)
    call, origin = chat_call(caller, body, generation_params(raw))
    project, session_id = origin.project, origin.session_id
    run = await caller.svc.engine.generate(
        call, origin, keepalive=caller.svc.settings.ping_interval if body.stream else None
    )
    generations = run.generations
    head = {
        "id": "chatcmpl-" + generations[0].request.message_id.replace("-", ""),
        "created": int(origin.created_at),
        "model": f"{project}/{run.model}",
        "session_id": session_id,
    }
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        wait = caller.svc.settings.stream_commit_wait
        return EventStream(_stream(generations, head, include_usage, commit_wait=wait, openai=openai), hold=True)
    results = await unless_gone(request, run.results(), *generations)  # a client that goes stops them
    request.scope[UPSTREAM_KEY] = max(r.upstream_s for r in results)
    for result in results:
        if result.error is not None:
            raise result.error
    head["model"] = f"{project}/{results[0].model}"  # the model that answered (a fallback, maybe)
    choices = [
        {
            "index": i,
            "completion_id": g.request.message_id,
            "model": r.model,
            "finish_reason": finish_reason(r),
            "logprobs": {"content": r.logprobs} if r.logprobs is not None else None,
            "message": {
                "id": g.request.message_id,
                "role": "assistant",
                "content": None if _null_content(r, openai) else r.answer,
                **({"tool_calls": r.tool_calls} if r.tool_calls else {}),
            },
        }
        for i, (g, r) in enumerate(zip(generations, results, strict=True))
    ]
    answer = {**head, "object": "chat.completion", "choices": choices, "usage": usage_body(results)}
    return Response(
        _encode(with_fingerprint(answer, results)), media_type="application/json", headers=served_headers(results[0])
    )


def _null_content(result: GenerationResult, openai: bool) -> bool:
    """Whether the message's `content` is null: on the OpenAI alias, for tool calls without text, as OpenAI's
    (Adaptive's SDK wants a string: "")."""
    return openai and bool(result.tool_calls) and not result.answer


def with_fingerprint(body: dict[str, Any], results: list[GenerationResult]) -> dict[str, Any]:
    """`body` with the upstream's `system_fingerprint`, when one of the choices' upstreams sent one."""
    fingerprint = next((r.system_fingerprint for r in results if r.system_fingerprint), None)
    return body if fingerprint is None else {**body, "system_fingerprint": fingerprint}


def _delta(
    head: dict[str, Any], index: int, completion_id: str, finish: str | None, logprobs: Any = None, **delta: Any
) -> bytes:
    """One chunk of one choice; its `logprobs`, when given, beside its delta (`choices[].logprobs`, as OpenAI's)."""
    choice = {
        "index": index,
        "completion_id": completion_id,
        "finish_reason": finish,
        "delta": {"id": completion_id, "role": "assistant", "content": "", **delta},
    }
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return b"data: " + _encode({**head, "object": "chat.completion.chunk", "choices": [choice]}) + b"\n\n"


def finish_reason(result: GenerationResult) -> str | None:
    """The choice's finish_reason: OpenAI's `content_filter` when output moderation replaced the answer."""
    return "content_filter" if result.replaced else result.finish_reason


def _checked(head: dict[str, Any], index: int, cid: str, held: list[TextDelta], result: GenerationResult) -> bytes:
    """One delta with a held answer once output moderation checked it: the text as it came (with its logprobs),
    or the replacement the moderation gave."""
    if result.replaced:
        return _delta(head, index, cid, None, content=result.answer)
    logprobs = [p for d in held if d.logprobs is not None for p in d.logprobs]
    extra: dict[str, Any] = {"logprobs": {"content": logprobs}} if logprobs else {}
    return _delta(head, index, cid, None, content="".join(d.text for d in held), **extra)


def _content_frame(head: dict[str, Any], index: int, completion_id: str) -> tuple[bytes, bytes]:
    """The bytes around the text of a choice's content deltas, computed once per choice: each delta is then
    prefix + the text as JSON + suffix, the very bytes `_delta(..., content=text)` would make."""
    empty = _delta(head, index, completion_id, None, content="")
    cut = empty.rindex(b'"content":""') + len(b'"content":')
    return empty[:cut], empty[cut + 2 :]


async def merge_events(generations: list[Generation]) -> AsyncIterator[tuple[int, Any]]:
    """The events of several generations as they come, tagged with the choice index."""
    if len(generations) == 1:
        only = generations[0]
        while True:
            event = await only.next_event()
            yield 0, event
            if isinstance(event, Done):
                return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(i: int, g: Generation) -> None:
        async for event in g.events():
            queue.put_nowait((i, event))

    pumps = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        done = 0
        while done < len(generations):
            i, event = await queue.get()
            done += isinstance(event, Done)
            yield i, event
    finally:
        for task in pumps:
            task.cancel()


async def _stream(
    generations: list[Generation], head: dict[str, Any], include_usage: bool, *, commit_wait: float, openai: bool
) -> AsyncIterator[bytes]:
    """The chunks of a streamed answer. Nothing is sent (EventStream holds the head) until the first delta,
    or a keep-alive once `commit_wait` seconds have passed since the request: an error before that is raised,
    and answered with its real HTTP status; after it, an error is the last event: OpenAI's error object alone on
    the OpenAI alias, a chunk with an `error` object and a `finish_reason: "error"` choice on Adaptive's face. With
    `include_usage`, every chunk but the usage chunk has `"usage": null`, as OpenAI's have; a tool call's delta
    has `"content": null` on the OpenAI alias (`openai`), "" on Adaptive's face (its SDK wants a string)."""
    if include_usage:
        head["usage"] = None
    tool_content = None if openai else ""
    results: dict[int, GenerationResult] = {}
    failed: PromptdError | None = None
    committed = False
    started = generations[0].request.started
    frames = [_content_frame(head, i, g.request.message_id) for i, g in enumerate(generations)]
    # output moderation checks the whole answer, and a chunk sent cannot be taken back: such a choice's text is
    # held and sent once checked (as it was, or the operator's replacement with finish_reason content_filter)
    held: dict[int, list[TextDelta]] = {i: [] for i, g in enumerate(generations) if g.request.output_check}
    try:
        async for i, event in merge_events(generations):
            cid = generations[i].request.message_id
            if isinstance(event, TextDelta) and i in held:
                held[i].append(event)
            elif isinstance(event, TextDelta):
                if not committed:  # the head names the model that answers (a fallback, maybe)
                    head["model"] = f"{head['model'].partition('/')[0]}/{generations[i].began_on}"
                    frames = [_content_frame(head, j, g.request.message_id) for j, g in enumerate(generations)]
                committed = True
                if event.logprobs is not None:
                    yield _delta(head, i, cid, None, content=event.text, logprobs={"content": event.logprobs})
                else:
                    before, after = frames[i]
                    yield before + _encode(event.text) + after
            elif isinstance(event, ToolCallDelta):
                call: dict[str, Any] = {
                    "index": event.index,
                    "type": "function",
                    "function": {"arguments": event.arguments},
                }
                if event.id:
                    call["id"] = event.id
                if event.name:
                    call["function"]["name"] = event.name
                committed = True
                yield _delta(head, i, cid, None, content=tool_content, tool_calls=[call])
            elif isinstance(event, KeepAlive):
                if committed or time.perf_counter() - started >= commit_wait:
                    committed = True
                    yield b": keep-alive\n\n"
            elif isinstance(event, Done):
                results[i] = event.result
                if event.result.error is not None:
                    failed = event.result.error
                    for g in generations:
                        g.stop("another choice failed")
                    if not committed:
                        raise failed  # nothing sent yet: the client gets the real status (EventStream)
                    status = chat_status(failed)
                    if openai:  # OpenAI's own: the error object alone (a chunk with choices reads as a normal end)
                        chunk = openai_body(failed, status)
                    else:
                        error = {"message": failed.message, "code": failed.code, "status": status}
                        choice = {
                            "index": i,
                            "completion_id": cid,
                            "finish_reason": "error",
                            "delta": {"id": cid, "role": "assistant", "content": ""},
                        }
                        chunk = {**head, "object": "chat.completion.chunk", "error": error, "choices": [choice]}
                    yield b"data: " + _encode(chunk) + b"\n\n"
                    return  # no [DONE]: the answer is not complete
                committed = True
                last = with_fingerprint(head, [event.result])
                served = f"{head['model'].partition('/')[0]}/{event.result.model}"
                if served != last["model"]:  # a rescue finished it elsewhere: its last chunk names that model
                    last = {**last, "model": served}
                if i in held and (held[i] or event.result.replaced):
                    yield _checked(last, i, cid, held[i], event.result)
                content = None if _null_content(event.result, openai) else ""  # a null content stays null in SDKs
                yield _delta(last, i, cid, finish_reason(event.result), content=content)
        if include_usage:
            ordered = [results[i] for i in sorted(results)]
            usage = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage_body(ordered)}
            yield b"data: " + _encode(with_fingerprint(usage, ordered)) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        if len(results) < len(generations) and failed is None:  # the client went away mid-stream
            for g in generations:
                g.stop("client disconnected")
