"""The Server-Timing header on every response: promptd's own time and the upstream's, in milliseconds.

Handlers that called an upstream put the seconds spent there in `scope["promptd.upstream_s"]`; the header is
then `gateway;dur=…, upstream;dur=…`. Streams send their headers before the upstream has finished, so they
report `gateway;dur=…` up to the first byte.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["UPSTREAM_KEY", "ServerTiming"]

UPSTREAM_KEY = "promptd.upstream_s"


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
                total = (time.perf_counter() - start) * 1000
                upstream = scope.get(UPSTREAM_KEY)
                if upstream is None:
                    value = f"gateway;dur={total:.2f}"
                else:
                    up = upstream * 1000
                    value = f"gateway;dur={max(0.0, total - up):.2f}, upstream;dur={up:.2f}"
                message["headers"] = [*message.get("headers", []), (b"server-timing", value.encode())]
            await send(message)

        await self.app(scope, receive, timed)
