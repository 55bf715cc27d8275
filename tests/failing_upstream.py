"""A misbehaving OpenAI-compatible upstream, over real HTTP on loopback, for the failure suite.

It stands for the servers a gateway meets in production (OpenAI, vLLM, llama.cpp's server) when they fail:
each fault is what such a server, or the network in front of it, does. The requested model names the
behaviour (a per-model counter lets a behaviour change between calls); every answer is the three tokens
"Hello", " there", " friend":

    ok               three chunks, finish_reason, usage, [DONE]
    429-then-ok      429 with Retry-After: 1 on the first call, then ok
    429-bare         429 without Retry-After on the first call, then ok
    429-long         always 429 with Retry-After: 120
    500 502 503      always that status
    reset            closes the connection without answering
    slow-first       the first chunk after 3 s
    cut              two chunks, then the connection is dropped
    stall            two chunks, then nothing for 5 s
    malformed        a chunk that is not JSON between the first two (an otherwise healthy stream)
    malformed-run    two chunks, then three lines that are not JSON
    no-done          two chunks, then a clean end without finish_reason or [DONE]
    no-done-finished the whole answer with its finish_reason and usage, then a clean end without [DONE]
    context          400 context_length_exceeded
    filter           400 content_filter
    flap             fails (503) on odd calls, answers on even ones
    prefill-400      ok, but a 400 for a request ending with an assistant message (a server that cannot
                     continue a partial answer and refuses a prefill)
    ignore-max       40 tokens (" w0" ... " w39", 20 ms apart) whatever max_tokens says; unstreamed (`stream`
                     false) as one chat.completion with usage; `aborted` counts streams the client cut

A continuation request (`continue_final_message` with a final assistant message: vLLM's way, as a provider with
`continuation: continue_final_message` asks) is answered, whatever the behaviour, with the rest of the answer
after that prefill (a 400 if the prefill is not the answer's beginning): the fault struck once.

A `#tag` suffix ("slow-first#hedge") behaves the same but is a distinct deployment (its own circuit).
`hang_url` is a socket that accepts connections and never answers; `calls` counts requests per model and
`bodies` keeps each request's body.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FailingUpstream", "failing_upstream"]


ANSWER = ["Hello", " there", " friend"]
RUNAWAY = [f" w{i}" for i in range(40)]
USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}\n\n'


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
    bodies: defaultdict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    aborted: Counter[str] = field(default_factory=Counter)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        self.calls[body["model"]] += 1
        self.bodies[body["model"]].append(body)
        n = self.calls[body["model"]]
        model = body["model"].split("#")[0]  # "cut#b" behaves like "cut" but is another deployment
        last = body["messages"][-1]
        if body.get("continue_final_message") and last["role"] == "assistant":
            return await self._continue(request, last["content"])
        if model == "prefill-400" and last["role"] == "assistant":
            message = "the final message must be a user message (this server does not continue a prefill)"
            return web.json_response({"error": {"message": message}}, status=400)
        if model == "ignore-max":
            return await self._runaway(request, body)
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
        await resp.write(_chunk(ANSWER[0]))
        if model == "malformed":
            await resp.write(b"data: {oops\n\n")
        await resp.write(_chunk(ANSWER[1]))
        if model == "cut":
            assert request.transport is not None
            request.transport.close()
            return resp
        if model == "stall":
            await asyncio.sleep(5)
        if model == "malformed-run":
            await resp.write(b"data: {oops\n\ndata: not json\n\ndata: {]\n\n")
            return resp
        if model == "no-done":
            await resp.write_eof()
            return resp
        await resp.write(_chunk(ANSWER[2]))
        await resp.write(_chunk(None, "stop"))
        await resp.write(USAGE)
        if model != "no-done-finished":
            await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _continue(self, request: web.Request, prefill: str) -> web.StreamResponse:
        """The rest of the answer after `prefill`, as a server that continues a final assistant message does."""
        whole = "".join(ANSWER)
        if not whole.startswith(prefill):
            return web.json_response({"error": {"message": f"unexpected prefill {prefill!r}"}}, status=400)
        rest, at = [], 0
        for token in ANSWER:
            if at >= len(prefill):
                rest.append(token)
            at += len(token)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for token in rest:
            await resp.write(_chunk(token))
        await resp.write(_chunk(None, "stop"))
        usage = {"prompt_tokens": 6, "completion_tokens": len(rest)}
        await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _runaway(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        """An upstream that ignores max_tokens: 40 tokens, whatever was asked."""
        usage = {"prompt_tokens": 4, "completion_tokens": len(RUNAWAY)}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(RUNAWAY)}
            reply = {"id": "x", "object": "chat.completion", "usage": usage,
                     "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip
            return web.json_response(reply)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for token in RUNAWAY:
                await resp.write(_chunk(token))
                await asyncio.sleep(0.02)
            await resp.write(_chunk(None, "stop"))
            await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        except (ConnectionError, asyncio.CancelledError):
            self.aborted[body["model"]] += 1  # the client (promptd) closed the stream before its end
            raise
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
