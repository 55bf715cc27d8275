"""Rate limits and budgets through both faces: each face's own 429 with Retry-After, counters shared by
replicas through the real local Redis, budgets that survive a restart (seeded from the stored rollups).

The fake provider stands in for a model: its answers have an exact token count, so costs are exact."""

from __future__ import annotations

import copy
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.domain.limits import Limits
from tests.conftest import FAKE_CATALOG
from tests.faces.chat.helpers import assert_adaptive_error
from tests.faces.dify.helpers import assert_dify_error, complete, stored_message
from tests.serving import RunningServer, free_port, serve_app

BODY = {"inputs": {"query": "x"}, "user": "alice"}
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
#: 40 words, so every answer is cut at max_tokens: it costs exactly max_tokens x the output price
LONG = " ".join(["word"] * 40)


def budget_catalog(**limits: Any) -> dict[str, Any]:
    """Output tokens cost 0.001 each and prompts are free, answers are 30 tokens: every request costs 0.03,
    and its reservation (max_tokens 30 at the output price) is exactly that."""
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["providers"]["fake"] = {"kind": "fake", "reply": LONG, "first_token_ms": 300}
    catalog["models"]["echo"]["price"] = {"input": "0", "output": "0.001", "unit": "1"}
    catalog["projects"]["demo"].update(max_tokens=30, limits=limits)
    return catalog


def key_with(server: RunningServer, limits: Limits) -> str:
    async def make(repo: Any) -> str:
        key, _ = await repo.create_key("demo", limits=limits)
        return str(key)

    return str(server.repo_call(make))


def chat(server: RunningServer, key: str, path: str = "/api/v1/chat/completions") -> httpx.Response:
    return httpx.post(server.url + path, json=CHAT, headers=server.headers(key), timeout=60)


