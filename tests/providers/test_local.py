"""The local provider on the real embedded model (SmolLM2 through llama.cpp): structure, not wording."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from promptd.catalog.schema import LocalProviderConfig
from promptd.errors import ProviderUnavailable
from promptd.providers.local import LocalProvider, default_model_path
from promptd.types import Finish, Message, ProviderCall, ProviderEvent, TextDelta

pytestmark = pytest.mark.model


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local() -> AsyncIterator[LocalProvider]:
    provider = LocalProvider("local", LocalProviderConfig(kind="local", slots=3))
    await provider.start()
    yield provider
    await provider.aclose()


def call(text: str, max_tokens: int) -> ProviderCall:
    return ProviderCall(model="smollm2", messages=[Message("user", text)], max_tokens=max_tokens, temperature=0)


async def collect(provider: LocalProvider, c: ProviderCall) -> list[ProviderEvent]:
    return [e async for e in provider.stream(c)]


def test_the_model_ships_with_the_package() -> None:
    path = default_model_path()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.asyncio(loop_scope="module")
async def test_deltas_then_exactly_one_finish_with_usage(local: LocalProvider) -> None:
    events = await collect(local, call("Name a fruit.", 5))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert deltas and isinstance(events[-1], Finish) and sum(isinstance(e, Finish) for e in events) == 1
    finish = events[-1]
    assert finish.reason == "length" and finish.usage is not None
    assert finish.usage.completion_tokens == 5 and finish.usage.prompt_tokens > 0
    assert abs(len(deltas) - 5) <= 1


@pytest.mark.asyncio(loop_scope="module")
async def test_prompt_tokens_are_counted_like_the_model_counts_them(local: LocalProvider) -> None:
    messages = [Message("user", "Write a short poem about the sea.")]
    events = await collect(local, ProviderCall(model="m", messages=messages, max_tokens=2))
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.usage is not None
    assert await local.count_prompt_tokens(messages) == finish.usage.prompt_tokens


@pytest.mark.asyncio(loop_scope="module")
async def test_closing_the_stream_stops_generation_and_frees_the_slot(local: LocalProvider) -> None:
    streams = [local.stream(call("Tell a very long story.", 400)) for _ in range(3)]  # every slot busy
    for s in streams:
        assert isinstance(await s.__anext__(), TextDelta)  # type: ignore[attr-defined]
    for s in streams:
        await s.aclose()  # type: ignore[attr-defined]
    # had the three 400-token generations kept running, this would queue behind them
    events = await asyncio.wait_for(collect(local, call("Say hi.", 3)), timeout=60)
    assert isinstance(events[-1], Finish)


@pytest.mark.asyncio(loop_scope="module")
async def test_concurrent_streams_all_complete(local: LocalProvider) -> None:
    results = await asyncio.gather(*(collect(local, call(f"Count to {n}.", 8)) for n in range(3)))
    assert all(isinstance(r[-1], Finish) for r in results)


async def test_a_missing_model_file_is_reported_as_unavailable() -> None:
    provider = LocalProvider("x", LocalProviderConfig(kind="local", model_path="/nonexistent/model.gguf"))
    with pytest.raises(ProviderUnavailable, match="does not exist"):
        await collect(provider, call("hi", 1))
    await provider.aclose()
