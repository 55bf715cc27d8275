"""The Server-Timing header on every response: promptd's own time and the upstream's, in milliseconds.

Handlers that called an upstream put the seconds spent there in `scope["promptd.upstream_s"]`; the header is
then `gateway;dur=…, upstream;dur=…`. Streams send their headers before the upstream has finished, so they
report `gateway;dur=…` up to the first byte.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["UPSTREAM_KEY", "ServerTiming", "header_value"]

UPSTREAM_KEY = "promptd.upstream_s"


def header_value(scope: Scope, start: float) -> bytes:
    """The header for a response starting now, of a request that arrived at `start` (perf_counter)."""
    total = (time.perf_counter() - start) * 1000
    upstream = scope.get(UPSTREAM_KEY)
    if upstream is None:
        return b"gateway;dur=%.2f" % total
    up = upstream * 1000
    return b"gateway;dur=%.2f, upstream;dur=%.2f" % (max(0.0, total - up), up)


class ServerTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"server-timing", header_value(scope, start))]
            await send(message)

        await self.app(scope, receive, timed)
