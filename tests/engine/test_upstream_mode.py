"""When promptd asks an OpenAI-compatible upstream for a stream and when for one whole reply.

A blocking answer that nothing needs early (no first-token deadline, no hedge) is asked for unstreamed: the
upstream sends one completion instead of a chunk per token, which promptd would only have joined. Streaming
answers, first-token deadlines and hedges need the tokens as they come, so those calls stream. The upstream
is tests/upstream.py's fake OpenAI-compatible server over real HTTP; it records each request's body.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faces.chat.helpers import rows
from tests.serving import RunningServer, serve_app
from tests.upstream import FakeUpstream, fake_upstream

PRICE = {"input": "1", "output": "1", "unit": "1M"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as up:
        yield up


@pytest.fixture(scope="module")
def server(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    catalog: dict[str, Any] = {
        "providers": {"up": {"kind": "openai", "base_url": upstream.url}},
        "models": {
            "plain": {"provider": "up", "model": "ok", "price": PRICE},
            "deadline": {"provider": "up", "model": "ok", "price": PRICE, "max_ttft_ms": 5000},
            "hedged": {"provider": "up", "model": "ok", "price": PRICE, "hedge_ms": 5000, "fallbacks": ["plain"]},
        },
        "projects": {
            "demo": {
                "models": ["plain", "deadline", "hedged"],
                "prompt": "{{query}}",
                "inputs": [{"type": "paragraph", "variable": "query"}],
            }
        },
    }
    with serve_app(catalog, tmp_path_factory.mktemp("mode") / "data") as s:
        yield s


def chat(server: RunningServer, model: str, **extra: Any) -> httpx.Response:
    body = {"model": f"demo/{model}", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(server.url + "/api/v1/chat/completions", json=body, headers=server.headers(), timeout=30)


def sent_stream(upstream: FakeUpstream) -> bool:
    return bool(upstream.requests[-1]["body"]["stream"])


def test_a_blocking_answer_asks_for_one_reply_and_keeps_usage_price_and_record(
    server: RunningServer, upstream: FakeUpstream
) -> None:
    r = httpx.post(
        server.v1 + "/completion-messages",
        json={"inputs": {"query": "hi"}, "user": "u", "response_mode": "blocking"},
        headers=server.headers(),
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["answer"] == "Hello from upstream", r.text
    assert r.json()["metadata"]["usage"]["completion_tokens"] == 3
    body = upstream.requests[-1]["body"]
    assert body["stream"] is False and "stream_options" not in body

    r = chat(server, "plain")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello from upstream"
    usage = r.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_price"]) == (7, 3, "0.0000100")
    assert not sent_stream(upstream)

    record = rows(server, expect=2)[-1]
    assert (record["answer"], record["prompt_tokens"], record["completion_tokens"]) == ("Hello from upstream", 7, 3)
    assert record["status"] == "normal" and record["ttft"] is not None  # the first token came with the rest


def test_a_streaming_answer_streams_from_the_upstream(server: RunningServer, upstream: FakeUpstream) -> None:
    r = chat(server, "plain", stream=True)
    assert r.status_code == 200 and '"content":" upstream"' in r.text.replace(": ", ":")
    body = upstream.requests[-1]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_a_first_token_deadline_keeps_a_blocking_call_streamed(server: RunningServer, upstream: FakeUpstream) -> None:
    assert chat(server, "deadline").status_code == 200  # the model's own max_ttft_ms
    assert sent_stream(upstream)
    assert chat(server, "plain", max_ttft_ms=5000).status_code == 200  # the request's
    assert sent_stream(upstream)


def test_a_hedged_model_keeps_a_blocking_call_streamed(server: RunningServer, upstream: FakeUpstream) -> None:
    assert chat(server, "hedged").status_code == 200
    assert sent_stream(upstream)
