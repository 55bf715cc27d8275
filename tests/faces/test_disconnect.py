"""A client that abandons a blocking request stops its generation (the upstream call is cancelled), and the
record says so: status stopped, "client disconnected". Both faces, a real server, a real socket closed."""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faces.chat.helpers import CHAT_CATALOG, rows
from tests.serving import RunningServer, serve_app

#: the fake provider stands for a slow model: one word every 200 ms, a dozen words (more than 2 s)
SLOW = copy.deepcopy(CHAT_CATALOG)
SLOW["providers"]["fake"] = {"kind": "fake", "chunk_delay_ms": 200}
QUESTION = "one two three four five six seven eight nine ten"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with serve_app(SLOW, tmp_path / "data") as running:
        yield running


def _abandon(server: RunningServer, path: str, body: dict[str, object]) -> None:
    """Send a blocking request, wait a little (the generation is under way), then close the connection."""
    data = json.dumps(body).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        sock.sendall(head.encode() + data)
        time.sleep(0.6)
    # closed: the server sees http.disconnect while the handler awaits the answer


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completion-messages", {"inputs": {"query": QUESTION}, "user": "u", "response_mode": "blocking"}),
        (
            "/api/v1/chat/completions",
            {
                "model": "demo/echo",
                "messages": [{"role": "user", "content": QUESTION}],
                "system_prompt_args": {"name": "Ann"},
            },
        ),
    ],
)
def test_an_abandoned_blocking_request_stops_its_generation(
    server: RunningServer, path: str, body: dict[str, object]
) -> None:
    _abandon(server, path, body)
    [record] = rows(server, expect=1)
    assert record["status"] == "stopped" and record["error"] == "client disconnected"
    words = len(record["answer"].split())
    assert 0 < words < len(QUESTION.split())  # cut short: the upstream call did not run to its end
