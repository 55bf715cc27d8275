"""Pending parts: content of a call's prompt that needs the network or a model to exist (a remote image inlined,
a remote document's text, an audio file's transcript), or to be vetted (a remote URL passed on to the provider,
which the URL guard resolves: promptd/urlguard.py). A face checks what it can without them (the URL's scheme,
the file's type, its upload) and hands the engine the part as a placeholder with a way to make it; the engine
makes it only for a call it admitted, whose model can read it, and whose input moderation did not answer a
preset (`Engine._admitted`), so a refused request fetches and resolves nothing and calls no model, and a prompt
that grew is then reserved for again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptd.types import ContentPart

if TYPE_CHECKING:
    from promptd.engine.call import Origin

__all__ = ["CONCURRENCY", "Make", "Pending", "make_all"]

CONCURRENCY = 4  # parts of one call made at a time

#: makes a pending part: given the placeholder and the origin of calls made for the call, what replaces it
Make = Callable[[ContentPart, "Origin"], Awaitable[ContentPart]]


@dataclass(slots=True)
class Pending:
    """`part` stands in the call's prompt (an image part with its remote URL, an empty text part) until
    `make(part, origin)` gives what replaces its content. `origin` is that of the calls made for the call (a
    transcript: `for_call`); what `make` raises (the face's own InputError, a ProviderError) fails the call."""

    part: ContentPart
    make: Make

    async def fill(self, origin: Origin) -> bool:
        """Make the part; whether it changed (a vetted URL is kept as it was)."""
        made = await self.make(self.part, origin)
        if made is self.part:
            return False
        self.part.clear()  # in place: the prompt's messages hold this very part
        self.part.update(made)
        return True


async def make_all(pending: Sequence[Pending], origin: Origin) -> bool:
    """Fill every pending part, CONCURRENCY at a time; the first to fail cancels the others and is raised.
    Whether any part changed (the prompt is then rendered and reserved for again)."""
    if len(pending) == 1:
        return await pending[0].fill(origin)
    slots = asyncio.Semaphore(CONCURRENCY)
    changed = False

    async def one(p: Pending) -> None:
        nonlocal changed
        async with slots:
            changed = await p.fill(origin) or changed

    try:
        async with asyncio.TaskGroup() as group:
            for p in pending:
                group.create_task(one(p))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return changed
