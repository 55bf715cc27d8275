"""A fake OpenAI-compatible upstream over real HTTP: it stands for OpenAI, vLLM or any compatible server.

The requested `model` picks the behaviour, so one server covers every scenario:

    ok          streams "Hello from upstream" (3 chunks), usage, [DONE]; asked `stream: false`, answers the same
                in one application/json chat.completion
    tools       streams a tool call (get_weather {"city":"Paris"}) in two fragments
    rate-limit  429 with Retry-After: 2          rate-limit-bare  429 without Retry-After
    error-500   500                            context          400 context_length_exceeded
    filter      400 content_filter             bad              400 invalid_request_error
    cut         two chunks, then the stream ends without finish_reason or [DONE]
    malformed   one chunk, then a line that is not JSON, then the end (no finish_reason, no [DONE])
    garbled     the answer with one line that is not JSON in its middle
    garbage     one chunk, then three lines that are not JSON in a row
    stall       waits `stall_s` (default 5) before answering
    slow        a chunk every 0.2 s for 2 s; `outcomes` records whether it "completed" or was "aborted"
    no-usage    "Hello", finish_reason, [DONE]: no usage chunk
    no-done     the normal answer with finish_reason and usage, then a clean end without [DONE]
    split       the normal answer in 16-byte pieces with CRLF line ends (lines straddle reads)
    big         one 1 000 000-character content chunk (longer than aiohttp's readline limit, 512 KiB)
    linger      the normal answer and [DONE], then the body stays open `linger_s` (default 2) more
    odd         a chunk that is JSON but not a chunk's shape ({"choices": "nope"})
    error-chunk a 200 stream whose one chunk is an error object with code 400 (as vLLM sends them)
    whole       ignores stream=true: one application/json chat.completion with a tool call
    fingerprint the normal answer with `system_fingerprint: fp_test` in every chunk (and in the whole reply)
    logprobs    "Hello" and " there", each chunk with its token's logprobs beside its delta (as OpenAI sends them)

It also answers `/v1/embeddings` (a 4-dimensional vector per input, a token per word or token id),
`/v1/audio/speech` and `/v1/audio/transcriptions`.

Every request is kept in `requests` (headers, JSON body and, for chat, the client's port) for assertions.
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
FINGERPRINT = "fp_test"


def _answer() -> list[bytes]:
    """The normal answer: a keep-alive comment, "Hello from upstream" in three chunks, finish, usage, [DONE]."""
    return [
        b": keep-alive\n\n",
        *(_chunk(p) for p in ("Hello", " from", " upstream")),
        _chunk(finish="stop"),
        USAGE,
        DONE,
    ]


WHOLE = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}


OK_WHOLE = {
    "id": "chatcmpl-3",
    "object": "chat.completion",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello from upstream"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}


@dataclass
class FakeUpstream:
    requests: list[dict[str, Any]] = field(default_factory=list)
    stall_s: float = 5.0
    linger_s: float = 2.0
    url: str = ""
    outcomes: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcribe, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/rerank", self.rerank, methods=["POST"]),
            ]
        )

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        port = request.client.port if request.client else None  # the client's side of the connection
        self.requests.append({"headers": dict(request.headers), "body": body, "client_port": port})
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
        if model == "whole":
            return JSONResponse(WHOLE)
        if model == "ok" and body.get("stream") is False:
            return JSONResponse(OK_WHOLE)
        if model == "fingerprint" and body.get("stream") is False:
            return JSONResponse({**OK_WHOLE, "system_fingerprint": FINGERPRINT})
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
        if model == "garbled":  # one unreadable chunk in an otherwise healthy stream
            yield _chunk("Hello")
            yield b"data: {not json\n\n"
            yield _chunk(" again", finish="stop")
            yield USAGE
            yield DONE
            return
        if model == "garbage":  # unreadable chunks in a row
            yield _chunk("Hello")
            for _ in range(3):
                yield b"data: {not json\n\n"
            yield DONE
            return
        if model == "slow":
            outcome = "aborted"
            try:
                for i in range(10):
                    yield _chunk(f" {i}")
                    await asyncio.sleep(0.2)
                yield _chunk(finish="stop")
                yield DONE
                outcome = "completed"
            finally:
                self.outcomes.append(outcome)
            return
        if model == "no-usage":
            yield _chunk("Hello")
            yield _chunk(finish="stop")
            yield DONE
            return
        if model == "big":
            yield _chunk("x" * 1_000_000)
            yield _chunk(finish="stop")
            yield USAGE
            yield DONE
            return
        if model == "error-chunk":
            error = {"object": "error", "type": "BadRequestError", "code": 400}
            error["message"] = "This model's maximum context length is 4096 tokens. However, you requested 5000"
            yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
            return
        if model == "odd":
            yield b'data: {"choices": "nope"}\n\n'
            return
        if model == "split":
            answer = b"".join(_answer()).replace(b"\n", b"\r\n")
            for i in range(0, len(answer), 16):
                yield answer[i : i + 16]
                await asyncio.sleep(0.001)  # one piece per read, as far as loopback allows
            return
        if model == "logprobs":
            for token, logprob in (("Hello", -0.25), (" there", -1.5)):
                entry = {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}
                choice = {
                    "index": 0,
                    "delta": {"content": token},
                    "logprobs": {"content": [entry]},
                    "finish_reason": None,
                }
                yield b"data: " + json.dumps({"id": "chatcmpl-1", "choices": [choice]}).encode() + b"\n\n"
            yield _chunk(finish="stop")
            yield USAGE
            yield DONE
            return
        if model == "fingerprint":
            for piece in _answer():
                marked = b'data: {"system_fingerprint":"' + FINGERPRINT.encode() + b'",'
                yield piece.replace(b"data: {", marked, 1) if piece != DONE else piece
            return
        for piece in _answer():
            if model == "no-done" and piece == DONE:
                return
            yield piece
        if model == "linger":
            await asyncio.sleep(self.linger_s)

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

    async def embeddings(self, request: Request) -> Response:
        """One 4-dimensional vector per input, and usage: a token per word, or per token id (arrays of them)."""
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [len(t), 1.0, 0.0, -1.0]} for i, t in enumerate(texts)]
        tokens = sum(len(t) if isinstance(t, list) else len(t.split()) for t in texts)
        return JSONResponse(
            {"object": "list", "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        )

    async def speech(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        return Response(b"ID3fake-mp3:" + body["input"].encode(), media_type="audio/mpeg")

    async def rerank(self, request: Request) -> Response:
        """A reranker in the Jina/Cohere shape: results best first, each with the document's index; the score
        is the share of the query's words in the document. The model `broken` answers a malformed reply."""
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        if body["model"] == "broken":
            return JSONResponse({"data": []})
        words = set(body["query"].lower().split())
        scored = [
            {"index": i, "relevance_score": len(words & set(d.lower().split())) / len(words)}
            for i, d in enumerate(body["documents"])
        ]
        tokens = sum(len(t.split()) for t in [body["query"], *body["documents"]])
        return JSONResponse(
            {
                "results": sorted(scored, key=lambda r: -r["relevance_score"])[: body["top_n"]],
                "usage": {"total_tokens": tokens},  # as Jina and vLLM report it
            }
        )


@contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    with serve_in_thread(upstream.app()) as url:
        upstream.url = url + "/v1"
        yield upstream
