"""Hedged requests: after `delay` seconds without a first token from the primary, start the backup too, and
keep whichever produces a first token first; the other is cancelled (and so its upstream call closed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from promptd.types import TextDelta, ToolCallDelta

__all__ = ["Hedge"]

_END = object()


class Hedge:
    """Races two event streams; `winner` is 0 (primary) or 1 (backup) once one has produced a token."""

    def __init__(self, primary: AsyncIterator[Any], backup: AsyncIterator[Any], delay: float) -> None:
        self.streams = [primary, backup]
        self.delay = delay
        self.winner: int | None = None
        self.started_backup = False
        self.errors: list[BaseException | None] = [None, None]

    async def _pump(self, i: int, queue: asyncio.Queue[tuple[int, Any]]) -> None:
        try:
            async for event in self.streams[i]:
                await queue.put((i, event))
        except Exception as exc:
            self.errors[i] = exc
        finally:
            await queue.put((i, _END))

    async def events(self) -> AsyncIterator[Any]:
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        tasks = [asyncio.create_task(self._pump(0, queue))]
        buffered: list[list[Any]] = [[], []]
        ended = [False, False]
        try:
            while self.winner is None:
                if not self.started_backup:
                    try:
                        i, event = await asyncio.wait_for(queue.get(), self.delay)
                    except TimeoutError:
                        self.started_backup = True
                        tasks.append(asyncio.create_task(self._pump(1, queue)))
                        continue
                else:
                    i, event = await queue.get()
                if event is _END:
                    ended[i] = True
                    failed = self.errors[i] is not None
                    if not failed:  # finished without a token (an empty answer): it still answered first
                        self.winner = i
                    elif not self.started_backup or all(ended[: len(tasks)]):
                        raise self.errors[i]  # type: ignore[misc]
                    continue
                buffered[i].append(event)
                if isinstance(event, TextDelta | ToolCallDelta):
                    self.winner = i
            loser = 1 - self.winner
            if loser < len(tasks):
                tasks[loser].cancel()
            for event in buffered[self.winner]:
                yield event
            while not ended[self.winner]:
                i, event = await queue.get()
                if i != self.winner:
                    continue
                if event is _END:
                    if self.errors[i] is not None:
                        raise self.errors[i]  # type: ignore[misc]
                    return
                yield event
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for stream in self.streams:
                await stream.aclose()  # type: ignore[attr-defined]
