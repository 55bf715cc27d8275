"""The server's log through a real `promptd serve --workers 2` subprocess: one access line per request, in
plain text or JSON, with the request's id, and no uvicorn access lines. The fake provider stands for a model;
a 401 and a 429 (rate limit) are the client's mistakes, logged at INFO."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from pathlib import Path

import httpx

from promptd.logs import LoopStreamHandler
from tests.test_replicas import complete, make_key, serve, slow_catalog


def _wait_for(lines: list[str], count: int, marker: str) -> list[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [line for line in list(lines) if marker in line]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} lines with {marker!r} expected, got: {lines}")


def test_json_access_lines_from_two_workers(tmp_path: Path) -> None:
    env = {"PROMPTD_DATA_DIR": str(tmp_path / "data"), "PROMPTD_LOG_FORMAT": "json"}
    key = make_key(env)
    with serve(tmp_path, slow_catalog(0, rpm=6), env, "--workers", "2") as server:
        ids = [f"req-{i}" for i in range(6)]
        for rid in ids:
            r = httpx.post(
                server.url + "/v1/completion-messages",
                json={"inputs": {"query": "x"}, "user": "alice"},
                headers={"Authorization": f"Bearer {key}", "X-Request-Id": rid},
            )
            assert r.status_code in (200, 429)
        httpx.post(server.url + "/v1/completion-messages", json={}, headers={"X-Request-Id": "no-key"})
        _wait_for(server.lines, 1, '"request_id": "no-key"')  # the last request's line is in (others may be probes)
        lines = _wait_for(server.lines, 7, '"logger": "promptd.access"')
        access = [json.loads(line) for line in lines]
        by_id = {a["request_id"]: a for a in access}
        assert set(ids) | {"no-key"} <= set(by_id)
        assert len({a["request_id"] for a in access}) == len(access)  # one line per request
        served = [by_id[i] for i in ids if by_id[i]["status"] == 200]
        assert served, access
        for a in served:
            assert a["level"] == "INFO" and a["method"] == "POST" and a["path"] == "/v1/completion-messages"
            assert a["project"] == "demo" and a["model"] == "echo" and a["key_id"]
            # "Echo: Answer briefly: x": 4 tokens
            assert a["completion_tokens"] == 4 and a["prompt_tokens"] > 0 and a["currency"] == "USD"
            assert a["latency_ms"] > 0 and a["ttft_ms"] is not None and a["cost"]
        assert by_id["no-key"]["status"] == 401 and by_id["no-key"]["level"] == "INFO"
        assert not any('"logger": "uvicorn.access"' in line for line in server.lines)


def test_plain_access_lines_and_a_notable_event(tmp_path: Path) -> None:
    env = {"PROMPTD_DATA_DIR": str(tmp_path / "data")}
    key = make_key(env)
    with serve(tmp_path, slow_catalog(0, rpm=1), env, "--workers", "2") as server:
        codes = [complete(server.url, key).status_code for _ in range(4)]
        assert 200 in codes and 429 in codes  # each worker counts alone without Redis: at least one passes
        lines = _wait_for(server.lines, 4, " INFO promptd.access [")
        served = [line for line in lines if " POST /v1/completion-messages 200 project=demo " in line]
        assert served and all(" model=echo " in line and " completion_tokens=4 " in line for line in served)
        assert any(" POST /v1/completion-messages 429 project=demo " in line for line in lines)
        limit = _wait_for(server.lines, 1, "limit hit: project demo")
        assert " INFO promptd.engine [" in limit[0]  # the line names the request it is about
        assert not any('"GET /' in line or '"POST /' in line for line in server.lines)  # no uvicorn access log


async def test_the_server_s_handler_writes_a_loop_turn_s_access_lines_together_and_in_order() -> None:
    """LoopStreamHandler (what `serve` logs through): access lines logged in one turn of the event loop leave
    in one write after it; any other line, or an access line logged where no loop runs (another thread), is
    written at once, after those held."""
    writes: list[str] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    handler = LoopStreamHandler(Stream())
    handler.setFormatter(logging.Formatter("%(message)s"))
    access, other = logging.getLogger("promptd.access"), logging.getLogger("promptd.tests.loop-handler")
    levels = access.level, other.level
    for logger in (access, other):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        access.info("a")
        access.info("b")
        assert writes == []  # held until the end of this turn
        await asyncio.sleep(0)
        assert writes == ["a\nb\n"]
        access.info("c")
        other.info("d")  # not an access line: at once, after the held one
        assert writes == ["a\nb\n", "c\nd\n"]
        access.info("e")
        thread = threading.Thread(target=access.info, args=("f",))
        thread.start()
        thread.join()
        assert writes == ["a\nb\n", "c\nd\n", "e\nf\n"]
        handler.flush()
        assert writes == ["a\nb\n", "c\nd\n", "e\nf\n"]  # nothing held, nothing written again
    finally:
        for logger, level in zip((access, other), levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
