"""Graceful shutdown: on SIGTERM the server stops accepting, lets in-flight streams finish, and flushes the
recorder, so every request that got an answer is in the store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import yaml

from promptd.store.tables import messages
from tests.conftest import FAKE_CATALOG
from tests.serving import free_port


def _rows(db: Path) -> dict[str, dict[str, Any]]:
    import sqlite3

    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in con.execute(f"SELECT * FROM {messages.name}")}
    finally:
        con.close()


def test_sigterm_lets_streams_finish_and_loses_no_record(tmp_path: Path) -> None:
    catalog = json.loads(json.dumps(FAKE_CATALOG))
    # the fake provider stands for a model that takes about a second per answer
    catalog["providers"]["fake"] = {"kind": "fake", "chunk_delay_ms": 100}
    config = tmp_path / "catalog.yaml"
    config.write_text(yaml.safe_dump(catalog))
    data, port = tmp_path / "data", free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptd", "serve", "-c", str(config), "--data-dir", str(data), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output = ""
    while "Uvicorn running on" not in output:  # logged once the socket is bound (startup complete is not)
        line = proc.stdout.readline()
        assert line, output
        output += line
    key = next(w for w in output.split() if w.startswith("app-"))

    finished: list[str] = []
    started = threading.Semaphore(0)

    def stream(i: int) -> None:
        body = {"inputs": {"query": f"tell me about number {i} please"}, "user": "u", "response_mode": "streaming"}
        with httpx.stream(
            "POST",
            f"http://127.0.0.1:{port}/v1/completion-messages",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ) as r:
            first = True
            for line in r.iter_lines():
                if first and line.startswith("data: "):
                    started.release()  # this stream is in flight
                    first = False
                if line.startswith("data: ") and json.loads(line[6:])["event"] == "message_end":
                    finished.append(json.loads(line[6:])["message_id"])

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for _ in threads:
        assert started.acquire(timeout=30)  # every stream has its first event before the signal
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    # uvicorn re-raises the signal once its graceful shutdown is done, so the exit status is "killed by SIGTERM"
    assert proc.wait(60) in (0, -signal.SIGTERM)
    assert "Finished server process" in (proc.stdout.read() or "")
    proc.stdout.close()

    answered = finished
    assert len(answered) == 8  # every in-flight stream was allowed to finish
    rows = _rows(data / "promptd.db")
    for message_id in answered:
        assert rows[message_id]["status"] == "normal"
        assert rows[message_id]["answer"].startswith("Echo: Answer briefly:")
