"""A misbehaving OpenAI-compatible upstream, over real HTTP on loopback, for the failure suite.

The requested model names the behaviour (a per-model counter lets a behaviour change between calls):

    ok             three chunks, finish_reason, usage, [DONE]
    429-then-ok    429 with Retry-After: 1 on the first call, then ok
    429-bare       429 without Retry-After on the first call, then ok
    429-long       always 429 with Retry-After: 120
    500 502 503    always that status
    reset          closes the connection without answering
    slow-first     the first chunk after 3 s
    cut            two chunks, then the connection is dropped
    stall          two chunks, then nothing for 5 s
    malformed      one chunk, then a line that is not JSON
    no-done        two chunks, then a clean end without finish_reason or [DONE]
    context        400 context_length_exceeded
    filter         400 content_filter
    flap           fails (503) on odd calls, answers on even ones

A `#tag` suffix ("slow-first#hedge") behaves the same but is a distinct deployment (its own circuit).
`hang_url` is a socket that accepts connections and never answers; `calls` counts requests per model.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FailingUpstream", "failing_upstream"]


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    body = {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@dataclass
class FailingUpstream:
    url: str = ""
    hang_url: str = ""
    calls: Counter[str] = field(default_factory=Counter)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        self.calls[body["model"]] += 1
        n = self.calls[body["model"]]
        model = body["model"].split("#")[0]  # "cut#b" behaves like "cut" but is another deployment
        status = {"500": 500, "502": 502, "503": 503}.get(model)
        if model == "flap" and n % 2 == 1:
            status = 503
        if status:
            return web.json_response({"error": {"message": f"upstream {status}"}}, status=status)
        if (model in ("429-then-ok", "429-bare") and n == 1) or model == "429-long":
            headers = {"Retry-After": "120" if model == "429-long" else "1"} if model != "429-bare" else {}
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers=headers)
        if model in ("context", "filter"):
            code = "context_length_exceeded" if model == "context" else "content_filter"
            return web.json_response({"error": {"message": f"{code} here", "code": code}}, status=400)
        if model == "reset":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(1)
            raise ConnectionResetError
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if model == "slow-first":
            await asyncio.sleep(3)
        await resp.write(_chunk("Hello"))
        await resp.write(_chunk(" there"))
        if model == "cut":
            assert request.transport is not None
            request.transport.close()
            return resp
        if model == "stall":
            await asyncio.sleep(5)
        if model == "malformed":
            await resp.write(b"data: {oops\n\n")
            return resp
        if model == "no-done":
            await resp.write_eof()
            return resp
        await resp.write(_chunk(" friend"))
        await resp.write(_chunk(None, "stop"))
        await resp.write(b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        return resp


@contextmanager
def failing_upstream() -> Iterator[FailingUpstream]:
    upstream = FailingUpstream()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.chat)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)  # accepts (the kernel does), never answers
    upstream.url = f"http://127.0.0.1:{port}/v1"
    upstream.hang_url = f"http://127.0.0.1:{hang.getsockname()[1]}/v1"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        hang.close()
