"""The failure suite: a misbehaving upstream (tests/failing_upstream.py, real HTTP on loopback) behind every
scenario, driven through a running promptd over real HTTP, on both faces, streaming and blocking. Each test
checks what a client sees (status, events, the whole answer), which deployment served, what was stored, and
that the time taken is bounded by the configured deadlines, not the upstream.

The sixteen kinds of fault and the test of each are listed in docs/operations.md ("Upstream failures")."""

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
    # circuits open only where a test says so: each scenario meets its fault every time it runs
    return {"deployments": deps, "retry": FAST_RETRY, "price": {"input": "1", "output": "1", "unit": "1M"},
            "circuit": {"failures": 1000}, **extra}  # fmt: skip


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
    # mid-answer faults, with a fallback that continues an answer (an OpenAI-compatible server declared with
    # `continuation: continue_final_message`)
    "cut": model("cut", fallbacks=["rescuer"]),
    "stall": model("stall", idle_timeout_ms=400, fallbacks=["rescuer"]),
    "malformed": model("malformed", fallbacks=["rescuer"]),
    "malformed_run": model("malformed-run", fallbacks=["rescuer"]),
    "no_done": model("no-done", fallbacks=["rescuer"]),
    "no_done_finished": model("no-done-finished", fallbacks=["rescuer"]),
    "cut_same": model("cont/cut", fallbacks=["healthy"]),  # continued by a retry of its own deployment
    # mid-answer faults where the fallback cannot continue (it refuses a prefill with a 400)
    "cut_unrescuable": model("cut", fallbacks=["prefill_rejecting"]),
    "stall_unrescuable": model("stall", idle_timeout_ms=400, fallbacks=["prefill_rejecting"]),
    "cut_held": model("cut", commit_after_tokens=5, fallbacks=["prefill_rejecting"]),
    "stall_held": model("stall", idle_timeout_ms=400, commit_after_ms=2000, fallbacks=["prefill_rejecting"]),
    "context": model("context", context_fallback="big"),
    "context_alone": model("context"),
    "filter": model("filter", fallbacks=["healthy"]),
    "flap": model("flap", "ok", retry={"attempts": 0}, circuit={"failures": 1, "cooldown_s": 60}),
    "accounting": model("cut#accounting", fallbacks=["prefill_rejecting"]),
    "hedged": model("slow-first#hedge", hedge_ms=300, fallbacks=["healthy"]),
    "hedge_unneeded": model("ok", hedge_ms=2000, fallbacks=["healthy"]),
    "runaway": model("ignore-max"),  # its project has a token limit: max_tokens is reserved (5 here) and held
    "healthy": model("ok"),
    "big": model("ok"),
    "rescuer": model("cont/ok"),
    "prefill_rejecting": model("prefill-400"),
}
#: the reserved max_tokens of a limited call that sets none (`reserve_max_tokens`)
RESERVED = 5


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
            "cont": {
                "kind": "openai",
                "base_url": upstream.url,
                "timeout": timeout,
                "continuation": "continue_final_message",
            },
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
                **({"limits": {"tpm": 1_000_000}} if name == "runaway" else {}),
            }
            for name in SCENARIOS
        },
    }
    data = tmp_path_factory.mktemp("failures") / "data"
    with serve_app(catalog, data, project="healthy", reserve_max_tokens=RESERVED) as s:
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


