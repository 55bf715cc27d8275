"""A blocking request whose client goes away stops its generation, as a stream does (faces/streaming.py).

While a blocking handler awaits the answer, one small task waits on `receive()` for `http.disconnect` (the
body has been read, so nothing else arrives on it). When the client goes first, the generations are stopped
with "client disconnected": the upstream call is cancelled and the record says so (status stopped). The
handler still gets the (partial) result; the answer it then sends goes nowhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from starlette.requests import Request
from starlette.types import Receive

__all__ = ["unless_gone"]

T = TypeVar("T")


class Stoppable(Protocol):
    def stop(self, reason: str = ...) -> None: ...


async def unless_gone(request: Request, work: Awaitable[T], *generations: Stoppable) -> T:
    """`await work`, stopping `generations` if the client disconnects meanwhile."""
    watcher = asyncio.ensure_future(_disconnect(request.receive))

    def gone(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            for generation in generations:
                generation.stop("client disconnected")

    watcher.add_done_callback(gone)
    try:
        return await work
    finally:
        watcher.cancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
