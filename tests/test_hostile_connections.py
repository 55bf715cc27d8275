"""Hostile clients at the connection level: slow heads and bodies, silent and idle connections, oversized heads
and bodies (declared or chunked), too many connections. A real server and raw sockets; the server's limits
are set small so the tests run fast (no assertion is about time: HANG only turns a hang into a failure)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAKE_CATALOG
from tests.console.helpers import admin_key, get
from tests.serving import RunningServer, serve_app

HANG = 30

LIMITS: dict[str, Any] = {
    "header_timeout": 1.0,
    "body_timeout": 1.0,
    "keepalive_timeout": 0.5,
    "max_header_kb": 16,
    "max_body_mb": 1,
    "max_upload_mb": 2,
    "max_connections": 8,
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with serve_app(FAKE_CATALOG, tmp_path / "data", **LIMITS) as running:
        yield running


def _connect(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=HANG)
    return sock


def _read_response(sock: socket.socket, *, then_closed: bool = True) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, closed): one response, then (unless told not to wait for it) whether the
    server closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, headers, body[:length], then_closed and _closed(sock)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _drip(sock: socket.socket, data: bytes, stop: threading.Event) -> threading.Thread:
    """Send `data` one byte every 0.2 s until done, stopped or refused (a slowloris client)."""

    def run() -> None:
        for b in data:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([b]))
            except OSError:
                return
            time.sleep(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_head_sent_byte_by_byte_is_refused_with_a_408(server: RunningServer) -> None:
    stop = threading.Event()
    with _connect(server) as sock:
        sock.sendall(b"POST /v1/completion-messages HTTP/1.1\r\nHost: x\r\n")
        thread = _drip(sock, b"X-Slow: " + b"a" * 200 + b"\r\n\r\n", stop)
        status, _, body, closed = _read_response(sock)
        stop.set()
    thread.join(HANG)
    assert status == 408 and closed
    assert json.loads(body) == {"code": "request_timeout", "message": json.loads(body)["message"], "status": 408}


def test_a_body_sent_byte_by_byte_is_refused_with_a_408(server: RunningServer) -> None:
    stop = threading.Event()
    with _connect(server) as sock:
        sock.sendall(
            b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + server.key.encode() + b"\r\nContent-Length: 500\r\n\r\n"
        )
        thread = _drip(sock, b"{" * 500, stop)
        status, _, body, closed = _read_response(sock)
        stop.set()
    thread.join(HANG)
    assert status == 408 and closed
    assert set(json.loads(body)) == {"error"}  # the Adaptive face's shape


def test_a_silent_connection_is_closed(server: RunningServer) -> None:
    with _connect(server) as sock:
        assert _closed(sock)  # nothing sent: closed after header_timeout, no response


def test_an_idle_keep_alive_connection_is_closed(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _, _ = _read_response(sock, then_closed=False)
        assert status == 200
        assert _closed(sock)  # kept alive, then closed after keepalive_timeout


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /v1/completion-messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n"  # 100 MB announced, none sent
        )
        status, _, body, closed = _read_response(sock)
    assert status == 413 and closed
    error = json.loads(body)
    assert error["status"] == 413 and error["code"] == "request_too_large" and "1 MB" in error["message"]


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(server: RunningServer) -> None:
    sent = 0
    chunk = b"x" * 65536
    with _connect(server) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + server.key.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            while sent < 200 * 1024 * 1024:  # a 200 MB upload, unless the server stops it
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:
            pass  # refused and closed: the rest is never read
        status, _, body, closed = _read_response(sock)
    assert status == 413 and closed
    assert json.loads(body)["error"]["code"] == "request_too_large"  # the OpenAI alias's shape
    assert sent < 50 * 1024 * 1024  # far from the whole upload: it was stopped while it came in


def test_a_head_over_the_limit_is_refused_with_a_431(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /admin/v1/keys HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n")
        status, _, body, closed = _read_response(sock)
    assert status == 431 and closed
    assert json.loads(body)["error"]["status"] == 431  # the admin API's shape


def test_a_multipart_upload_may_be_larger_than_a_json_body(server: RunningServer) -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * (1024 * 1024 + 100)  # over max_body_mb, under max_upload_mb
    r = httpx.post(
        f"{server.v1}/files/upload",
        headers=server.headers(),
        files={"file": ("a.png", data, "image/png")},
        data={"user": "u"},
        timeout=HANG,
    )
    assert r.status_code != 413, r.text  # judged by the upload's own rules, not the JSON body limit
    r = httpx.post(
        f"{server.v1}/completion-messages",
        headers=server.headers(),
        content=b'{"inputs": {"query": "' + b"a" * (1024 * 1024 + 100) + b'"}, "user": "u"}',
        timeout=HANG,
    )
    assert r.status_code == 413 and r.json()["status"] == 413


def test_connections_past_the_limit_get_a_503_and_real_requests_go_on(server: RunningServer) -> None:
    idle = [_connect(server) for _ in range(LIMITS["max_connections"])]
    try:
        extra = _connect(server)
        with extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _, closed = _read_response(extra)
        assert status == 503 and closed
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + HANG
    while True:  # the idle ones are gone (the server notices their close): real requests are served again
        r = httpx.get(f"{server.url}/health", timeout=HANG)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 200


def test_refusals_are_counted_with_the_apps_own_in_metrics_and_the_rejections_table(server: RunningServer) -> None:
    """Each refusal the server answers before the app sees the request (413, 431, 408, 503) is counted where the
    app's refusals are (a wrong key's 401 here): `promptd_rejections_total` by face, status and code, and the
    `rejections` table the management API lists (no key known; no face for a connection refused before its
    request was read)."""
    idle = [_connect(server) for _ in range(LIMITS["max_connections"])]
    try:
        with _connect(server) as extra:
            extra.sendall(b"POST /v1/completion-messages HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(extra)[0] == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + HANG
    while httpx.get(f"{server.url}/health", timeout=HANG).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)  # the idle connections are gone
    with _connect(server) as sock:
        sock.sendall(b"POST /v1/completion-messages HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
        assert _read_response(sock)[0] == 413
    with _connect(server) as sock:
        sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n")
        assert _read_response(sock)[0] == 431
    with _connect(server) as sock:  # a body that never comes: the app has the request, the server answers 408
        sock.sendall(
            b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + server.key.encode() + b"\r\nContent-Length: 500\r\n\r\n{"
        )
        assert _read_response(sock)[0] == 408
    wrong = httpx.post(
        server.v1 + "/completion-messages", json={"inputs": {}, "user": "u"}, headers=server.headers("x")
    )
    assert wrong.status_code == 401
    scrape = httpx.get(server.url + "/metrics", timeout=HANG).text
    for face, status, code in [("", 503, "too_many_connections"), ("dify", 413, "request_too_large"),
                               ("chat", 431, "header_too_large"), ("chat", 408, "request_timeout"),
                               ("dify", 401, "unauthorized")]:  # fmt: skip
        assert f'promptd_rejections_total{{code="{code}",face="{face}",status="{status}"}} 1.0' in scrape, scrape
    admin = admin_key(server)
    listed = get(server, admin, "/rejections").json()["data"]
    assert sorted((g["face"] or "", g["status"], g["code"], g["requests"]) for g in listed) == [
        ("", 503, "too_many_connections", 1),
        ("chat", 408, "request_timeout", 1),
        ("chat", 431, "header_too_large", 1),
        ("dify", 401, "unauthorized", 1),
        ("dify", 413, "request_too_large", 1),
    ]
    assert all(g["project"] is None and g["key_id"] is None for g in listed)