def chat_response(server: RunningServer, project: str, stream: bool) -> httpx.Response:
    body = {"model": project, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    url = server.url + "/api/v1/chat/completions"
    return httpx.post(url, json=body, headers=server.headers(key(server, project)), timeout=60)


def chat(server: RunningServer, project: str, stream: bool) -> tuple[int, Any, float]:
    start = time.perf_counter()
    r = chat_response(server, project, stream)
    elapsed = time.perf_counter() - start
    if stream and r.headers["content-type"].startswith("text/event-stream"):
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


def streamed_ok(server: RunningServer, project: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Both faces, streaming: one whole answer, no text twice, a clean end; returns the chat chunks (before
    [DONE]) and the last record."""
    status, events, _ = dify(server, project, stream=True)
    assert status == 200 and [e["event"] for e in events][-1] == "message_end", events
    assert "".join(e["answer"] for e in events if e["event"] == "message") == "Hello there friend", events
    status, raw, _ = chat(server, project, stream=True)
    assert status == 200 and raw[-1] == "[DONE]", raw
    chunks = [json.loads(x) for x in raw[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]) == "Hello there friend"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    return chunks, last_record(server, project)


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
    # Dify's stream has begun (an `error` event, as Dify has it); the chat stream has sent nothing yet, so
    # it answers with the real status (docs/chat-api.md, the commit point)
    status, body, elapsed = chat(server, "slow_first_alone", stream=True)
    assert status == 408 and "first token" in body["error"] and elapsed < 3
    assert last_record(server, "slow_first_alone")["status"] == "error"


@pytest.mark.parametrize(("project", "fault"), [("cut", "cut"), ("stall", "stall"), ("malformed_run", "malformed-run"),
                                                ("no_done", "no-done")])  # fmt: skip
def test_a_stream_that_breaks_mid_answer_is_continued_where_it_broke(
    server: RunningServer, upstream: FailingUpstream, project: str, fault: str
) -> None:
    # streaming: the client had "Hello there"; the fallback (it continues answers) is sent that as a prefill
    # and only its new tokens reach the client
    before = len(upstream.bodies["ok"])
    chunks, record = streamed_ok(server, project)
    assert attempts(record) == [(fault, "error"), ("ok", "ok")]
    assert record["attempts"][1]["continued_after"] == 2 and "continued_after" not in record["attempts"][0]
    assert record["model"] == "rescuer" and record["status"] == "normal"
    continuation = upstream.bodies["ok"][before]
    assert continuation["messages"][-1] == {"role": "assistant", "content": "Hello there"}
    assert continuation["continue_final_message"] is True and continuation["add_generation_prompt"] is False
    # the chunks name the model that began the answer; its last chunk, the model that finished it
    models = [c["model"] for c in chunks]
    assert models[0] == f"{project}/{project}" and models[-1] == f"{project}/rescuer"
    # both attempts are billed: 2 tokens that came before the break (estimated, its prompt counted) and the
    # continuation's reported 6 + 1 tokens; the call costs their sum
    assert record["attempts"][0]["usage"]["completion_tokens"] == 2 and record["attempts"][0]["usage"]["estimated"]
    assert record["attempts"][1]["usage"] == {"prompt_tokens": 6, "completion_tokens": 1}
    assert Decimal(record["total_price"]) == sum(Decimal(a["cost"]) for a in record["attempts"])

    # blocking: nothing reached the client yet, so the answer is asked again, whole, without a prefill
    r = chat_response(server, project, stream=False)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello there friend"
    record = last_record(server, project)
    assert attempts(record) == [(fault, "error"), (fault, "error"), ("ok", "ok")]  # one retry, then the fallback
    assert r.headers["X-Promptd-Model"] == "rescuer" and r.headers["X-Promptd-Attempt"] == "3"
    assert r.json()["model"] == f"{project}/rescuer"
    assert upstream.bodies["ok"][-1]["messages"][-1]["role"] == "user"


def test_a_stream_is_continued_by_a_retry_of_its_own_deployment(server: RunningServer) -> None:
    _, record = streamed_ok(server, "cut_same")
    assert attempts(record) == [("cut", "error"), ("cut", "ok")]
    assert record["attempts"][1]["continued_after"] == 2 and record["model"] == "cut_same"


def test_a_single_malformed_chunk_is_skipped_and_counted(server: RunningServer) -> None:
    _, record = streamed_ok(server, "malformed")
    assert attempts(record) == [("malformed", "ok")] and record["attempts"][0]["malformed_chunks"] == 1
    _, record = served_ok(server, "malformed")
    assert attempts(record) == [("malformed", "ok")] and record["attempts"][0]["malformed_chunks"] == 1


def test_a_stream_without_done_but_with_its_finish_is_whole(server: RunningServer) -> None:
    _, record = streamed_ok(server, "no_done_finished")
    assert attempts(record) == [("no-done-finished", "ok")]


@pytest.mark.parametrize(("project", "fault"), [("cut_unrescuable", "cut"), ("stall_unrescuable", "stall")])
def test_where_nothing_can_continue_a_stream_it_ends_with_a_clean_error(
    server: RunningServer, upstream: FailingUpstream, project: str, fault: str
) -> None:
    # the fallback refuses a prefill with a 400: it is never sent one, and the client gets the terminal error
    # of a broken stream, not that 400
    status, events, elapsed = dify(server, project, stream=True)
    assert status == 200 and elapsed < 5  # a stall is cut by idle_timeout_ms (0.4 s), not after the 5 s stall
    assert [e["event"] for e in events] == ["message", "message", "error"]
    assert events[-1]["code"] == "completion_request_error"
    record = last_record(server, project)
    assert record["status"] == "error" and record["answer"] == "Hello there"
    assert attempts(record) == [(fault, "error")]

    status, raw, _ = chat(server, project, stream=True)
    assert "[DONE]" not in raw
    last = json.loads(raw[-1])
    assert last["choices"][0]["finish_reason"] == "error" and last["error"]["status"] in (502, 504)
    assert "prefill" not in last["error"]["message"]
    assert "".join(json.loads(x)["choices"][0]["delta"]["content"] for x in raw[:-1]) == "Hello there"
    assert all(b["messages"][-1]["role"] == "user" for b in upstream.bodies["prefill-400"])

    # blocking: nothing was sent, so the fallback answers whole
    _, record = served_ok(server, project)
    assert attempts(record)[-1] == ("prefill-400", "ok") and record["model"] == "prefill_rejecting"


@pytest.mark.parametrize(("project", "fault"), [("cut_held", "cut"), ("stall_held", "stall")])
def test_tokens_held_before_commit_let_a_short_answer_be_rescued_whole(
    server: RunningServer, upstream: FailingUpstream, project: str, fault: str
) -> None:
    # commit_after_tokens 5 / commit_after_ms 2000: the broken stream's two tokens were never sent, so the
    # fallback that cannot continue answers again from the start, and the client sees only its answer
    chunks, record = streamed_ok(server, project)
    assert attempts(record) == [(fault, "error"), (fault, "error"), ("prefill-400", "ok")]
    assert all("continued_after" not in a for a in record["attempts"])
    assert {c["model"] for c in chunks} == {f"{project}/prefill_rejecting"}
    assert upstream.bodies["prefill-400"][-1]["messages"][-1]["role"] == "user"


def test_failover_accounting_bills_every_attempt_and_names_the_one_that_answered(server: RunningServer) -> None:
    # a blocking answer broken after 2 tokens, retried, broken again, then answered by the fallback
    r = chat_response(server, "accounting", stream=False)
    record = last_record(server, "accounting")
    assert attempts(record) == [("cut#accounting", "error"), ("cut#accounting", "error"), ("prefill-400", "ok")]
    assert r.headers["X-Promptd-Model"] == "prefill_rejecting" and r.headers["X-Promptd-Attempt"] == "3"
    assert r.json()["model"] == "accounting/prefill_rejecting"
    # each broken attempt is billed the 2 tokens that came and its prompt as estimated (1), at 1/1M; the
    # answer its reported 4 + 3; the call costs the sum, and its usage is the sum of the tokens
    assert [a["cost"] for a in record["attempts"]] == ["0.0000030", "0.0000030", "0.0000070"]
    assert [a["usage"].get("estimated", False) for a in record["attempts"]] == [True, True, False]
    assert Decimal(record["total_price"]) == Decimal("0.0000130")
    usage = r.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (6, 7)


def test_an_upstream_that_ignores_max_tokens_is_cut_at_the_reserved_maximum_streaming(
    server: RunningServer, upstream: FailingUpstream
) -> None:
    # the project has a token limit and the call sets no max_tokens: RESERVED (5) is reserved and sent; the
    # upstream sends 40 tokens anyway, and promptd stops at 5, closes the upstream and bills 5
    aborted = upstream.aborted["ignore-max"]
    status, raw, _ = chat(server, "runaway", stream=True)
    assert status == 200 and raw[-1] == "[DONE]"
    chunks = [json.loads(x) for x in raw[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == " w0 w1 w2 w3 w4"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert upstream.bodies["ignore-max"][-1]["max_tokens"] == RESERVED
    record = last_record(server, "runaway")
    assert record["attempts"][0]["cut_at_max_tokens"] == RESERVED and record["finish_reason"] == "length"
    assert record["attempts"][0]["usage"]["completion_tokens"] == RESERVED
    assert record["completion_tokens"] == RESERVED
    deadline = time.monotonic() + 10
    while upstream.aborted["ignore-max"] == aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.aborted["ignore-max"] == aborted + 1  # the upstream call was closed before its end

    status, events, _ = dify(server, "runaway", stream=True)
    assert "".join(e["answer"] for e in events if e["event"] == "message") == " w0 w1 w2 w3 w4"
    assert events[-1]["event"] == "message_end"
    assert events[-1]["metadata"]["usage"]["completion_tokens"] == RESERVED


def test_an_upstream_that_ignores_max_tokens_is_cut_at_the_reserved_maximum_blocking(
    server: RunningServer, upstream: FailingUpstream
) -> None:
    # blocking: one unstreamed reply of 40 tokens (its usage says so); its text is cut in proportion to 5 and
    # it is billed 5 completion tokens with the prompt it reported
    r = chat_response(server, "runaway", stream=False)
    body = r.json()
    assert upstream.bodies["ignore-max"][-1]["stream"] is False
    whole = "".join(f" w{i}" for i in range(40))
    content = body["choices"][0]["message"]["content"]
    assert content == whole[: len(whole) * RESERVED // 40] and body["choices"][0]["finish_reason"] == "length"
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == (4, RESERVED)
    record = last_record(server, "runaway")
    assert record["attempts"][0]["cut_at_max_tokens"] == RESERVED
    assert record["attempts"][0]["usage"] == {"prompt_tokens": 4, "completion_tokens": RESERVED}

    status, answer, _ = dify(server, "runaway", stream=False)
    assert status == 200 and answer["answer"] == content
    assert answer["metadata"]["usage"]["completion_tokens"] == RESERVED


def test_a_context_length_error_goes_to_the_larger_model(server: RunningServer) -> None:
    _, record = served_ok(server, "context")
    assert [a["model"] for a in record["attempts"]] == ["context", "big"] and record["model"] == "big"


def test_a_context_length_error_without_fallback_is_a_clear_400(server: RunningServer) -> None:
    status, body, _ = chat(server, "context_alone", stream=False)
    assert status == 400 and "context_length_exceeded" in body["error"]
    status, body, _ = chat(server, "context_alone", stream=True)  # nothing was sent: the real status
    assert status == 400 and "context_length_exceeded" in body["error"]
    status, events, _ = dify(server, "context_alone", stream=True)
    assert status == 200 and [e["event"] for e in events] == ["error"]
    assert len(last_record(server, "context_alone")["attempts"]) == 1


def test_a_content_filter_refusal_is_not_retried(server: RunningServer, upstream: FailingUpstream) -> None:
    before = upstream.calls["filter"]
    status, body, _ = chat(server, "filter", stream=False)
    assert status == 400 and "content_filter" in body["error"]
    assert upstream.calls["filter"] == before + 1
    status, body, _ = dify(server, "filter", stream=False)
    assert status == 400 and body["code"] == "completion_request_error"
    status, body, _ = chat(server, "filter", stream=True)  # nothing was sent: the real status
    assert status == 400 and "content_filter" in body["error"]
    status, events, _ = dify(server, "filter", stream=True)
    assert status == 200 and [e["event"] for e in events] == ["error"]
    assert events[0]["code"] == "completion_request_error"
    assert upstream.calls["filter"] == before + 4  # once per request: never retried, never sent elsewhere


def test_a_flapping_deployment_is_cooled_down(server: RunningServer, upstream: FailingUpstream) -> None:
    before = upstream.calls["flap"]
    for _ in range(10):
        status, body, _ = chat(server, "flap", stream=False)
        assert status == 200 and body["choices"][0]["message"]["content"] == "Hello there friend"
    # it failed once and its circuit opened: the other deployment took the rest of the traffic
    assert upstream.calls["flap"] - before <= 2


def test_a_hedge_starts_the_next_candidate_and_keeps_the_first_to_answer(server: RunningServer) -> None:
    elapsed, record = served_ok(server, "hedged")
    assert record["model"] == "healthy"
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [("hedged", "hedged-out"), ("healthy", "ok")]
    assert record["attempts"][1]["hedge"] is True
    assert elapsed < 2.5  # the hedge answered; nobody waited for the 3 s first token


def test_a_fast_primary_never_starts_the_hedge(server: RunningServer) -> None:
    _, record = served_ok(server, "hedge_unneeded")
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [("hedge_unneeded", "ok")]


RESCUED = [
    "retry_after", "backoff", "long_retry_after", "e500", "e502", "e503", "reset", "refused", "hang", "slow_first",
    "cut", "stall", "malformed", "malformed_run", "no_done", "no_done_finished", "cut_same", "cut_held",
    "stall_held", "context", "flap", "hedged",
]  # fmt: skip


@pytest.mark.parametrize("project", RESCUED)
def test_every_rescuable_fault_ends_in_one_whole_answer_streaming_and_blocking(
    server: RunningServer, project: str
) -> None:
    """Each fault, on both faces, streaming and blocking: the client gets "Hello there friend", whole, once."""
    streamed_ok(server, project)
    served_ok(server, project)
    record = last_record(server, project)
    assert record["status"] == "normal" and record["answer"] == "Hello there friend"
