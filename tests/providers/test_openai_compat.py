"""The OpenAI-compatible adapter against a real HTTP upstream on loopback (tests/upstream.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from promptd.catalog.schema import OpenAIProviderConfig, Timeouts
from promptd.errors import ProviderBadRequest, ProviderError, ProviderRateLimited, ProviderTimeout, ProviderUnavailable
from promptd.providers.base import Provider, SpeechProvider
from promptd.providers.http import parse_retry_after
from promptd.providers.openai_compat import OpenAICompatProvider
from promptd.providers.openai_wire import ChunkReader
from promptd.types import Finish, Malformed, Message, ProviderCall, ProviderEvent, TextDelta, ToolCallDelta, Usage
from tests.serving import free_port
from tests.upstream import FakeUpstream, fake_upstream

ANSWER = [
    TextDelta("Hello"),
    TextDelta(" from"),
    TextDelta(" upstream"),
    Finish("stop", Usage(prompt_tokens=7, completion_tokens=3)),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as up:
        yield up


def make(upstream: FakeUpstream, **kw: Any) -> OpenAICompatProvider:
    cfg: dict[str, Any] = {"kind": "openai", "base_url": upstream.url, "api_key": "sk-test"}
    cfg["timeout"] = Timeouts(connect=2, read=0.5, total=10)
    return OpenAICompatProvider("up", OpenAIProviderConfig(**(cfg | kw)))


@pytest.fixture
async def provider(upstream: FakeUpstream) -> AsyncIterator[OpenAICompatProvider]:
    p = make(upstream)
    yield p
    await p.aclose()


def call(model: str, **kw: Any) -> ProviderCall:
    return ProviderCall(model=model, messages=[Message("user", "hi")], **kw)


async def collect(p: OpenAICompatProvider, c: ProviderCall) -> list[ProviderEvent]:
    return [e async for e in p.stream(c)]


async def eventually(check: Any) -> None:
    """Wait (boundedly) until `check()` is true: for effects the upstream sees after the client moved on."""
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.05)


def test_it_is_a_provider_and_a_speech_provider(provider: OpenAICompatProvider) -> None:
    assert isinstance(provider, Provider) and isinstance(provider, SpeechProvider)


async def test_streams_text_then_one_finish_with_usage(provider: OpenAICompatProvider, upstream: FakeUpstream) -> None:
    assert await collect(provider, call("ok", max_tokens=5, temperature=0.2)) == ANSWER
    sent = upstream.requests[-1]
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    assert sent["headers"]["content-type"] == "application/json"
    body = sent["body"]
    assert body["model"] == "ok" and body["max_tokens"] == 5 and body["temperature"] == 0.2
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert "top_p" not in body and "stop" not in body and "tools" not in body  # unset parameters are not sent


async def test_a_call_that_needs_no_stream_asks_for_one_reply(
    provider: OpenAICompatProvider, upstream: FakeUpstream
) -> None:
    events = await collect(provider, call("ok", stream=False))
    assert events == [TextDelta("Hello from upstream"), Finish("stop", Usage(prompt_tokens=7, completion_tokens=3))]
    body = upstream.requests[-1]["body"]
    assert body["stream"] is False and "stream_options" not in body  # OpenAI refuses stream_options unstreamed


async def test_a_finished_stream_gives_its_connection_back_to_the_pool(
    provider: OpenAICompatProvider, upstream: FakeUpstream
) -> None:
    await collect(provider, call("ok"))
    await collect(provider, call("ok"))
    assert upstream.requests[-1]["client_port"] == upstream.requests[-2]["client_port"]


async def test_every_parameter_extra_fields_and_configured_headers_are_sent(upstream: FakeUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    messages = [
        Message("system", "be brief"),
        Message("assistant", "", tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f"}}]),
        Message("tool", "42", tool_call_id="c1"),
        Message("user", [{"type": "text", "text": "and?"}], name="ann"),
    ]
    c = ProviderCall("ok", messages, top_p=0.5, stop=["\n"], tools=tools, extra={"seed": 7, "user": "u-1"})
    p = make(upstream, api_key=None, headers={"X-Org": "acme"})
    try:
        assert await collect(p, c) == ANSWER
    finally:
        await p.aclose()
    sent = upstream.requests[-1]
    assert "authorization" not in sent["headers"] and sent["headers"]["x-org"] == "acme"
    body = sent["body"]
    assert body["top_p"] == 0.5 and body["stop"] == ["\n"] and body["tools"] == tools
    assert body["seed"] == 7 and body["user"] == "u-1"
    assert body["messages"] == [m.to_openai() for m in messages]


async def test_the_token_limit_goes_out_under_the_name_the_client_used(
    provider: OpenAICompatProvider, upstream: FakeUpstream
) -> None:
    await collect(
        provider, ProviderCall("ok", [Message("user", "hi")], max_tokens=50, token_param="max_completion_tokens")
    )
    body = upstream.requests[-1]["body"]
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


def test_logprobs_ride_on_the_text_they_belong_to() -> None:
    entries = [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]
    reader = ChunkReader()
    chunk = {"choices": [{"delta": {"content": "Hi"}, "logprobs": {"content": entries}}]}
    assert reader.events(chunk) == [TextDelta("Hi", entries)]
    assert reader.events({"choices": [{"delta": {"content": "!"}, "logprobs": None}]}) == [TextDelta("!")]


async def test_tool_calls_stream_as_fragments(provider: OpenAICompatProvider) -> None:
    assert await collect(provider, call("tools")) == [
        ToolCallDelta(0, "call_1", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city":"Paris"}'),
        Finish("tool_calls", Usage(7, 3)),
    ]


async def test_a_server_that_ignores_stream_true_still_answers(provider: OpenAICompatProvider) -> None:
    assert await collect(provider, call("whole")) == [
        ToolCallDelta(0, "call_9", "get_time", "{}"),
        Finish("tool_calls", Usage(5, 2)),
    ]


async def test_no_usage_chunk_means_usage_none(provider: OpenAICompatProvider) -> None:
    assert await collect(provider, call("no-usage")) == [TextDelta("Hello"), Finish("stop", None)]


async def test_a_finish_reason_without_done_is_a_complete_answer(provider: OpenAICompatProvider) -> None:
    assert await collect(provider, call("no-done")) == ANSWER


async def test_lines_split_across_reads_and_crlf_line_ends(provider: OpenAICompatProvider) -> None:
    assert await collect(provider, call("split")) == ANSWER


async def test_a_chunk_longer_than_aiohttps_line_limit(provider: OpenAICompatProvider) -> None:
    events = await collect(provider, call("big"))
    assert events == [TextDelta("x" * 1_000_000), Finish("stop", Usage(7, 3))]


async def test_a_body_held_open_after_done_does_not_turn_the_answer_into_a_timeout(
    provider: OpenAICompatProvider,
) -> None:
    # the upstream keeps the body open longer than the read timeout after [DONE]
    assert await collect(provider, call("linger")) == ANSWER
    assert await collect(provider, call("ok")) == ANSWER


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
async def test_http_errors_are_translated(
    provider: OpenAICompatProvider, model: str, error: type[ProviderError], code: str
) -> None:
    with pytest.raises(error) as info:
        await collect(provider, call(model))
    assert info.value.code == code
    assert "upstream answered" in info.value.message


async def test_the_upstream_error_message_is_kept(provider: OpenAICompatProvider) -> None:
    with pytest.raises(ProviderBadRequest, match="maximum context length is 8192 tokens"):
        await collect(provider, call("context"))


async def test_an_error_object_in_the_stream_is_translated_like_an_http_error(
    provider: OpenAICompatProvider,
) -> None:
    with pytest.raises(ProviderBadRequest, match="maximum context length") as info:
        await collect(provider, call("error-chunk"))
    assert info.value.code == "context_length_exceeded"


async def test_a_stream_cut_before_the_end_is_a_failure_not_a_success(provider: OpenAICompatProvider) -> None:
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderUnavailable, match="ended before"):
        async for e in provider.stream(call("cut")):
            seen.append(e)
    assert seen == [TextDelta("Hello"), TextDelta(" from")]


async def test_a_malformed_chunk_in_a_healthy_stream_is_skipped_and_counted(provider: OpenAICompatProvider) -> None:
    events = await collect(provider, call("garbled"))
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hello"), TextDelta(" again")]
    assert [e for e in events if isinstance(e, Malformed)] == [Malformed("{not json")]
    assert isinstance(events[-1], Finish)


@pytest.mark.parametrize(
    ("model", "why"),
    [("garbage", "malformed chunks in a row"), ("malformed", "ended before"), ("odd", "ended before")],
)
async def test_a_run_of_malformed_chunks_or_a_stream_left_unfinished_is_a_provider_error(
    provider: OpenAICompatProvider, model: str, why: str
) -> None:
    with pytest.raises(ProviderError, match=why):
        await collect(provider, call(model))


async def test_no_first_byte_within_the_read_timeout_is_a_timeout(provider: OpenAICompatProvider) -> None:
    with pytest.raises(ProviderTimeout):
        await collect(provider, call("stall"))


async def test_the_total_deadline_is_a_timeout(upstream: FakeUpstream) -> None:
    p = make(upstream, timeout=Timeouts(connect=2, read=5, total=0.5))  # "slow" sends a chunk every 0.2 s for 2 s
    try:
        with pytest.raises(ProviderTimeout):
            await collect(p, call("slow"))
    finally:
        await p.aclose()


async def test_a_refused_connection_is_unavailable() -> None:
    p = OpenAICompatProvider("down", OpenAIProviderConfig(kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1"))
    try:
        with pytest.raises(ProviderUnavailable):
            await collect(p, call("ok"))
        with pytest.raises(ProviderUnavailable):
            await p.speak(model="tts-1", text="hi", voice="nova")
    finally:
        await p.aclose()


async def test_closing_the_stream_early_closes_the_upstream_call(
    provider: OpenAICompatProvider, upstream: FakeUpstream
) -> None:
    before = len(upstream.outcomes)
    stream = provider.stream(call("slow"))
    assert await anext(stream) == TextDelta(" 0")
    await stream.aclose()  # type: ignore[attr-defined]
    await eventually(lambda: len(upstream.outcomes) > before)
    assert upstream.outcomes[before:] == ["aborted"]  # the upstream saw the disconnect
    assert await collect(provider, call("ok")) == ANSWER  # and the pool is still usable


async def test_cancelling_the_consuming_task_closes_the_upstream_call(
    provider: OpenAICompatProvider, upstream: FakeUpstream
) -> None:
    before = len(upstream.outcomes)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(call("slow")):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: len(upstream.outcomes) > before)
    assert upstream.outcomes[before:] == ["aborted"]


async def test_speech_endpoints(provider: OpenAICompatProvider, upstream: FakeUpstream) -> None:
    text = await provider.transcribe(model="whisper-1", filename="a.wav", data=b"RIFF1234", mime_type="audio/wav")
    assert text.text == "transcribed 8 bytes of a.wav" and text.media_type == "application/json"
    sent = upstream.requests[-1]
    assert sent["model"] == "whisper-1" and sent["filename"] == "a.wav" and sent["size"] == 8
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    audio, mime = await provider.speak(model="tts-1", text="hello", voice="nova")
    assert audio == b"ID3fake-mp3:hello" and mime == "audio/mpeg"
    assert upstream.requests[-1]["body"] == {"model": "tts-1", "input": "hello", "voice": "nova"}


async def test_speech_errors_are_translated(upstream: FakeUpstream) -> None:
    p = make(upstream, base_url=upstream.url + "/nowhere")  # every path answers 404
    try:
        with pytest.raises(ProviderBadRequest, match="404"):
            await p.transcribe(model="whisper-1", filename="a.wav", data=b"RIFF", mime_type="audio/wav")
        with pytest.raises(ProviderBadRequest, match="404"):
            await p.speak(model="tts-1", text="hello", voice="nova")
    finally:
        await p.aclose()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0 and parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412500.0) == 0.0  # a past date: now


@pytest.mark.parametrize("stream", [True, False])
async def test_system_fingerprint_is_passed_up(provider: OpenAICompatProvider, stream: bool) -> None:
    events = await collect(provider, call("fingerprint", stream=stream))
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.system_fingerprint == "fp_test"
    plain = (await collect(provider, call("ok", stream=stream)))[-1]
    assert isinstance(plain, Finish) and plain.system_fingerprint is None


async def test_rerank_scores_come_back_in_document_order(
    upstream: FakeUpstream, provider: OpenAICompatProvider
) -> None:
    docs = ["the blue sky", "blue whales sing", "red sky at night"]
    assert await provider.rerank(model="rr", query="blue sky", documents=docs) == ([1.0, 0.5, 0.5], 12)
    assert upstream.requests[-1]["body"] == {"model": "rr", "query": "blue sky", "documents": docs, "top_n": 3}
    with pytest.raises(ProviderError, match="unexpected rerank reply"):
        await provider.rerank(model="broken", query="x", documents=["y"])
