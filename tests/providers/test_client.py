"""The upstream HTTP client (providers/client.py) against raw TCP servers on loopback that write exact bytes:
well-behaved, broken and slow upstreams, so framing, pooling, back-pressure, timeouts and failures are pinned."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from promptd.catalog.schema import Timeouts
from promptd.providers.client import HIGH_WATER, HTTPClient, ProtocolError, _Slots
from tests.serving import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Upstream"], Awaitable[None]]


@dataclass
class Upstream:
    url: str
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body) as received
    closed_by_client: int = 0


async def read_request(reader: asyncio.StreamReader, up: Upstream) -> bool:
    """One request off the connection (recorded); False when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        up.closed_by_client += 1
        return False
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    up.requests.append((head, await reader.readexactly(length)))
    return True


@asynccontextmanager
async def upstream(handler: Handler) -> AsyncIterator[Upstream]:
    port = free_port()
    up = Upstream(f"http://127.0.0.1:{port}")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up.connections += 1
        try:
            await handler(reader, writer, up)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", port)
    try:
        yield up
    finally:
        server.close()


def client(timeout: Timeouts | None = None, max_connections: int = 10, **headers: str) -> HTTPClient:
    return HTTPClient(
        headers=headers, timeout=timeout or Timeouts(connect=2, read=2, total=10), max_connections=max_connections
    )


def answer(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        b"".join(h + b"\r\n" for h in extra),
        body,
    )


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
    """Echoes each request's body, on a keep-alive connection, until the client closes it."""
    while await read_request(reader, up):
        writer.write(answer(up.requests[-1][1], b"Content-Type: application/json; charset=utf-8"))
        await writer.drain()


async def test_the_request_goes_out_whole_and_the_response_comes_back() -> None:
    async with upstream(keep_answering) as up:
        http = client(Authorization="Bearer sk-1")
        async with http.post(
            f"{up.url}/v1/chat?x=1", data=b'{"a": 1}', headers={"Content-Type": "application/json"}
        ) as r:
            assert (r.status, r.content_type, await r.read()) == (200, "application/json", b'{"a": 1}')
            assert r.headers["content-type"] == "application/json; charset=utf-8"  # names in lower case
        head = up.requests[0][0].decode()
        assert head.startswith("POST /v1/chat?x=1 HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{up.url.rsplit(':', 1)[1]}\r\n" in head
        assert "Authorization: Bearer sk-1\r\n" in head and "Content-Type: application/json\r\n" in head
        assert "Content-Length: 8\r\n" in head and "User-Agent: promptd/" in head
        await http.aclose()


async def test_keep_alive_reuses_one_connection() -> None:
    async with upstream(keep_answering) as up:
        http = client()
        for i in range(5):
            async with http.post(up.url, data=b"%d" % i) as r:
                assert await r.read() == b"%d" % i
        assert up.connections == 1
        await http.aclose()


async def test_chunked_bodies_arrive_as_they_are_sent() -> None:
    release = asyncio.Event()

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader, up)

    async with upstream(chunked) as up:
        http = client()
        async with http.post(up.url, data=b"") as r:
            assert await r.readany() == b"first"  # before the rest was even written
            assert not r.at_eof()
            release.set()
            assert await r.readany() == b"second"
            assert await r.readany() == b""
            assert r.at_eof()
        await http.aclose()


async def test_a_body_without_length_ends_with_the_connection_which_is_not_reused() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")

    async with upstream(until_close) as up:
        http = client()
        for _ in range(2):
            async with http.post(up.url, data=b"") as r:
                assert await r.read() == b"all of it"
        assert up.connections == 2
        await http.aclose()


async def test_a_connection_the_upstream_closed_while_idle_is_not_reused() -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(answer(b"ok"))
        await writer.drain()  # then the handler returns and the connection is closed, as an idle timeout would

    async with upstream(one_then_close) as up:
        http = client()
        for _ in range(3):
            async with http.post(up.url, data=b"") as r:
                assert await r.read() == b"ok"
            await asyncio.sleep(0.05)  # the upstream's close arrives while the connection is idle
        assert up.connections == 3
        await http.aclose()


async def test_a_response_left_unread_closes_its_connection() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"4\r\ntick\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with upstream(endless) as up:
        http = client()
        async with http.post(up.url, data=b"") as r:
            assert await r.readany()
        async with http.post(up.url, data=b"") as r:  # a new connection: the first one is gone
            assert await r.readany()
        assert up.connections == 2
        assert not http._idle.get(("http", "127.0.0.1", int(up.url.rsplit(":", 1)[1])))
        await http.aclose()


