"""A deterministic provider: it stands in for a real model in exact-output and failure tests.

It answers `reply` (or "Echo: " + the last user message) one word per chunk, after `first_token_ms`, with
`chunk_delay_ms` between chunks. Tokens are counted as whitespace-separated words.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator

from promptd.catalog.schema import FakeProviderConfig
from promptd.errors import ProviderBadRequest, ProviderError, ProviderRateLimited, ProviderTimeout, ProviderUnavailable
from promptd.types import (
    Finish,
    Message,
    ProviderCall,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    last_user_text,
)

__all__ = ["FakeProvider", "count_words"]

FAILURES: dict[str, ProviderError] = {
    "unavailable": ProviderUnavailable("fake provider: unavailable (configured to fail)"),
    "rate_limited": ProviderRateLimited("fake provider: rate limited (configured to fail)", retry_after=1),
    "timeout": ProviderTimeout("fake provider: timed out (configured to fail)"),
    "bad_request": ProviderBadRequest("fake provider: bad request (configured to fail)"),
}


def count_words(messages: list[Message]) -> int:
    total = 0
    for m in messages:
        if isinstance(m.content, str):
            total += len(m.content.split())
        else:
            total += sum(len(str(p.get("text", "")).split()) or 1 for p in m.content)
    return total


class FakeProvider:
    accepts = None  # it stands for an OpenAI-compatible model in tests: every parameter is taken (and ignored)

    def __init__(self, name: str, config: FakeProviderConfig) -> None:
        self.name = name
        self.config = config

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        cfg = self.config
        if cfg.fail is not None:
            raise FAILURES[cfg.fail]
        if cfg.first_token_ms:
            await asyncio.sleep(cfg.first_token_ms / 1000)
        if call.tools and cfg.tool_arguments is not None:
            name = call.tools[0]["function"]["name"]
            yield ToolCallDelta(0, "call_fake_0", name, cfg.tool_arguments)
            yield Finish("tool_calls", Usage(prompt_tokens=count_words(call.messages), completion_tokens=1))
            return
        reply = cfg.reply if cfg.reply is not None else "Echo: " + (last_user_text(call.messages) or "")
        words = reply.split(" ")
        limit = call.max_tokens if call.max_tokens is not None else len(words)
        sent = 0
        for i, word in enumerate(words[:limit]):
            if i and cfg.chunk_delay_ms:
                await asyncio.sleep(cfg.chunk_delay_ms / 1000)
            yield TextDelta(word if i == 0 else " " + word)
            sent += 1
        reason = "length" if limit < len(words) else "stop"
        yield Finish(reason, Usage(prompt_tokens=count_words(call.messages), completion_tokens=sent))

    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        """A deterministic 8-dimensional unit vector per text (from its SHA-256)."""
        vectors = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            raw = [b - 127.5 for b in digest[:8]]
            norm = math.sqrt(sum(v * v for v in raw)) or 1.0
            vectors.append([v / norm for v in raw])
        return vectors, sum(len(t.split()) for t in texts)

    async def rerank(self, *, model: str, query: str, documents: list[str]) -> tuple[list[float], int]:
        """The share of the query's words each document contains (a deterministic relevance in [0, 1]), and the
        words read as tokens."""
        words = set(query.lower().split())
        scores = [len(words & set(d.lower().split())) / (len(words) or 1) for d in documents]
        return scores, len(query.split()) + sum(len(d.split()) for d in documents)

    async def aclose(self) -> None:
        return None
