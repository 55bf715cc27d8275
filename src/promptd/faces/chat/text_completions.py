"""POST /v1/completions: OpenAI's legacy completions, served by the chat face's engine call.

Each prompt becomes one user message to the project's chat model: the answer is the model's reply to it, not a
raw continuation of the text. The body is read as a chat call (faces/chat/text_wire.py) and handed to
`completions.chat_call`, the translation /v1/chat/completions uses, so the engine governs it as any chat call:
keys, `{project}/{model}` or bare model names, limits, budgets, templates, sessions, campaigns, moderation,
`store`, metering and one record per choice. The project's tools are not sent: a text completion has no tool
calls. Only the answer's shape is this API's: a `text_completion` object, or its stream of `text_completion`
chunks ending with `data: [DONE]`.

Several prompts (a list of strings) are one chat call each, admitted in turn and run together under one session;
their choices are numbered as OpenAI's, `index` = prompt * n + choice, and `usage` counts each prompt once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from promptd.engine.engine import Run
from promptd.engine.generation import Generation
from promptd.engine.request import Done, GenerationResult, KeepAlive
from promptd.errors import InputError, PromptdError
from promptd.faces.chat.auth import authenticate
from promptd.faces.chat.completions import MAX_N, chat_call, finish_reason, merge_events, usage_body, with_fingerprint
from promptd.faces.chat.errors import chat_status, openai_body
from promptd.faces.chat.text_wire import DEFAULT_MAX_TOKENS, TextCompletionBody, prompts, text_params
from promptd.faces.chat.wire import ChatBody, ChatMessageIn, decode, optional_uuid
from promptd.faces.disconnect import unless_gone
from promptd.faces.mount import served_headers
from promptd.faces.streaming import EventStream
from promptd.timing import UPSTREAM_KEY
from promptd.types import TextDelta
from promptd.uuids import new_uuid

__all__ = ["text_completions"]

_encode = msgspec.json.Encoder().encode


async def text_completions(request: Request) -> Response:
    caller = await authenticate(request)
    raw = await request.body()
    body = decode(raw, TextCompletionBody)
    params = text_params(raw, body)
    texts = prompts(body.prompt)
    n = body.n or 1
    if len(texts) * n > MAX_N:
        raise InputError(f"the prompts times n must be at most {MAX_N} completions, got {len(texts) * n}", param="n")
    # several prompts are one session (and so one A/B arm): the one given, else one minted for them all
    session = optional_uuid(body.session_id, "session_id") or (new_uuid() if len(texts) > 1 else None)
    settings = caller.svc.settings
    keepalive = settings.ping_interval if body.stream else None
    runs: list[Run] = []
    calls = [chat_call(caller, _chat_body(body, text, session), params) for text in texts]
    origin = calls[0][1]
    try:
        for i, (call, each) in enumerate(calls):
            runs.append(await caller.svc.engine.generate(call, each, keepalive=keepalive if i == 0 else None))
    except BaseException:
        for started in runs:  # a later prompt refused (a limit, a budget): the earlier ones stop
            for g in started.generations:
                g.stop("another prompt could not start")
        raise
    generations = [g for run in runs for g in run.generations]
    head = {
        "id": "cmpl-" + generations[0].request.message_id.replace("-", ""),
        "object": "text_completion",
        "created": int(origin.created_at),
        "model": f"{origin.project}/{runs[0].model}",
        "session_id": origin.session_id,
    }
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _stream(generations, head, include_usage, n, commit_wait=settings.stream_commit_wait)
        return EventStream(events, hold=True)
    results = await unless_gone(request, _results(runs), *generations)  # a client that goes stops them
    request.scope[UPSTREAM_KEY] = max(r.upstream_s for r in results)
    for result in results:
        if result.error is not None:
            raise result.error
    head["model"] = f"{origin.project}/{results[0].model}"  # the model that answered (a fallback, maybe)
    choices = [
        {
            "text": r.answer,
            "index": i,
            "logprobs": None,
            "finish_reason": finish_reason(r),
            "completion_id": g.request.message_id,
        }
        for i, (g, r) in enumerate(zip(generations, results, strict=True))
    ]
    answer = {**head, "choices": choices, "usage": usage_body(results, n)}
    return Response(
        _encode(with_fingerprint(answer, results)), media_type="application/json", headers=served_headers(results[0])
    )


def _chat_body(body: TextCompletionBody, prompt: str, session: str | None) -> ChatBody:
    """The chat call one prompt is: the prompt as the user's message, OpenAI's legacy default of 16 tokens when
    `max_tokens` is not given, and no project tools."""
    return ChatBody(
        messages=[ChatMessageIn(role="user", content=prompt)],
        model=body.model,
        stop=body.stop,
        max_tokens=body.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=body.temperature,
        top_p=body.top_p,
        max_ttft_ms=body.max_ttft_ms,
        stream=body.stream,
        session_id=session,
        user=body.user,
        ab_campaign=body.ab_campaign,
        n=body.n,
        labels=body.labels,
        metadata=body.metadata,
        system_prompt_args=body.system_prompt_args,
        tags=body.tags,
        use_tools=False,
        store=body.store,
    )


async def _results(runs: list[Run]) -> list[GenerationResult]:
    """Every choice of every prompt, in order (blocking mode)."""
    if len(runs) == 1:
        return await runs[0].results()
    return [r for results in await asyncio.gather(*(run.results() for run in runs)) for r in results]


def _chunk(head: dict[str, Any], index: int, completion_id: str, text: str, finish: str | None) -> bytes:
    choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish, "completion_id": completion_id}
    return b"data: " + _encode({**head, "choices": [choice]}) + b"\n\n"


async def _stream(
    generations: list[Generation], head: dict[str, Any], include_usage: bool, n: int, *, commit_wait: float
) -> AsyncIterator[bytes]:
    """The chunks of a streamed text completion, committed as the chat face's are (faces/chat/completions.py):
    nothing is sent until the first text, or a keep-alive once `commit_wait` has passed, so an error before it
    is raised and answered with its real status; after it, an error is OpenAI's error object as the last event,
    and no `[DONE]`. Each choice ends with a chunk of empty text and its `finish_reason`. Output moderation holds
    a choice's text until it is checked (then sends it, or the operator's replacement)."""
    if include_usage:
        head["usage"] = None
    project = str(head["model"]).partition("/")[0]
    results: dict[int, GenerationResult] = {}
    failed: PromptdError | None = None
    committed = False
    started = generations[0].request.started
    held: dict[int, list[str]] = {i: [] for i, g in enumerate(generations) if g.request.output_check}
    try:
        async for i, event in merge_events(generations):
            cid = generations[i].request.message_id
            if isinstance(event, TextDelta):
                if i in held:
                    held[i].append(event.text)
                    continue
                if not committed:  # the head names the model that answers (a fallback, maybe)
                    head["model"] = f"{project}/{generations[i].began_on}"
                committed = True
                yield _chunk(head, i, cid, event.text, None)
            elif isinstance(event, KeepAlive):
                if committed or time.perf_counter() - started >= commit_wait:
                    committed = True
                    yield b": keep-alive\n\n"
            elif isinstance(event, Done):
                results[i] = result = event.result
                if result.error is not None:
                    failed = result.error
                    for g in generations:
                        g.stop("another choice failed")
                    if not committed:
                        raise failed  # nothing sent yet: the client gets the real status (EventStream)
                    yield b"data: " + _encode(openai_body(failed, chat_status(failed))) + b"\n\n"
                    return  # no [DONE]: the answer is not complete
                committed = True
                last = {**with_fingerprint(head, [result]), "model": f"{project}/{result.model}"}
                if i in held and (held[i] or result.replaced):
                    yield _chunk(last, i, cid, result.answer if result.replaced else "".join(held[i]), None)
                yield _chunk(last, i, cid, "", finish_reason(result))
        if include_usage:
            ordered = [results[i] for i in sorted(results)]
            usage = {**with_fingerprint(head, ordered), "choices": [], "usage": usage_body(ordered, n)}
            yield b"data: " + _encode(usage) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        if len(results) < len(generations) and failed is None:  # the client went away mid-stream
            for g in generations:
                g.stop("client disconnected")
