"""The quick start, end to end: `promptd serve` on an empty data dir prints a key and curl commands, and
those commands, run as printed, get a real SmolLM2 answer in blocking and streaming mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serving import free_port

pytestmark = pytest.mark.model


def _wait_for_output(proc: subprocess.Popen[str], pattern: str, deadline: float) -> str:
    seen = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen += line
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"server never printed {pattern!r}; output so far:\n{seen}")


def test_first_start_prints_a_working_key_and_curl_commands(tmp_path: Path) -> None:
    assert shutil.which("curl"), "curl is needed to run the printed commands"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptd", "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        output = _wait_for_output(proc, r"Uvicorn running on", time.monotonic() + 120)  # the socket is bound
        key = re.search(r"^\s+(app-[A-Za-z0-9]{24,})\s*$", output, re.M)
        assert key, output
        commands = re.findall(r"^\s+(curl .*?\n.*?)$", output, re.M)
        assert len(commands) == 2, output
        blocking, streaming = (c.replace("\\\n", " ") for c in commands)
        assert f"127.0.0.1:{port}" in blocking and key.group(1) in blocking

        answer = json.loads(
            subprocess.run(["bash", "-c", blocking], capture_output=True, text=True, timeout=120, check=True).stdout
        )
        assert answer["event"] == "message" and answer["mode"] == "completion"
        assert answer["answer"].strip()
        assert answer["metadata"]["usage"]["completion_tokens"] > 0
        assert answer["metadata"]["usage"]["prompt_tokens"] > 0

        raw = subprocess.run(["bash", "-c", streaming], capture_output=True, text=True, timeout=120, check=True).stdout
        events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
        assert [e["event"] for e in events][-1] == "message_end"
        assert {e["event"] for e in events[:-1]} == {"message"}
        assert "".join(e["answer"] for e in events[:-1]).strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown


def test_second_start_does_not_print_a_new_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for expected in (True, False):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptd", "serve", "--data-dir", str(data), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output = _wait_for_output(proc, r"Uvicorn running on", time.monotonic() + 120)
            assert ("first start" in output) is expected
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            assert proc.stdout is not None
            proc.stdout.close()
