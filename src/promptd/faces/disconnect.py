"""A blocking request whose client goes away stops its generation, as a stream does (faces/streaming.py).

While a blocking handler awaits the answer (from WATCH_AFTER_S on: a quicker answer needs no watcher), one
small task waits on `receive()` for `http.disconnect` (the body has been read, so nothing else arrives on
it). When the client goes first, the generations are stopped with "client disconnected": the upstream call is
cancelled and the record says so (status stopped). The handler still gets the (partial) result; the answer
it then sends goes nowhere.
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


#: how long a blocking request runs before its disconnect watcher starts: most answer sooner and never pay for
#: the watcher task; a client gone before then is noticed this much later
WATCH_AFTER_S = 0.25


async def unless_gone(request: Request, work: Awaitable[T], *generations: Stoppable) -> T:
    """`await work`, stopping `generations` if the client disconnects meanwhile."""
    watcher: asyncio.Future[None] | None = None

    def gone(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            for generation in generations:
                generation.stop("client disconnected")

    def watch() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(_disconnect(request.receive))
        watcher.add_done_callback(gone)

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, watch)
    try:
        return await work
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