async def test_a_fast_upstream_is_paused_while_the_reader_is_slow() -> None:
    size = 8 * HIGH_WATER
    blob = bytes(range(256)) * (size // 256)

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(answer(blob))
        await writer.drain()

    async with upstream(big) as up:
        http = client()
        async with http.post(up.url, data=b"") as r:
            await asyncio.sleep(0.2)  # the upstream writes as fast as it can meanwhile
            conn = r._conn
            assert conn.paused and conn.buffered <= HIGH_WATER + 256 * 1024  # one read past the mark at most
            parts = [await r.readany()]
            assert not conn.paused  # reading resumed once the buffer was taken
            parts.append(await r.read())
        assert b"".join(parts) == blob
        await http.aclose()


async def test_no_headers_within_the_read_timeout_is_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        await asyncio.sleep(5)

    async with upstream(silent) as up:
        http = client(Timeouts(connect=2, read=0.2, total=10))
        with pytest.raises(TimeoutError):
            async with http.post(up.url, data=b""):
                pass
        await http.aclose()


async def test_a_whole_reply_is_awaited_past_the_read_timeout_up_to_the_total() -> None:
    """A completion asked for unstreamed sends nothing until it is done: only the total timeout bounds it."""

    async def thinking(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        while await read_request(reader, up):
            await asyncio.sleep(0.5 if len(up.requests) == 1 else 5)  # longer than the read timeout (0.2 s)
            writer.write(answer(b"{}"))
            await writer.drain()

    async with upstream(thinking) as up:
        http = client(Timeouts(connect=2, read=0.2, total=1))
        async with http.post(up.url, data=b"", whole=True) as r:
            assert (r.status, await r.read()) == (200, b"{}")
        with pytest.raises(TimeoutError):  # the second reply takes longer than the total (1 s)
            async with http.post(up.url, data=b"", whole=True):
                pass
        await http.aclose()


async def test_the_total_deadline_covers_the_body() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(50):
            writer.write(b"1\r\n.\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)  # each read well within the read timeout

    async with upstream(trickle) as up:
        http = client(Timeouts(connect=2, read=1, total=0.5))
        with pytest.raises(TimeoutError):
            async with http.post(up.url, data=b"") as r:
                await r.read()
        await http.aclose()


async def test_waiting_for_a_free_connection_counts_against_the_total_deadline_only() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        while await read_request(reader, up):
            await asyncio.sleep(0.2)
            writer.write(answer(b"late"))
            await writer.drain()

    async with upstream(slow) as up:
        http = client(Timeouts(connect=0.05, read=5, total=1.0), max_connections=1)

        async def call() -> bytes:
            async with http.post(up.url, data=b"") as r:
                return await r.read()

        first = asyncio.create_task(call())
        await asyncio.sleep(0.05)
        assert await call() == b"late"  # waited 0.15 s for the slot: longer than connect, within total
        assert await first == b"late"
        blocker = asyncio.create_task(call())
        await asyncio.sleep(0.05)
        http.total_timeout = 0.2
        with pytest.raises(TimeoutError):
            await call()  # the slot is taken for longer than the whole call may last
        assert await blocker == b"late"
        await http.aclose()


async def test_a_response_that_is_not_http_is_a_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with upstream(garbage) as up:
        http = client()
        with pytest.raises(ProtocolError):
            async with http.post(up.url, data=b""):
                pass
        await http.aclose()


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n",  # any case of 'chunked'
    ],
    ids=["by-length", "chunked"],
)
async def test_a_body_cut_short_is_a_connection_error(head: bytes) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(head)
        await writer.drain()

    async with upstream(cut) as up:
        http = client()
        async with http.post(up.url, data=b"") as r:
            with pytest.raises(ConnectionError):
                await r.read()
        await http.aclose()


async def test_a_refused_connection_is_an_os_error() -> None:
    http = client()
    with pytest.raises(OSError):
        async with http.post(f"http://127.0.0.1:{free_port()}/", data=b""):
            pass
    await http.aclose()


async def test_a_gzip_body_is_decoded_even_though_we_never_ask_for_one() -> None:
    text = b"compressed " * 1000

    async def gz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(answer(gzip.compress(text), b"Content-Encoding: gzip"))
        await writer.drain()

    async with upstream(gz) as up:
        http = client()
        async with http.post(up.url, data=b"") as r:
            assert await r.read() == text
        assert b"accept-encoding" not in up.requests[0][0].lower()
        await http.aclose()


async def test_at_most_max_connections_are_open_at_once() -> None:
    async def slowish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        while await read_request(reader, up):
            await asyncio.sleep(0.05)
            writer.write(answer(b"x"))
            await writer.drain()

    async with upstream(slowish) as up:
        http = client(max_connections=3)

        async def call() -> bytes:
            async with http.post(up.url, data=b"") as r:
                return await r.read()

        assert await asyncio.gather(*(call() for _ in range(12))) == [b"x"] * 12
        assert up.connections == 3
        await http.aclose()


async def test_drain_later_returns_the_connection_once_the_body_ends_without_anyone_waiting() -> None:
    async def late_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        while await read_request(reader, up):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n[DONE]\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)  # the end of the chunked body comes later
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with upstream(late_end) as up:
        http = client()
        began = time.monotonic()
        async with http.post(up.url, data=b"") as r:
            assert await r.readany() == b"[DONE]"
            r.drain_later(1.0)
        assert time.monotonic() - began < 0.1  # leaving did not wait for the end of the body
        await asyncio.sleep(0.3)
        async with http.post(up.url, data=b"") as r:
            assert await r.readany() == b"[DONE]"
            r.drain_later(1.0)
        assert up.connections == 1  # the drained connection was reused
        await http.aclose()


