"""A fake OpenAI-compatible upstream over real HTTP: it stands for OpenAI, vLLM or any compatible server.

The requested `model` picks the behaviour, so one server covers every scenario:

    ok          streams "Hello from upstream" (3 chunks), usage, [DONE]
    tools       streams a tool call (get_weather {"city":"Paris"}) in two fragments
    rate-limit  429 with Retry-After: 2          rate-limit-bare  429 without Retry-After
    error-500   500                            context          400 context_length_exceeded
    filter      400 content_filter             bad              400 invalid_request_error
    cut         two chunks, then the stream ends without finish_reason or [DONE]
    malformed   one chunk, then a line that is not JSON
    stall       waits `stall_s` (default 5) before answering
    slow        a chunk every 0.2 s for 2 s

Every request is kept in `requests` (headers and JSON body) for assertions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.serving import serve_in_thread

__all__ = ["FakeUpstream", "fake_upstream"]


def _chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> bytes:
    if content is not None:
        delta["content"] = content
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


USAGE = b'data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
DONE = b"data: [DONE]\n\n"


@dataclass
class FakeUpstream:
    requests: list[dict[str, Any]] = field(default_factory=list)
    stall_s: float = 5.0
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcribe, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
            ]
        )

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        model = body["model"]
        errors = {
            "rate-limit": (429, "rate_limit_exceeded", {"Retry-After": "2"}),
            "rate-limit-bare": (429, "rate_limit_exceeded", {}),
            "error-500": (500, "server_error", {}),
            "context": (400, "context_length_exceeded", {}),
            "filter": (400, "content_filter", {}),
            "bad": (400, "invalid_request_error", {}),
        }
        if model in errors:
            status, code, headers = errors[model]
            message = {"context": "This model's maximum context length is 8192 tokens"}.get(model, f"{code} here")
            return JSONResponse({"error": {"message": message, "code": code}}, status_code=status, headers=headers)
        return StreamingResponse(self._stream(model), media_type="text/event-stream")

    async def _stream(self, model: str) -> AsyncIterator[bytes]:
        if model == "stall":
            await asyncio.sleep(self.stall_s)
        if model == "tools":
            yield _chunk(
                role="assistant",
                tool_calls=[
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            )
            yield _chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}])
            yield _chunk(finish="tool_calls")
            yield USAGE
            yield DONE
            return
        if model == "cut":
            yield _chunk("Hello")
            yield _chunk(" from")
            return
        if model == "malformed":
            yield _chunk("Hello")
            yield b"data: {not json\n\n"
            return
        if model == "slow":
            for i in range(10):
                yield _chunk(f" {i}")
                await asyncio.sleep(0.2)
            yield _chunk(finish="stop")
            yield DONE
            return
        yield b": keep-alive\n\n"
        for piece in ("Hello", " from", " upstream"):
            yield _chunk(piece)
        yield _chunk(finish="stop")
        yield USAGE
        yield DONE

    async def transcribe(self, request: Request) -> Response:
        async with request.form() as form:
            upload: Any = form["file"]
            data = await upload.read()
            self.requests.append(
                {
                    "headers": dict(request.headers),
                    "model": form["model"],
                    "size": len(data),
                    "filename": upload.filename,
                }
            )
        return JSONResponse({"text": f"transcribed {len(data)} bytes of {upload.filename}"})

    async def speech(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        return Response(b"ID3fake-mp3:" + body["input"].encode(), media_type="audio/mpeg")


@contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    with serve_in_thread(upstream.app()) as url:
        upstream.url = url + "/v1"
        yield upstream
