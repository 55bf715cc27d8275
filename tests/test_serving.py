"""promptd's HTTP protocol (uvicorn's httptools one, a response's head sent with what follows it): the bytes
each write puts on the wire, read off a transport that records them. Real sockets run it in every other test
(tests/serving.py serves promptd with it)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from promptd.serving import CoalescingProtocol

REQUEST = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"


class RecordingTransport(asyncio.Transport):
    """A connection's socket, as far as the protocol can tell: every write is kept, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def connect(app: Any, transport: RecordingTransport, request: bytes = REQUEST) -> CoalescingProtocol:
    """A fresh connection serving `app` over `transport`, `request` received on it."""
    config = uvicorn.Config(app, http=CoalescingProtocol, log_level="warning", lifespan="off")
    config.load()
    protocol = CoalescingProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(transport)
    protocol.data_received(request)
    return protocol


async def exchange(app: Any, request: bytes = REQUEST, *, turns: int = 20) -> list[bytes]:
    """Feed one request to a fresh connection and return the writes it made, each as it reached the socket."""
    transport = RecordingTransport()
    protocol = connect(app, transport, request)
    for _ in range(turns):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport.writes


async def test_a_blocking_answer_leaves_in_one_write() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})

    writes = await exchange(app)
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\nhello")


async def test_a_stream_sends_its_head_with_the_first_chunk_and_each_chunk_after_as_it_comes() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    first, *rest = await exchange(app)
    head, chunk = first.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in head
    assert [chunk, *rest] == [b"3\r\none\r\n", b"3\r\ntwo\r\n", b"0\r\n\r\n"]


async def test_a_head_with_nothing_after_it_is_sent_on_the_next_turn_of_the_loop() -> None:
    transport = RecordingTransport()
    written_in_the_same_step: list[int] = []
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        written_in_the_same_step.append(len(transport.writes))
        await release.wait()  # a stream waiting for its first token
        await send({"type": "http.response.body", "body": b""})

    protocol = connect(app, transport)
    for _ in range(5):
        await asyncio.sleep(0)
    assert written_in_the_same_step == [0]  # held for whatever the app would send next in that step
    assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.writes[1:] == [b"0\r\n\r\n"]
    protocol.connection_lost(None)


async def test_closing_the_connection_sends_what_is_held_first() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9")]})
        raise RuntimeError("the app fails after the head")  # uvicorn closes the connection at once

    writes = await exchange(app)
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_pipelined_requests_get_their_answers_in_order() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
        await send({"type": "http.response.body", "body": scope["path"][-1:].encode()})

    writes = await exchange(app, REQUEST + b"GET /y HTTP/1.1\r\nHost: t\r\n\r\n")
    assert len(writes) == 2
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\nx")
    assert writes[1].startswith(b"HTTP/1.1 200 OK\r\n") and writes[1].endswith(b"\r\n\r\ny")
