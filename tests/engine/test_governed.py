"""Every kind of model call is governed: a completion (Dify face), a chat, embeddings, speech and transcription
(through the Dify face and OpenAI's /v1/audio aliases) each pass the same admission (a key's RPM limit and
budget), are metered (`/admin/v1/usage`, `/metrics`) and recorded, through a running promptd on a real SQLite file.

The upstream is `tests/upstream.py`'s fake OpenAI-compatible server over real HTTP: it stands for OpenAI (chat,
embeddings, speech, transcription) and answers exact usage, so costs can be checked to the decimal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from promptd.domain.limits import Limits
from promptd.store.tables import usage_daily
from tests.console.helpers import admin_key
from tests.serving import RunningServer, serve_app
from tests.upstream import FakeUpstream, fake_upstream


def catalog(upstream_url: str) -> dict[str, Any]:
    price = {"input": "1000", "output": "1000", "unit": "1M", "currency": "USD"}
    return {
        "providers": {
            "up": {"kind": "openai", "base_url": upstream_url, "api_key": "sk-test"},
            "fake": {"kind": "fake"},
        },
        "models": {
            "gpt": {"provider": "up", "model": "ok", "price": price},
            # the upstream answers 400 context_length_exceeded; a healthy fallback stands behind it
            "refuse": {
                "provider": "up",
                "model": "context",
                "price": price,
                "fallbacks": ["gpt"],
                "circuit": {"failures": 2, "cooldown_s": 60},
            },
            "emb": {"provider": "up", "model": "emb", "type": "embedding", "price": price},
            # an embedding model whose own provider takes text only, with a fallback that takes token ids too
            "text-emb": {"provider": "fake", "model": "f", "type": "embedding", "price": price, "fallbacks": ["emb"]},
            "stt": {"provider": "up", "model": "whisper", "type": "speech_to_text", "price": price},
            "tts": {"provider": "up", "model": "tts", "type": "text_to_speech", "price": price},
        },
        "projects": {
            "demo": {
                "mode": "completion",
                "models": ["gpt", "refuse", "emb", "text-emb"],
                "embedding_model": "emb",
                "prompt": "Answer briefly: {{query}}",
                "inputs": [{"type": "paragraph", "variable": "query", "label": "Query", "required": True}],
                "audio": {"speech_to_text": "stt", "text_to_speech": "tts"},
            }
        },
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as up:
        yield up


@pytest.fixture
def server(upstream: FakeUpstream, tmp_path: Path) -> Iterator[RunningServer]:
    with serve_app(catalog(upstream.url), tmp_path / "data") as running:
        yield running


def new_key(server: RunningServer, **limits: Any) -> tuple[str, str]:
    """A key for `demo` with these limits: (the key, its id)."""

    async def make(repo: Any) -> tuple[str, str]:
        key, info = await repo.create_key("demo", limits=Limits(**limits))
        return key, info.id

    return server.repo_call(make)  # type: ignore[no-any-return]


def completion(server: RunningServer, key: str, store: bool = True) -> httpx.Response:
    body = {"inputs": {"query": "What is the capital of France?"}, "user": "alice"}
    return httpx.post(server.v1 + "/completion-messages", json=body, headers=server.headers(key), timeout=30)


def chat(server: RunningServer, key: str, store: bool = True, model: str = "demo/gpt") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "store": store}
    return httpx.post(server.url + "/api/v1/chat/completions", json=body, headers=server.headers(key), timeout=30)


def embedding(server: RunningServer, key: str, store: bool = True) -> httpx.Response:
    body = {"model": "demo", "input": ["one two", "three"]}
    return httpx.post(server.url + "/api/v1/embeddings", json=body, headers=server.headers(key), timeout=30)


def speech(server: RunningServer, key: str, store: bool = True) -> httpx.Response:
    body = {"text": "Hello there", "user": "alice"}
    return httpx.post(server.v1 + "/text-to-audio", json=body, headers=server.headers(key), timeout=30)


def transcription(server: RunningServer, key: str, store: bool = True) -> httpx.Response:
    files = {"file": ("hello.mp3", b"ID3" + b"\x00" * 64, "audio/mpeg")}
    return httpx.post(
        server.v1 + "/audio-to-text", files=files, data={"user": "alice"}, headers=server.headers(key), timeout=30
    )


def openai_speech(server: RunningServer, key: str, store: bool = True) -> httpx.Response:
    body = {"model": "demo", "input": "Hello there", "voice": "alloy"}
    return httpx.post(server.v1 + "/audio/speech", json=body, headers=server.headers(key), timeout=30)


def openai_transcription(server: RunningServer, key: str, store: bool = True) -> httpx.Response:
    files = {"file": ("hello.mp3", b"ID3" + b"\x00" * 64, "audio/mpeg")}
    return httpx.post(
        server.v1 + "/audio/transcriptions",
        files=files,
        data={"model": "demo"},
        headers=server.headers(key),
        timeout=30,
    )


KINDS: dict[str, tuple[Callable[..., httpx.Response], str, str]] = {
    # name: (call, the catalog model that serves it, the record's kind)
    "completion": (completion, "gpt", "chat"),
    "chat": (chat, "gpt", "chat"),
    "embedding": (embedding, "emb", "embedding"),
    "speech": (speech, "tts", "speech"),
    "transcription": (transcription, "stt", "transcription"),
    "openai-speech": (openai_speech, "tts", "speech"),  # OpenAI's /v1/audio aliases
    "openai-transcription": (openai_transcription, "stt", "transcription"),
}


def usage_rows(server: RunningServer, admin: str, key_id: str) -> list[dict[str, Any]]:
    server.settle()
    r = httpx.get(server.url + "/admin/v1/usage", params={"key_id": key_id}, headers=server.headers(admin))
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def records(server: RunningServer, key_id: str) -> list[dict[str, Any]]:
    server.settle()
    rows = server.repo_call(lambda repo: repo.list_messages("demo", limit=1000))
    return [r for r in rows if r["key_id"] == key_id]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_call_obeys_a_keys_rpm_limit_and_is_metered_and_recorded(
    server: RunningServer, kind: str
) -> None:
    call, model, record_kind = KINDS[kind]
    key, key_id = new_key(server, rpm=2)
    assert [call(server, key).status_code for _ in range(2)] == [200, 200]
    refused = call(server, key)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1

    admin = admin_key(server)
    (row,) = usage_rows(server, admin, key_id)
    assert row["model"] == model and row["requests"] == 2 and row["errors"] == 0
    stored = records(server, key_id)
    assert len(stored) == 2 and all(r["model"] == model and r["status"] == "normal" for r in stored)
    full = server.repo_call(lambda repo: repo.get_message(stored[0]["id"], "demo"))
    assert full["kind"] == record_kind
    metrics = httpx.get(server.url + "/metrics").text
    assert any(f'model="{model}"' in line and "promptd_requests_total" in line for line in metrics.splitlines())


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_call_obeys_a_spent_budget(server: RunningServer, kind: str) -> None:
    call, _, _ = KINDS[kind]
    key, key_id = new_key(server, cost_per_day=Decimal("0.5"))
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")

    async def spend(repo: Any) -> None:  # what the key spent today, as the rollups say (as after a restart)
        async with repo.engine.begin() as conn:
            await conn.execute(
                usage_daily.insert().values(
                    day=today,
                    project="demo",
                    key_id=key_id,
                    model="gpt",
                    currency="USD",
                    requests=1,
                    errors=0,
                    prompt_tokens=0,
                    completion_tokens=0,
                    cost_pico=10**12,
                )
            )

    server.repo_call(spend)
    refused = call(server, key)
    assert refused.status_code == 429, refused.text
    assert "insufficient_quota" in refused.text or "Budget" in refused.text


def test_embeddings_are_billed_what_the_provider_reported(server: RunningServer) -> None:
    key, key_id = new_key(server)
    r = embedding(server, key)
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 3  # a token per word, as reported
    (record,) = records(server, key_id)
    assert Decimal(record["total_price"]) == Decimal("0.003")  # 3 tokens at 1000 per million


def test_token_ids_go_upstream_as_sent_and_are_billed_as_reported(
    server: RunningServer, upstream: FakeUpstream
) -> None:
    """OpenAI's `input` as token ids (LangChain's OpenAIEmbeddings sends them so): an OpenAI-compatible upstream
    gets them as they came, one array per vector; a single array is one input."""
    key, key_id = new_key(server)
    client = OpenAI(base_url=server.url + "/v1", api_key=key)
    r = client.embeddings.create(model="demo", input=[[101, 7, 3], [55, 9]], encoding_format="float")
    assert [d.index for d in r.data] == [0, 1] and [d.embedding[0] for d in r.data] == [3, 2]
    assert r.usage.prompt_tokens == 5  # a token per id, as the upstream reported
    assert upstream.requests[-1]["body"] == {"model": "emb", "input": [[101, 7, 3], [55, 9]]}

    one = client.embeddings.create(model="demo", input=[101, 7, 3, 4], encoding_format="float")
    assert len(one.data) == 1 and upstream.requests[-1]["body"]["input"] == [[101, 7, 3, 4]]

    stored = {r["query"]: r for r in records(server, key_id)}  # the first array of each call, as sent
    assert set(stored) == {"[101, 7, 3]", "[101, 7, 3, 4]"}
    assert Decimal(stored["[101, 7, 3]"]["total_price"]) == Decimal("0.005")  # 5 tokens at 1000 per million
    assert stored["[101, 7, 3, 4]"]["total_tokens"] == 4


def test_token_ids_count_their_length_against_tokens_per_minute(server: RunningServer) -> None:
    key, _ = new_key(server, tpm=10)
    body: dict[str, Any] = {"model": "demo", "input": [[1] * 11]}  # 11 tokens: more than a minute allows
    url = server.url + "/api/v1/embeddings"
    refused = httpx.post(url, json=body, headers=server.headers(key), timeout=30)
    assert refused.status_code == 429, refused.text
    assert httpx.post(url, json={**body, "input": [[1] * 6, [2] * 4]}, headers=server.headers(key)).status_code == 200
    assert httpx.post(url, json={**body, "input": [5]}, headers=server.headers(key)).status_code == 429  # all spent


def test_token_ids_skip_deployments_whose_provider_takes_text_only(
    server: RunningServer, upstream: FakeUpstream
) -> None:
    key, key_id = new_key(server)
    r = httpx.post(
        server.url + "/api/v1/embeddings",
        json={"model": "demo/text-emb", "input": [[4, 2]]},
        headers=server.headers(key),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "demo/emb" and upstream.requests[-1]["body"]["input"] == [[4, 2]]
    (record,) = records(server, key_id)
    full = server.repo_call(lambda repo: repo.get_message(record["id"], "demo"))
    assert [a["model"] for a in full["attempts"]] == ["emb"]  # the text-only deployment was never tried
    # text still goes to the model's own provider
    text = httpx.post(
        server.url + "/api/v1/embeddings",
        json={"model": "demo/text-emb", "input": "two words"},
        headers=server.headers(key),
        timeout=30,
    )
    assert text.status_code == 200 and text.json()["model"] == "demo/text-emb"


def test_store_false_keeps_content_out_and_metering_in_also_after_a_restart(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    with serve_app(catalog(upstream.url), tmp_path / "data") as server:
        key, key_id = new_key(server, cost_per_day=Decimal("0.05"))
        answered = 0
        for _ in range(30):  # each answer costs 0.01 (10 tokens at 1000 per million): the budget runs out
            status = chat(server, key, store=False).status_code
            if status == 429:
                break
            assert status == 200
            answered += 1
        assert 1 <= answered < 30
        admin = admin_key(server)
        (row,) = usage_rows(server, admin, key_id)
        tokens = row["prompt_tokens"] + row["completion_tokens"]
        assert row["requests"] == answered and tokens > 0 and Decimal(row["cost"]) == Decimal("0.001") * tokens
        assert records(server, key_id) == []  # no content stored
        metrics = httpx.get(server.url + "/metrics").text
        assert any(
            line.startswith("promptd_requests_total{") and 'model="gpt"' in line for line in metrics.splitlines()
        )
    with serve_app(catalog(upstream.url), tmp_path / "data") as again:  # the budget is seeded from the rollups
        assert chat(again, key, store=False).status_code == 429


def test_a_refused_call_costs_nothing_and_never_opens_the_circuit(server: RunningServer) -> None:
    key, key_id = new_key(server)
    for _ in range(5):  # more caller faults than the circuit's `failures` (2)
        r = chat(server, key, model="demo/refuse")
        assert r.status_code == 400 and "context" in r.text.lower()
    stored = records(server, key_id)
    assert len(stored) == 5
    for record in stored:
        assert record["status"] == "error" and Decimal(record["total_price"]) == 0 and record["total_tokens"] == 0
        # the circuit stayed closed: the refusing deployment is still tried first, not sent behind its fallback
        full = server.repo_call(lambda repo, i=record["id"]: repo.get_message(i, "demo"))
        assert [a["model"] for a in full["attempts"]] == ["refuse"]
    admin = admin_key(server)
    (row,) = usage_rows(server, admin, key_id)
    assert row["requests"] == 5 and row["errors"] == 5 and Decimal(row["cost"]) == 0


def test_a_dify_request_is_found_by_its_question(server: RunningServer) -> None:
    key, _ = new_key(server)
    message_id = completion(server, key).json()["message_id"]
    admin = admin_key(server)
    server.settle()
    found = httpx.get(
        server.url + "/admin/v1/messages", params={"q": "capital of France"}, headers=server.headers(admin)
    )
    rows = found.json()["data"]
    assert [r["id"] for r in rows] == [message_id]
    assert rows[0]["face"] == "dify" and rows[0]["query"] == "What is the capital of France?"
