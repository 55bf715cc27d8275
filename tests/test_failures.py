"""The failure suite: a misbehaving upstream (tests/failing_upstream.py, real HTTP on loopback) behind every
scenario, driven through both faces. Each test checks what a client sees (status, events), which deployment
served, what was stored, and that the time taken is bounded by the configured deadlines, not the upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.faces.chat.helpers import rows
from tests.failing_upstream import FailingUpstream, failing_upstream
from tests.serving import RunningServer, free_port, serve_app

FAST_RETRY = {"attempts": 1, "backoff_ms": 50, "max_backoff_ms": 100, "max_retry_after_s": 5}


def model(*deployments: str, provider: str = "up", **extra: Any) -> dict[str, Any]:
    deps = [
        {"provider": provider, "model": d} if "/" not in d else {"provider": d.split("/")[0], "model": d.split("/")[1]}
        for d in deployments
    ]
    return {"deployments": deps, "retry": FAST_RETRY, "price": {"input": "1", "output": "1", "unit": "1M"}, **extra}


SCENARIOS: dict[str, dict[str, Any]] = {
    "retry_after": model("429-then-ok"),
    "backoff": model("429-bare"),
    "long_retry_after": model("429-long", fallbacks=["healthy"]),
    "e500": model("500", fallbacks=["healthy"]),
    "e502": model("502", fallbacks=["healthy"]),
    "e503": model("503", fallbacks=["healthy"]),
    "reset": model("reset", fallbacks=["healthy"]),
    "refused": model("down/ok", fallbacks=["healthy"]),
    "hang": model("hang/ok", max_ttft_ms=500, fallbacks=["healthy"]),
    "slow_first": model("slow-first", max_ttft_ms=400, fallbacks=["healthy"]),
    "slow_first_alone": model("slow-first", max_ttft_ms=400),
    "cut": model("cut", fallbacks=["healthy"]),
    "stall": model("stall", idle_timeout_ms=400, fallbacks=["healthy"]),
    "malformed": model("malformed", fallbacks=["healthy"]),
    "no_done": model("no-done", fallbacks=["healthy"]),
    "context": model("context", context_fallback="big"),
    "context_alone": model("context"),
    "filter": model("filter", fallbacks=["healthy"]),
    "flap": {**model("flap", "ok"), "retry": {"attempts": 0}, "circuit": {"failures": 1, "cooldown_s": 60}},
    "hedged": model("slow-first#hedge", hedge_ms=300, fallbacks=["healthy"]),
    "hedge_unneeded": model("ok", hedge_ms=2000, fallbacks=["healthy"]),
    "healthy": model("ok"),
    "big": model("ok"),
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FailingUpstream]:
    with failing_upstream() as up:
        yield up


@pytest.fixture(scope="module")
def server(upstream: FailingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    timeout = {"connect": 1, "read": 10, "total": 60}
    catalog = {
        "providers": {
            "up": {"kind": "openai", "base_url": upstream.url, "timeout": timeout},
            "hang": {"kind": "openai", "base_url": upstream.hang_url, "timeout": timeout},
            "down": {"kind": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "timeout": timeout},
        },
        "models": SCENARIOS,
        "projects": {
            name: {
                "models": [
                    name,
                    *SCENARIOS[name].get("fallbacks", []),
                    *([SCENARIOS[name]["context_fallback"]] if "context_fallback" in SCENARIOS[name] else []),
                ],
                "prompt": "{{query}}",
                "inputs": [{"type": "paragraph", "variable": "query"}],
            }
            for name in SCENARIOS
        },
    }
    with serve_app(catalog, tmp_path_factory.mktemp("failures") / "data", project="healthy") as s:
        yield s


KEYS: dict[str, str] = {}


def key(server: RunningServer, project: str) -> str:
    if project not in KEYS:
        KEYS[project] = server.new_key(project)
    return KEYS[project]


def dify(server: RunningServer, project: str, stream: bool) -> tuple[int, Any, float]:
    body = {"inputs": {"query": "hi"}, "user": "u", "response_mode": "streaming" if stream else "blocking"}
    start = time.perf_counter()
    r = httpx.post(
        server.v1 + "/completion-messages", json=body, headers=server.headers(key(server, project)), timeout=60
    )
    elapsed = time.perf_counter() - start
    if stream:
        return r.status_code, [json.loads(x[6:]) for x in r.text.split("\n\n") if x.startswith("data: ")], elapsed
    return r.status_code, r.json(), elapsed


def chat(server: RunningServer, project: str, stream: bool) -> tuple[int, Any, float]:
    body = {"model": project, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    start = time.perf_counter()
    r = httpx.post(
        server.url + "/api/v1/chat/completions", json=body, headers=server.headers(key(server, project)), timeout=60
    )
    elapsed = time.perf_counter() - start
    if stream:
        return r.status_code, [x[6:] for x in r.text.split("\n\n") if x.startswith("data: ")], elapsed
    return r.status_code, r.json(), elapsed


def last_record(server: RunningServer, project: str) -> dict[str, Any]:
    return rows(server, project, expect=1)[-1]


def served_ok(server: RunningServer, project: str) -> tuple[float, dict[str, Any]]:
    """Both faces, blocking: the answer is complete; returns the slowest time and the last record."""
    status, body, t1 = dify(server, project, stream=False)
    assert status == 200 and body["answer"] == "Hello there friend", body
    status, body, t2 = chat(server, project, stream=False)
    assert status == 200 and body["choices"][0]["message"]["content"] == "Hello there friend", body
    return max(t1, t2), last_record(server, project)


def attempts(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["upstream_model"], a["status"]) for a in record["attempts"]]


def test_429_with_retry_after_is_honoured(server: RunningServer, upstream: FailingUpstream) -> None:
    elapsed, record = served_ok(server, "retry_after")
    assert attempts(record) == [("429-then-ok", "ok")]  # the second request: the first one waited and retried
    assert elapsed < 5
    assert upstream.calls["429-then-ok"] == 3  # 429, ok, ok


def test_429_without_retry_after_backs_off_and_retries(server: RunningServer) -> None:
    elapsed, _ = served_ok(server, "backoff")
    assert elapsed < 3  # a 50-100 ms backoff, not seconds


def test_a_long_retry_after_moves_on_instead_of_waiting(server: RunningServer) -> None:
    elapsed, record = served_ok(server, "long_retry_after")
    assert attempts(record) == [("429-long", "error"), ("ok", "ok")]
    assert record["attempts"][0]["error_code"] == "provider_rate_limited"
    assert elapsed < 5  # not the 120 s the upstream asked for


@pytest.mark.parametrize("project", ["e500", "e502", "e503", "reset", "refused"])
def test_server_errors_and_broken_connections_go_to_the_fallback(server: RunningServer, project: str) -> None:
    elapsed, record = served_ok(server, project)
    first = record["attempts"][0]
    assert first["status"] == "error" and first["error_code"] == "provider_unavailable"
    assert attempts(record)[-1] == ("ok", "ok") and len(record["attempts"]) == 3  # one retry, then the next
    assert record["status"] == "normal" and elapsed < 10


def test_an_upstream_that_never_answers_is_cut_at_the_first_token_deadline(server: RunningServer) -> None:
    elapsed, record = served_ok(server, "hang")
    assert record["model"] == "healthy" and record["attempts"][0]["error_code"] == "first_token_timeout"
    assert elapsed < 4  # bounded by max_ttft_ms (0.5 s), not by the 10 s read timeout


def test_a_slow_first_token_cuts_over_to_the_fallback(server: RunningServer) -> None:
    elapsed, record = served_ok(server, "slow_first")
    assert [a["model"] for a in record["attempts"]] == ["slow_first", "healthy"]
    assert elapsed < 3  # not the 3 s the upstream takes


def test_a_slow_first_token_without_fallback_fails_fast_on_both_faces(server: RunningServer) -> None:
    status, body, elapsed = chat(server, "slow_first_alone", stream=False)
    assert status == 408 and "first token" in body["error"] and elapsed < 3
    status, events, elapsed = dify(server, "slow_first_alone", stream=True)
    assert status == 200 and [e["event"] for e in events] == ["error"] and elapsed < 3
    status, chunks, _ = chat(server, "slow_first_alone", stream=True)
    assert len(chunks) == 1 and json.loads(chunks[0])["error"]["status"] == 408  # an error before any content
    assert last_record(server, "slow_first_alone")["status"] == "error"


@pytest.mark.parametrize("project", ["cut", "malformed", "no_done", "stall"])
def test_a_stream_that_breaks_mid_answer_is_never_a_success(server: RunningServer, project: str) -> None:
    # streaming: committed after the first token; the client gets the partial answer, then a terminal error
    status, events, elapsed = dify(server, project, stream=True)
    assert status == 200 and elapsed < 5  # a stall is cut by idle_timeout_ms (0.4 s), not after the 5 s stall
    assert [e["event"] for e in events] == ["message", "message", "error"]
    assert events[-1]["code"] == "completion_request_error"
    record = last_record(server, project)
    assert record["status"] == "error" and record["answer"] == "Hello there"
    assert attempts(record) == [(project.replace("_", "-"), "error")]

    status, chunks, _ = chat(server, project, stream=True)
    assert chunks[-1] != "[DONE]" and "[DONE]" not in chunks
    last = json.loads(chunks[-1])
    assert last["choices"][0]["finish_reason"] == "error" and last["error"]["status"] in (502, 504)

    # blocking: nothing reached the client yet, so another deployment can still answer
    _, record = served_ok(server, project)
    assert attempts(record)[-1] == ("ok", "ok") and record["attempts"][0]["usage"]["estimated"] is True
    # the broken attempt is billed the 2 tokens that came and its prompt as estimated (1), at 1/1M; the call
    # costs both attempts (engine/billing.py)
    assert record["attempts"][0]["cost"] == "0.0000030"
    assert record["attempts"][-1]["cost"] == "0.0000070"  # 4 prompt + 3 completion tokens
    assert Decimal(record["total_price"]) == sum(Decimal(a.get("cost", "0")) for a in record["attempts"])


def test_a_context_length_error_goes_to_the_larger_model(server: RunningServer) -> None:
    _, record = served_ok(server, "context")
    assert [a["model"] for a in record["attempts"]] == ["context", "big"] and record["model"] == "big"


def test_a_context_length_error_without_fallback_is_a_clear_400(server: RunningServer) -> None:
    status, body, _ = chat(server, "context_alone", stream=False)
    assert status == 400 and "context_length_exceeded" in body["error"]
    assert len(last_record(server, "context_alone")["attempts"]) == 1


def test_a_content_filter_refusal_is_not_retried(server: RunningServer, upstream: FailingUpstream) -> None:
    before = upstream.calls["filter"]
    status, body, _ = chat(server, "filter", stream=False)
    assert status == 400 and "content_filter" in body["error"]
    assert upstream.calls["filter"] == before + 1
    status, body, _ = dify(server, "filter", stream=False)
    assert status == 400 and body["code"] == "completion_request_error"


def test_a_flapping_deployment_is_cooled_down(server: RunningServer, upstream: FailingUpstream) -> None:
    for _ in range(10):
        status, body, _ = chat(server, "flap", stream=False)
        assert status == 200 and body["choices"][0]["message"]["content"] == "Hello there friend"
    # it failed once and its circuit opened: the other deployment took the rest of the traffic
    assert upstream.calls["flap"] <= 2


def test_a_hedge_starts_the_next_candidate_and_keeps_the_first_to_answer(server: RunningServer) -> None:
    elapsed, record = served_ok(server, "hedged")
    assert record["model"] == "healthy"
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [("hedged", "hedged-out"), ("healthy", "ok")]
    assert record["attempts"][1]["hedge"] is True
    assert elapsed < 2.5  # the hedge answered; nobody waited for the 3 s first token


def test_a_fast_primary_never_starts_the_hedge(server: RunningServer) -> None:
    _, record = served_ok(server, "hedge_unneeded")
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [("hedge_unneeded", "ok")]