async def test_a_body_that_does_not_end_within_the_drain_time_costs_its_connection() -> None:
    async def never_ends(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await read_request(reader, up)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n[DONE]\r\n")
        await writer.drain()
        await read_request(reader, up)  # until the client gives up on this connection

    async with upstream(never_ends) as up:
        http = client()
        async with http.post(up.url, data=b"") as r:
            assert await r.readany() == b"[DONE]"
            r.drain_later(0.1)
        for _ in range(50):
            if up.closed_by_client:
                break
            await asyncio.sleep(0.02)
        assert up.closed_by_client == 1 and not any(http._idle.values())
        await http.aclose()


async def test_an_informational_response_is_not_taken_for_the_answer() -> None:
    async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        while await read_request(reader, up):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(answer(b"answer %d" % len(up.requests)))
            await writer.drain()

    async with upstream(early_hints) as up:
        http = client()
        for i in (1, 2):
            async with http.post(up.url, data=b"") as r:
                assert (r.status, await r.read()) == (200, b"answer %d" % i)
                assert "link" not in r.headers
        assert up.connections == 1
        await http.aclose()


async def test_a_gzip_body_split_anywhere_is_decoded_whole_and_a_cut_one_is_an_error() -> None:
    text = b"compressed " * 200
    packed = gzip.compress(text)

    async def split(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        while await read_request(reader, up):
            body = packed if len(up.requests) == 1 else packed[:-12]  # the second one loses its trailer
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n")
            for piece in (body[:5], body[5:]):  # the first piece is only part of gzip's header
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with upstream(split) as up:
        http = client()
        async with http.post(up.url, data=b"") as r:
            assert await r.read() == text
        async with http.post(up.url, data=b"") as r:
            with pytest.raises(ProtocolError):
                await r.read()
        await http.aclose()


async def test_headers_merge_by_name_in_any_case_and_a_given_host_replaces_ours() -> None:
    async with upstream(keep_answering) as up:
        http = client(**{"host": "api.example.com", "user-agent": "mine/1", "authorization": "Bearer a"})
        async with http.post(up.url, data=b"", headers={"Authorization": "Bearer b"}) as r:
            await r.read()
        lines = up.requests[0][0].decode().lower().split("\r\n")
        assert [line for line in lines if line.startswith("host:")] == ["host: api.example.com"]
        assert [line for line in lines if line.startswith("user-agent:")] == ["user-agent: mine/1"]
        assert [line for line in lines if line.startswith("authorization:")] == ["authorization: bearer b"]
        with pytest.raises(ValueError):
            async with http.post(up.url, data=b"", headers={"X-Bad": "a\r\nInjected: yes"}):
                pass
        await http.aclose()


async def test_head_is_refused_rather_than_left_waiting_for_a_body() -> None:
    http = client()
    with pytest.raises(ValueError):
        async with http.request("HEAD", "http://127.0.0.1:9/"):
            pass
    await http.aclose()


async def test_the_pool_s_slots_go_to_waiters_in_order_and_a_cancelled_waiter_takes_none() -> None:
    """The pool's semaphore (_Slots): a released slot goes to the longest waiter; a waiter cancelled while it
    waits (its total timeout) is skipped, and one cancelled after it was handed a slot passes it on."""
    slots = _Slots(1)
    assert slots.take_now() and not slots.take_now()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await slots.take()
        order.append(name)

    first, gone, second = (asyncio.create_task(waiter(n)) for n in ("first", "gone", "second"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    slots.release()  # to `first`
    await first
    slots.release()  # `gone` was cancelled: to `second`
    await second
    assert order == ["first", "second"] and slots.free == 0
    late = asyncio.create_task(waiter("late"))
    await asyncio.sleep(0)
    slots.release()  # handed to `late`, which is cancelled before it runs: the slot comes back
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert order == ["first", "second"] and slots.free == 1 and not slots.waiters
    assert slots.take_now()
