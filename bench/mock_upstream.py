"""A mock OpenAI-compatible upstream for benchmarks: configurable time to first token, gap and token count.

    python bench/mock_upstream.py --port 9100 --ttft-ms 20 --gap-ms 0 --tokens 16

Run as its own process, so the gateway and the load generator do not share its event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web


def make_app(ttft_ms: float, gap_ms: float, tokens: int) -> web.Application:
    chunk = (
        "data: "
        + json.dumps(
            {
                "id": "b",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}],
            }
        )
        + "\n\n"
    ).encode()
    tail = (
        "data: "
        + json.dumps({"id": "b", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        + "\n\ndata: "
        + json.dumps({"id": "b", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": tokens}})
        + "\n\ndata: [DONE]\n\n"
    ).encode()

    whole = json.dumps(
        {
            "id": "b",
            "object": "chat.completion",
            "model": "bench",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": " tok" * tokens}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens},
        }
    )

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):  # a non-streaming client gets the whole answer once it is "generated"
            await asyncio.sleep((ttft_ms + gap_ms * max(0, tokens - 1)) / 1000)
            return web.Response(text=whole, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if ttft_ms:
            await asyncio.sleep(ttft_ms / 1000)
        for i in range(tokens):
            if i and gap_ms:
                await asyncio.sleep(gap_ms / 1000)
            await resp.write(chunk)
        await resp.write(tail)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--ttft-ms", type=float, default=20)
    p.add_argument("--gap-ms", type=float, default=0)
    p.add_argument("--tokens", type=int, default=16)
    a = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(a.ttft_ms, a.gap_ms, a.tokens), host="127.0.0.1", port=a.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
