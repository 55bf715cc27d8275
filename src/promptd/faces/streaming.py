"""A text/event-stream response that notices a client disconnect at once, even while no byte is being sent.

Starlette's StreamingResponse (with ASGI spec 2.4 servers) only finds out at the next write; a stream waiting
for a slow first token would keep the upstream call running. Here the body and `receive()` race: when the
client goes, the body task is cancelled, which runs the body generator's `finally` (the faces stop their
generation there).

With `hold=True` the response head waits for the body's first chunk: nothing is committed until then, so
an error the body raises before its first chunk leaves this response's `__call__` and is answered by the
face's error handler with its real HTTP status (and Retry-After), as OpenAI does. The face decides when to
commit without a token (the chat face sends a keep-alive comment once `stream_commit_wait` has passed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["EventStream"]


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(
        self, body: AsyncIterator[bytes], *, headers: Mapping[str, str] | None = None, hold: bool = False
    ) -> None:
        # not Response.__init__: there is no body to render, only a stream to relay
        self.status_code = 200
        self.background = None
        self.stream = body
        self.hold = hold
        self.extra_headers = {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # one turn of the loop first: the generation this stream relays, started just before, sends its
        # upstream request before the stream sets itself up (the first token is nearer by that much)
        await asyncio.sleep(0)
        body = asyncio.create_task(self._send_body(send))
        gone = asyncio.create_task(self._wait_for_disconnect(receive))
        try:
            await asyncio.wait({body, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (body, gone):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await body
            with contextlib.suppress(asyncio.CancelledError):
                await gone

    async def _send_body(self, send: Send) -> None:
        raw = [(b"content-type", b"text/event-stream; charset=utf-8")]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.extra_headers.items()]
        try:
            first = b""
            if self.hold:  # an exception here leaves __call__ before any byte: the face answers it
                first = await anext(self.stream, b"")
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in self.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.stream.aclose()  # type: ignore[attr-defined]

    @staticmethod
    async def _wait_for_disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
