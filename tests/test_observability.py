"""Transparency in production: Server-Timing on responses, Prometheus metrics at /metrics."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from promptd.metrics import Counter, Histogram, Metrics, start_directory
from tests.conftest import FAKE_CATALOG
from tests.serving import RunningServer, serve_app
from tests.test_replicas import complete, make_key, serve, slow_catalog

TIMING = re.compile(r"^gateway;dur=(\d+\.\d\d), upstream;dur=(\d+\.\d\d)$")


def test_blocking_answers_split_gateway_and_upstream_time(fake_server: RunningServer) -> None:
    body = {"inputs": {"query": "hi"}, "user": "u"}
    r = httpx.post(fake_server.v1 + "/completion-messages", json=body, headers=fake_server.headers())
    m = TIMING.match(r.headers["server-timing"])
    assert m, r.headers["server-timing"]
    chat = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(fake_server.url + "/api/v1/chat/completions", json=chat, headers=fake_server.headers())
    assert TIMING.match(r.headers["server-timing"])


def test_streams_and_other_endpoints_report_gateway_time(fake_server: RunningServer) -> None:
    body = {"inputs": {"query": "hi"}, "user": "u", "response_mode": "streaming"}
    r = httpx.post(fake_server.v1 + "/completion-messages", json=body, headers=fake_server.headers())
    assert re.match(r"^gateway;dur=\d+\.\d\d$", r.headers["server-timing"])
    assert re.match(
        r"^gateway;dur=", httpx.get(fake_server.v1 + "/info", headers=fake_server.headers()).headers["server-timing"]
    )


def test_metrics_count_requests_tokens_cost_and_recorder_rows(fake_server: RunningServer) -> None:
    for _ in range(3):
        httpx.post(
            fake_server.v1 + "/completion-messages",
            json={"inputs": {"query": "hi"}, "user": "u"},
            headers=fake_server.headers(),
        )
    httpx.post(fake_server.v1 + "/completion-messages", json={"inputs": {}, "user": "u"}, headers=fake_server.headers())
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(fake_server.url + "/metrics").text
        if 'promptd_recorder_rows_total{outcome="written"}' in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert 'promptd_requests_total{face="dify",model="echo",project="demo",status="normal"} 3.0' in text
    # "Echo: Answer briefly: hi" is 4 words, answered 3 times
    assert 'promptd_tokens_total{kind="completion",model="echo",project="demo"} 12.0' in text
    assert 'promptd_overhead_seconds_count{face="dify"} 3.0' in text
    assert 'promptd_latency_seconds_bucket{le="+Inf",model="echo",project="demo"} 3.0' in text
    assert re.search(r'promptd_recorder_rows_total\{outcome="written"\} \d+', text)
    assert "promptd_recorder_queue_rows " in text and "# TYPE promptd_ttft_seconds histogram" in text
    assert "promptd_recorder_spill_rows 0.0" in text  # nothing waits on disk


def test_with_no_room_in_the_queue_every_record_goes_through_the_disk_and_is_counted(tmp_path: Path) -> None:
    # the fake provider: the exact answers are asserted in the stored records
    with serve_app(FAKE_CATALOG, tmp_path / "data", recorder_queue=0) as server:
        ids = []
        for q in ("one", "two", "three"):
            body = {"inputs": {"query": q}, "user": "u"}
            r = httpx.post(server.v1 + "/completion-messages", json=body, headers=server.headers())
            assert r.status_code == 200
            ids.append(r.json()["message_id"])
        server.settle()
        text = httpx.get(server.url + "/metrics").text
        assert "promptd_recorder_spilled_rows_total 6.0" in text  # 3 messages and their end-user rows
        assert "promptd_recorder_spill_rows 0.0" in text  # all replayed
        assert 'promptd_recorder_rows_total{outcome="written"} 6.0' in text

        async def answers(repo: object) -> list[str]:
            return [(await repo.get_message(i, "demo"))["answer"] for i in ids]  # type: ignore[attr-defined]

        assert server.repo_call(answers) == [f"Echo: Answer briefly: {q}" for q in ("one", "two", "three")]


def test_exposition_format() -> None:
    c = Counter("x_total", "help")
    c.inc(2, a='q"uote')
    assert list(c.lines())[-1] == 'x_total{a="q\\"uote"} 2'
    h = Histogram("h", "help", (0.1, 1.0))
    for v in (0.05, 0.5, 5):
        h.observe(v, k="v")
    assert list(h.lines())[2:] == [
        'h_bucket{k="v",le="0.1"} 1',
        'h_bucket{k="v",le="1"} 2',
        'h_bucket{k="v",le="+Inf"} 3',
        'h_sum{k="v"} 5.55',
        'h_count{k="v"} 3',
    ]
    m = Metrics()
    m.gauge("g", "a gauge", lambda: 7)
    assert m.exposition().endswith("# TYPE g gauge\ng 7\n")


def _requests_total(text: str) -> float:
    """The sum of promptd_requests_total over its label sets, in one scrape."""
    return sum(float(m) for m in re.findall(r"^promptd_requests_total\{[^}]*\} (\S+)$", text, re.M))


def test_two_workers_answer_one_view_of_the_metrics(tmp_path: Path) -> None:
    env = {"PROMPTD_DATA_DIR": str(tmp_path / "data")}
    key = make_key(env)
    with serve(tmp_path, slow_catalog(0), env, "--workers", "2") as server:
        sent = 0
        seen: list[float] = []  # every scrape's total, in order
        pids: set[int] = set()
        for _ in range(8):
            for _ in range(3):  # new connections: both workers take some
                assert complete(server.url, key).status_code == 200
                sent += 1
            pids.add(httpx.get(server.url + "/health").json()["pid"])
            # a request is counted just after its answer leaves: a scrape may come a moment before that
            deadline = time.monotonic() + 10
            while True:
                scrape = httpx.get(server.url + "/metrics")
                assert scrape.status_code == 200 and "# TYPE promptd_running_generations gauge" in scrape.text
                seen.append(_requests_total(scrape.text))
                if seen[-1] >= sent or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert seen[-1] == sent  # every request sent, whichever worker served it or answers the scrape
        assert seen == sorted(seen)  # never backwards
        # both workers served: a worker's own counts could not have added up to every request sent
        for _ in range(200):
            if len(pids) == 2:
                break
            pids.add(httpx.get(server.url + "/health").json()["pid"])
        assert len(pids) == 2
        text = httpx.get(server.url + "/metrics").text
        assert f'promptd_latency_seconds_count{{model="echo",project="demo"}} {float(sent)}' in text
        assert 'promptd_latency_seconds_bucket{le="+Inf",model="echo",project="demo"}' in text


def test_metrics_answer_loopback_clients_or_the_token(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path / "data", metrics_token="s3cret") as server:
        assert httpx.get(server.url + "/metrics").status_code == 200
        remote = {"X-Forwarded-For": "203.0.113.7"}  # uvicorn trusts its loopback proxy: the client is remote
        r = httpx.get(server.url + "/metrics", headers=remote)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = httpx.get(server.url + "/metrics", headers={**remote, "Authorization": "Bearer wrong"})
        assert r.status_code == 403
        r = httpx.get(server.url + "/metrics", headers={**remote, "Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and "# TYPE promptd_running_generations gauge" in r.text
    with serve_app(FAKE_CATALOG, tmp_path / "data2") as server:  # no token: loopback only
        assert httpx.get(server.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 403


def test_a_start_removes_the_metrics_of_gone_processes_only(tmp_path: Path) -> None:
    root = tmp_path / "metrics"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = root / f"1700000000-{gone.stdout.strip()}", root / f"1700000001-{os.getpid()}"
    for d in (dead, alive, root / "junk"):
        d.mkdir(parents=True)
    new = start_directory(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == sorted([alive.name, new.name])


def _collected(directory: Path) -> str:
    """/metrics as another worker would answer it: prometheus_client's collector over every process's files."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry).decode()


async def test_a_worker_s_values_reach_its_file_soon_after_they_change_and_all_of_them_when_it_closes(
    tmp_path: Path,
) -> None:
    """Updates are written to the shared files in batches (at most FLUSH_S later), not one mmap write each:
    another worker's scrape sees them, and a closing worker writes what it still held."""
    m = Metrics(tmp_path)
    m.requests.inc(face="dify", status="normal", project="demo", model="m")
    m.latency.observe(0.02, project="demo", model="m")
    counted = 'promptd_requests_total{face="dify",model="m",project="demo",status="normal"} 1.0'
    for _ in range(500):  # up to 10 s, far more than FLUSH_S: a busy machine
        if counted in _collected(tmp_path):
            break
        await asyncio.sleep(0.02)
    text = _collected(tmp_path)
    assert counted in text and 'promptd_latency_seconds_count{model="m",project="demo"} 1.0' in text
    m.requests.inc(face="dify", status="normal", project="demo", model="m")
    m.close()  # at once: no wait for the timer
    assert 'promptd_requests_total{face="dify",model="m",project="demo",status="normal"} 2.0' in _collected(tmp_path)