def test_a_keys_rate_limit_answers_each_faces_own_429_with_retry_after(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path) as server:
        key = key_with(server, Limits(rpm=2))
        assert complete(server, BODY, key).status_code == 200
        assert chat(server, key).status_code == 200  # both faces draw on the key's one counter
        refused = complete(server, BODY, key)
        assert_dify_error(refused, 429, "too_many_requests")
        assert "allows 2 requests per minute" in refused.json()["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        adaptive = chat(server, key)
        assert_adaptive_error(adaptive, 429, "Rate limit reached")
        assert 1 <= int(adaptive.headers["retry-after"]) <= 60
        openai = chat(server, key, "/v1/chat/completions")
        assert openai.status_code == 429 and openai.json()["error"]["code"] == "rate_limit_exceeded"
        assert openai.json()["error"]["type"] == "requests"  # OpenAI's type for a rate limit on requests
        assert "retry-after" in openai.headers
        assert complete(server, BODY).status_code == 200  # another key of the project is not limited
        metrics = httpx.get(server.url + "/metrics").text
        assert 'promptd_limited_total{code="rate_limit_exceeded",project="demo"} 3.0' in metrics


def test_a_streaming_request_over_a_limit_gets_a_json_429_not_a_stream(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path) as server:
        key = key_with(server, Limits(rpm=1))
        assert complete(server, BODY, key).status_code == 200
        refused = complete(server, {**BODY, "response_mode": "streaming"}, key)
        assert_dify_error(refused, 429, "too_many_requests")
        assert "retry-after" in refused.headers


def test_project_and_end_user_rate_limits(tmp_path: Path) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"]["limits"] = {"rpm": 3, "per_user": {"rpm": 1}}
    with serve_app(catalog, tmp_path) as server:
        assert complete(server, {**BODY, "user": "alice"}).status_code == 200
        alice = complete(server, {**BODY, "user": "alice"})
        assert_dify_error(alice, 429, "too_many_requests")
        assert "this end user allows 1 requests per minute" in alice.json()["message"]
        assert complete(server, {**BODY, "user": "bob"}).status_code == 200
        assert complete(server, {**BODY, "user": "carol"}).status_code == 200
        project = complete(server, {**BODY, "user": "dave"})  # a refused request took nothing: 3 went through
        assert_dify_error(project, 429, "too_many_requests")
        assert "project 'demo' allows 3 requests per minute" in project.json()["message"]


def test_a_request_that_alone_needs_more_tokens_than_a_minute_allows_says_so(tmp_path: Path) -> None:
    with serve_app(budget_catalog(tpm=20), tmp_path) as server:
        refused = complete(server, BODY)
        assert_dify_error(refused, 429, "too_many_requests")
        assert "this request alone needs" in refused.json()["message"]


def test_tokens_per_minute_count_what_was_used_not_what_was_reserved(tmp_path: Path) -> None:
    catalog = budget_catalog(tpm=100)
    catalog["providers"]["fake"]["reply"] = "short answer"  # 2 tokens used of the 30 reserved
    catalog["projects"]["demo"]["prompt"] = "{{query}}"
    with serve_app(catalog, tmp_path) as server:
        # each reservation: prompt bound 1 + 8 + 8 = 17, + 30 max_tokens = 47, so two fit at once at most;
        # settled, each holds 1 + 2 = 3 tokens: many more fit in the minute one after another
        for _ in range(6):
            r = complete(server, BODY)
            assert r.status_code == 200, r.text


def test_a_budget_refuses_with_the_quota_code_until_the_day_ends_and_survives_a_restart(tmp_path: Path) -> None:
    catalog = budget_catalog(cost_per_day="0.10")
    with serve_app(catalog, tmp_path) as server:
        for _ in range(3):  # 3 x 0.03 = 0.09
            assert complete(server, BODY).status_code == 200
        refused = complete(server, BODY)
        assert_dify_error(refused, 429, "rate_limit_error")
        assert "may spend 0.1 per day" in refused.json()["message"]
        assert int(refused.headers["retry-after"]) <= 86400
        assert_adaptive_error(chat(server, server.key), 429, "Budget reached")
        openai = chat(server, server.key, "/v1/chat/completions")
        assert openai.json()["error"]["code"] == openai.json()["error"]["type"] == "insufficient_quota"
        server.settle()
        key = server.key
    # a new process starts from the stored rollups, not from zero
    with serve_app(catalog, tmp_path) as again:
        assert_dify_error(complete(again, BODY, key), 429, "rate_limit_error")


def test_a_keys_monthly_budget_counts_both_faces(tmp_path: Path) -> None:
    with serve_app(budget_catalog(), tmp_path) as server:
        key = key_with(server, Limits(cost_per_month=Decimal("0.06")))
        assert complete(server, BODY, key).status_code == 200
        assert chat(server, key).status_code == 200
        assert_dify_error(complete(server, BODY, key), 429, "rate_limit_error")
        assert complete(server, BODY).status_code == 200  # the project's other key has no budget


def _two_replicas(catalog: dict[str, Any], tmp_path: Path, database_url: str, redis_url: str) -> Any:
    prefix = f"promptd-test:{uuid.uuid4().hex}:"
    a = serve_app(catalog, tmp_path / "a", database_url=database_url, redis_url=redis_url, redis_prefix=prefix)
    b = serve_app(catalog, tmp_path / "b", database_url=database_url, redis_url=redis_url, redis_prefix=prefix)
    return a, b


@pytest.fixture
def shared(pg_server_url: str | None, redis_url: str | None) -> tuple[str, str]:
    if pg_server_url is None or redis_url is None:
        pytest.skip("PostgreSQL and Redis not configured (PROMPTD_TEST_POSTGRES_URL, PROMPTD_TEST_REDIS_URL)")
    return pg_server_url, redis_url


@pytest.fixture
def pg_database(shared: tuple[str, str]) -> Any:
    from tests.conftest import _fresh_pg_database

    url, drop = _fresh_pg_database(shared[0])
    yield url
    drop()


def test_100_concurrent_requests_on_two_replicas_overspend_a_budget_by_at_most_one_reservation(
    tmp_path: Path, shared: tuple[str, str], pg_database: str
) -> None:
    catalog = budget_catalog(cost_per_day="0.10")
    a, b = _two_replicas(catalog, tmp_path, pg_database, shared[1])
    with a as one, b as two:

        def send(i: int) -> httpx.Response:
            server = one if i % 2 else two
            return complete(server, {**BODY, "user": f"user-{i}"}, one.key)

        with ThreadPoolExecutor(max_workers=100) as pool:
            answers = list(pool.map(send, range(100)))
        ok = [r for r in answers if r.status_code == 200]
        refused = [r for r in answers if r.status_code == 429]
        assert len(ok) + len(refused) == 100, {r.status_code for r in answers}
        for r in refused:
            assert_dify_error(r, 429, "rate_limit_error")
        spent = sum(Decimal(r.json()["metadata"]["usage"]["total_price"]) for r in ok)
        reservation = Decimal("0.03")
        assert spent <= Decimal("0.10") + reservation
        assert len(ok) == 3  # the reservations are exact here: 3 fit, on either replica, and no more
        # what was answered is what was stored, and the rollups agree
        for r in ok:
            assert stored_message(one, r.json()["message_id"])["total_price"] == "0.0300000"
        one.settle()
        two.settle()
        rows = one.repo_call(lambda repo: repo.usage(since="0000-00-00", until="9999-99-99", project="demo"))
        assert sum(row["requests"] for row in rows) == 3
        assert sum(row["cost_pico"] for row in rows) == 3 * 30 * 10**9


def test_a_stop_sent_to_one_replica_stops_the_stream_served_by_another(
    tmp_path: Path, shared: tuple[str, str], pg_database: str
) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["providers"]["fake"] = {"kind": "fake", "reply": LONG, "chunk_delay_ms": 200}
    a, b = _two_replicas(catalog, tmp_path, pg_database, shared[1])
    with a as one, b as two:
        body = {**BODY, "response_mode": "streaming"}
        events: list[dict[str, Any]] = []
        with httpx.stream(
            "POST", one.v1 + "/completion-messages", json=body, headers=one.headers(), timeout=60
        ) as stream:
            import json

            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                events.append(event)
                if len(events) == 2:  # it is running on replica one: ask replica two to stop it
                    task = event["task_id"]
                    stop = httpx.post(
                        f"{two.v1}/completion-messages/{task}/stop", json={"user": "alice"}, headers=two.headers()
                    )
                    assert stop.json() == {"result": "success"}
        assert events[-1]["event"] == "message_end"
        answer = "".join(e.get("answer", "") for e in events if e["event"] == "message")
        assert answer and len(answer.split()) < 40  # cut short, not finished
        row = stored_message(one, events[-1]["message_id"])
        assert row["status"] == "stopped" and row["answer"] == answer


def test_without_redis_each_replica_counts_alone(tmp_path: Path) -> None:
    """What the operations guide warns about: without Redis, limits are per process."""
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"]["limits"] = {"rpm": 1}
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    with (
        serve_app(catalog, tmp_path / "a", database_url=db) as one,
        serve_app(catalog, tmp_path / "b", database_url=db) as two,
    ):
        assert complete(one, BODY).status_code == 200
        assert complete(two, BODY, one.key).status_code == 200
        assert complete(one, BODY).status_code == 429


def test_when_redis_goes_away_limited_requests_fail_closed_and_unlimited_ones_go_on(tmp_path: Path) -> None:
    """A Redis of this test's own (the machine's redis-server binary), so it can be stopped mid-test."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "the test's redis-server did not start"
            time.sleep(0.05)
        with serve_app(FAKE_CATALOG, tmp_path, redis_url=f"redis://127.0.0.1:{port}/0") as server:
            limited = key_with(server, Limits(rpm=100))
            assert complete(server, BODY, limited).status_code == 200
            redis.terminate()
            redis.wait(30)
            refused = complete(server, BODY, limited)
            assert_dify_error(refused, 503, "service_unavailable")
            assert "cannot be checked" in refused.json()["message"]
            assert_adaptive_error(chat(server, limited), 503, "cannot be checked")
            assert complete(server, BODY).status_code == 200  # no limits: Redis is not needed
    finally:
        if redis.poll() is None:
            redis.kill()
        redis.wait(30)


def test_new_key_limits_take_effect_without_a_restart(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path, key_cache_ttl=0) as server:
        for _ in range(3):
            assert complete(server, BODY).status_code == 200  # no limits: nothing is counted
        server.repo_call(lambda repo: repo.set_key_limits(server.key, Limits(rpm=2)))
        assert complete(server, BODY).status_code == 200
        assert complete(server, BODY).status_code == 200
        assert_dify_error(complete(server, BODY), 429, "too_many_requests")


def _hundred_at_once(one: RunningServer, two: RunningServer, key: str) -> list[httpx.Response]:
    """100 concurrent requests, alternating between the two replicas."""

    def send(i: int) -> httpx.Response:
        return complete(one if i % 2 else two, {**BODY, "user": f"user-{i}"}, key)

    with ThreadPoolExecutor(max_workers=100) as pool:
        return list(pool.map(send, range(100)))


def test_a_keys_rpm_and_budget_hold_across_two_replicas_with_slices_larger_than_one_request(
    tmp_path: Path, shared: tuple[str, str], pg_database: str
) -> None:
    """Limits large enough that the replicas lease slices of several requests (1/16 of the limit at most): the
    limit still holds exactly, and a replica is refused early by at most the slices the other one holds."""
    a, b = _two_replicas(budget_catalog(), tmp_path, pg_database, shared[1])
    with a as one, b as two:
        rpm_key = key_with(one, Limits(rpm=64))  # slices of up to 4 requests
        answers = _hundred_at_once(one, two, rpm_key)
        ok = sum(r.status_code == 200 for r in answers)
        for r in answers:
            if r.status_code != 200:
                assert_dify_error(r, 429, "too_many_requests")
        assert 64 - 2 * 4 <= ok <= 64
        budget_key = key_with(one, Limits(cost_per_day=Decimal("1.50")))  # 50 requests; slices of up to 0.09
        answers = _hundred_at_once(one, two, budget_key)
        ok_answers = [r for r in answers if r.status_code == 200]
        for r in answers:
            if r.status_code != 200:
                assert_dify_error(r, 429, "rate_limit_error")
        spent = sum(Decimal(r.json()["metadata"]["usage"]["total_price"]) for r in ok_answers)
        assert spent <= Decimal("1.50")
        assert spent >= Decimal("1.50") - 2 * (Decimal("0.09") + Decimal("0.03"))  # unused slices left, per replica


def _own_redis(port: int) -> subprocess.Popen[bytes]:
    """A throw-away redis-server (no persistence: a restart loses every counter, as a real crash might)."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
        assert time.monotonic() < deadline and proc.poll() is None, "the test's redis-server did not start"
        time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(30)


def test_after_a_redis_restart_limits_work_again_and_budgets_are_seeded_from_the_store(tmp_path: Path) -> None:
    port = free_port()
    redis = _own_redis(port)
    try:
        with serve_app(budget_catalog(), tmp_path, redis_url=f"redis://127.0.0.1:{port}/0") as server:
            budget = key_with(server, Limits(cost_per_day=Decimal("0.10")))  # 3 requests of 0.03
            rpm = key_with(server, Limits(rpm=4))
            for _ in range(3):
                assert complete(server, BODY, budget).status_code == 200
            assert_dify_error(complete(server, BODY, budget), 429, "rate_limit_error")
            assert complete(server, BODY, rpm).status_code == 200
            server.settle()  # the three answers are in the store's daily rollups
            _stop(redis)
            assert_dify_error(complete(server, BODY, rpm), 503, "service_unavailable")  # fails closed meanwhile
            redis = _own_redis(port)  # empty: every counter is gone
            # the budget is seeded again from the store: still spent
            assert_dify_error(complete(server, BODY, budget), 429, "rate_limit_error")
            # the minute counter starts again from zero (documented): served again, and limited again
            statuses = [complete(server, BODY, rpm).status_code for _ in range(6)]
            assert statuses == [200] * 4 + [429] * 2
    finally:
        _stop(redis)


def _counted(redis_url: str, pattern: str) -> int:
    """The sum of the Redis counters matching this pattern (every minute bucket of a counter, say)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sum(int(client.get(k) or 0) for k in client.scan_iter(match=pattern))
    finally:
        client.close()


def test_a_replica_gives_its_slices_back_when_it_shuts_down(
    tmp_path: Path, shared: tuple[str, str], pg_database: str
) -> None:
    """Slices held for a minute (limit_slice_idle=60) are given back at shutdown: Redis then counts exactly the
    requests answered (in whichever minute buckets they fell)."""
    prefix = f"promptd-test:{uuid.uuid4().hex}:"
    options: dict[str, Any] = {"redis_url": shared[1], "redis_prefix": prefix, "limit_slice_idle": 60}
    catalog = budget_catalog()
    catalog["providers"]["fake"]["first_token_ms"] = 50
    with serve_app(catalog, tmp_path, database_url=pg_database, **options) as server:
        key = key_with(server, Limits(rpm=1600))  # slices of up to 100
        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(lambda i: complete(server, BODY, key).status_code, range(60)))
        assert statuses == [200] * 60
        held = _counted(shared[1], prefix + "lim:key:*:requests:minute:*")
        assert 60 <= held <= 60 + 100  # what was answered, and what is leased beyond it (a slice at most)
    assert _counted(shared[1], prefix + "lim:key:*:requests:minute:*") == 60
