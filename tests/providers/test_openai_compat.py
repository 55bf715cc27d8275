"""The OpenAI-compatible adapter against a real HTTP upstream (tests/upstream.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from promptd.catalog.schema import OpenAIProviderConfig, Timeouts
from promptd.errors import ProviderBadRequest, ProviderError, ProviderRateLimited, ProviderTimeout, ProviderUnavailable
from promptd.providers.http import parse_retry_after
from promptd.providers.openai_compat import OpenAICompatProvider
from promptd.types import Finish, Message, ProviderCall, ProviderEvent, TextDelta, ToolCallDelta, Usage
from tests.serving import free_port
from tests.upstream import FakeUpstream, fake_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as up:
        yield up


@pytest.fixture
async def provider(upstream: FakeUpstream) -> AsyncIterator[OpenAICompatProvider]:
    cfg = OpenAIProviderConfig(
        kind="openai", base_url=upstream.url, api_key="sk-test", timeout=Timeouts(connect=2, read=0.5, total=10)
    )
    p = OpenAICompatProvider("up", cfg)
    yield p
    await p.aclose()


def call(model: str, **kw: object) -> ProviderCall:
    return ProviderCall(model=model, messages=[Message("user", "hi")], **kw)  # type: ignore[arg-type]


async def collect(p: OpenAICompatProvider, c: ProviderCall) -> list[ProviderEvent]:
    return [e async for e in p.stream(c)]


async def test_streams_text_then_one_finish_with_usage(provider: OpenAICompatProvider, upstream: FakeUpstream) -> None:
    events = await collect(provider, call("ok", max_tokens=5, temperature=0.2))
    assert events == [
        TextDelta("Hello"),
        TextDelta(" from"),
        TextDelta(" upstream"),
        Finish("stop", Usage(prompt_tokens=7, completion_tokens=3)),
    ]
    sent = upstream.requests[-1]
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    assert sent["body"]["model"] == "ok" and sent["body"]["max_tokens"] == 5 and sent["body"]["stream"] is True
    assert sent["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert "top_p" not in sent["body"]  # unset parameters are not sent


async def test_tool_calls_stream_as_fragments(provider: OpenAICompatProvider) -> None:
    events = await collect(provider, call("tools"))
    assert events[:2] == [
        ToolCallDelta(0, "call_1", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city":"Paris"}'),
    ]
    assert events[-1] == Finish("tool_calls", Usage(7, 3))


async def test_429_is_rate_limited_with_retry_after(provider: OpenAICompatProvider) -> None:
    with pytest.raises(ProviderRateLimited) as info:
        await collect(provider, call("rate-limit"))
    assert info.value.retry_after == 2.0
    with pytest.raises(ProviderRateLimited) as bare:
        await collect(provider, call("rate-limit-bare"))
    assert bare.value.retry_after is None


@pytest.mark.parametrize(
    ("model", "error", "code"),
    [
        ("error-500", ProviderUnavailable, "provider_unavailable"),
        ("context", ProviderBadRequest, "context_length_exceeded"),
        ("filter", ProviderBadRequest, "content_filter"),
        ("bad", ProviderBadRequest, "provider_bad_request"),
    ],
)
async def test_http_errors_are_translated(provider: OpenAICompatProvider, model: str, error: type, code: str) -> None:
    with pytest.raises(error) as info:
        await collect(provider, call(model))
    assert info.value.code == code
    assert "upstream answered" in info.value.message


async def test_a_stream_cut_before_the_end_is_a_failure_not_a_success(provider: OpenAICompatProvider) -> None:
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderUnavailable, match="ended before"):
        async for e in provider.stream(call("cut")):
            seen.append(e)
    assert seen == [TextDelta("Hello"), TextDelta(" from")]
    assert not any(isinstance(e, Finish) for e in seen)


async def test_a_malformed_chunk_is_a_provider_error(provider: OpenAICompatProvider) -> None:
    with pytest.raises(ProviderError, match="malformed"):
        await collect(provider, call("malformed"))


async def test_no_first_byte_within_the_read_timeout_is_a_timeout(provider: OpenAICompatProvider) -> None:
    with pytest.raises(ProviderTimeout):
        await collect(provider, call("stall"))


async def test_a_refused_connection_is_unavailable() -> None:
    cfg = OpenAIProviderConfig(kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    p = OpenAICompatProvider("down", cfg)
    try:
        with pytest.raises(ProviderUnavailable):
            await collect(p, call("ok"))
    finally:
        await p.aclose()


async def test_closing_the_stream_early_closes_the_upstream_call(provider: OpenAICompatProvider) -> None:
    stream = provider.stream(call("slow"))
    first = await stream.__anext__()  # type: ignore[attr-defined]
    assert first == TextDelta(" 0")
    await stream.aclose()  # type: ignore[attr-defined]
    assert await collect(provider, call("ok"))  # the pool is still usable


async def test_speech_endpoints(provider: OpenAICompatProvider, upstream: FakeUpstream) -> None:
    text = await provider.transcribe(model="whisper-1", filename="a.wav", data=b"RIFF1234", mime_type="audio/wav")
    assert text == "transcribed 8 bytes of a.wav"
    assert upstream.requests[-1]["model"] == "whisper-1"
    audio, mime = await provider.speak(model="tts-1", text="hello", voice="nova")
    assert audio == b"ID3fake-mp3:hello" and mime == "audio/mpeg"
    assert upstream.requests[-1]["body"] == {"model": "tts-1", "input": "hello", "voice": "nova"}


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
