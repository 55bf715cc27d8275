"""A lean pooled HTTP/1.1 client for upstream calls: the gateway's hottest path after its own server.

aiohttp's client was the largest single cost of a proxied request (24 % of promptd's CPU at concurrency 64,
docs/benchmarks.md). This one does only what an upstream call needs: one request written in one socket write,
the response parsed by httptools (llhttp, as uvicorn's server side), the body handed over as it arrives, and the
connection kept for the next call.

- **Pool**: idle connections per (scheme, host, port), newest first; one idle longer than `keepalive` seconds,
  or one the server has closed meanwhile, is never reused. At most `max_connections` requests are in flight
  (others wait for a slot, within the connect timeout).
- **Timeouts** (`Timeouts`, as aiohttp's `sock_connect`, `sock_read` and `total`): `connect` for a slot and the
  TCP (and TLS) connection; `read` between two reads of the response (the headers included); `total` for the
  whole call, body included. Each raises `TimeoutError`.
- **Failures**: a refused, reset or closed connection raises `ConnectionError` (an `OSError`, as are DNS and TLS
  failures); a response that is not HTTP raises `ProtocolError`. providers/http.py turns these into promptd's errors.
- **Back-pressure**: reading from the socket pauses while more than `HIGH_WATER` bytes of body wait for the
  reader, so a fast upstream cannot fill memory behind a slow client.
- **A response left early** (the caller stops reading, or its task is cancelled) closes its connection, so the
  upstream sees the call end; only a response read to its end returns its connection to the pool.
- A body sent with `Content-Encoding: gzip` or `deflate` (which we never ask for) is decoded all the same.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from promptd import __version__
from promptd.catalog.schema import Timeouts

__all__ = ["HIGH_WATER", "HTTPClient", "ProtocolError", "Response"]

HIGH_WATER = 1024 * 1024  # bytes of unread body before the socket is paused
_USER_AGENT = f"promptd/{__version__}"


def _merged(*layers: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Header layers merged by name in any case, a later layer's value winning: {lower name: (name, value)}.
    A layer may hold (name, value) pairs already. A value that could end the header early is refused."""
    out: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer.items():
            pair = value if isinstance(value, tuple) else (name, str(value))
            if any(c in pair[0] + pair[1] for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: a line break or NUL in a header")
            out[name.lower()] = pair
    return out


class ProtocolError(Exception):
    """The upstream's answer is not valid HTTP/1.1."""


class _Connection(asyncio.Protocol):
    """One TCP connection and the response being read on it."""

    __slots__ = (
        "_decoder", "_informational", "_loop", "_until_eof", "_waiter", "body", "buffered", "closed", "complete",
        "error", "headers", "headers_done", "idle_since", "keep_alive", "key", "parser", "paused", "status",
        "transport",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int]) -> None:
        self._loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self.parser = httptools.HttpResponseParser(self)  # llhttp reads one response after another
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.error: BaseException | None = None
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self._until_eof = False  # neither Content-Length nor chunked: the body ends with the connection
        self._informational = False  # parsing a 1xx response
        self._decoder: Any = None

    # --- asyncio.Protocol --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"malformed HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and self._until_eof and not self.complete and exc is None:
            self.complete = True
        elif not self.complete:
            self._fail(ConnectionError(f"the upstream closed the connection{f': {exc}' if exc else ''}"))
        self._wake()

    # --- httptools callbacks ------------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: not the answer, which follows on this connection
            self.headers = {}
            self._informational = True
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message is complete
        self.headers_done = True
        headers = self.headers
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._until_eof = "content-length" not in headers and not chunked
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.complete = True
        self._wake()

    # --- the reader's side --------------------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, deadline: float, read_timeout: float | None) -> None:
        """Until the parser makes progress, the connection ends, or the read timeout / total deadline passes."""
        if self.error is not None:
            raise self.error
        loop = self._loop
        when = deadline if read_timeout is None else min(deadline, loop.time() + read_timeout)
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(when, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        """Everything the body has delivered so far (decoded), and resume reading if it was paused."""
        if len(self.body) == 1:
            data = self.body.popleft()
        else:
            data = b"".join(self.body)
            self.body.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                raise ProtocolError(f"malformed compressed body: {exc}") from exc
        return data

    def finish(self) -> bytes:
        """The end of a complete body: what a decoder still holds (b"" after the first call)."""
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return b""
        try:
            rest = bytes(decoder.flush())
        except zlib.error as exc:
            raise ProtocolError(f"malformed compressed body: {exc}") from exc
        if not decoder.eof:
            raise ProtocolError("the compressed body ended before its end")
        return rest

    def reusable(self) -> bool:
        return not self.closed and self.complete and not self.body and self.keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Response:
    """A response whose status and headers have arrived; the body is read with `readany()` or `read()`.
    Use it as an async context manager: leaving it returns the connection to the pool, or closes it when the
    body was not read to its end."""

    __slots__ = ("_client", "_conn", "_deadline", "_drain", "_read_timeout", "headers", "status")

    def __init__(self, client: HTTPClient, conn: _Connection, deadline: float, read_timeout: float | None) -> None:
        self._client = client
        self._conn = conn
        self._deadline = deadline
        self._read_timeout = read_timeout
        self._drain = 0.0
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers  # names in lower case

    @property
    def content_type(self) -> str:
        """The media type, without parameters, in lower case ("" when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def at_eof(self) -> bool:
        return self._conn.complete and not self._conn.body

    async def readany(self) -> bytes:
        """The next part of the body as it arrives; b"" once the body is complete."""
        conn = self._conn
        while True:
            if conn.body:
                data = conn.take()
                if data:  # a compressed piece may decode to nothing yet
                    return data
            elif conn.complete:
                return conn.finish()
            else:
                await conn.wait(self._deadline, self._read_timeout)

    async def read(self) -> bytes:
        parts = []
        while part := await self.readany():
            parts.append(part)
        return b"".join(parts)

    def drain_later(self, seconds: float) -> None:
        """The caller has all it needs (an SSE stream's `[DONE]`): leaving the response then reads the rest of
        the body (normally only the end of a chunked body) in the background, for at most `seconds`, so that the
        connection can go back to the pool without the caller waiting for those last bytes."""
        self._drain = seconds

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        conn = self._conn
        if (
            self._drain
            and kind is None
            and conn.keep_alive
            and not conn.complete
            and not conn.error
            and not conn.closed
        ):
            self._client.drain_then_release(conn, self._drain)
        else:
            self._client.release(conn)


class _Call:
    """`async with client.request(...) as response:`"""

    __slots__ = ("_args", "_client", "_response")

    def __init__(self, client: HTTPClient, args: tuple[str, str, bytes, Mapping[str, str] | None, bool]) -> None:
        self._client = client
        self._args = args
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        self._response = await self._client.send(*self._args)
        return self._response

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is not None:
            await self._response.__aexit__(kind, exc, tb)


class _Slots:
    """A semaphore for the pool's requests in flight, first come first served. asyncio.Semaphore's `locked()`
    and `acquire()` each build a generator over its waiters, on every request (0.7 % of promptd's samples at
    c=256); here taking a free slot is a comparison and a subtraction."""

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_now(self) -> bool:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.take_now():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter  # woken with a slot handed over by release()
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled before it could be used: the next one takes it
            elif waiter in self.waiters:  # cancelled while waiting (release() drops the cancelled it meets)
                self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class HTTPClient:
    """A pool of keep-alive HTTP/1.1 connections (any number of hosts), with promptd's three timeouts."""

    def __init__(
        self, *, headers: Mapping[str, str], timeout: Timeouts, max_connections: int, keepalive: float = 30.0
    ) -> None:
        self._headers = _merged({"User-Agent": _USER_AGENT}, headers)
        self.connect_timeout = timeout.connect
        self.read_timeout = timeout.read
        self.total_timeout = timeout.total
        self.keepalive = keepalive
        self._slots = _Slots(max_connections) if max_connections > 0 else None
        self._idle: dict[tuple[str, str, int], collections.deque[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[tuple[str, str, int], bytes]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._draining: set[asyncio.Task[None]] = set()
        self.closed = False

    def request(self, method: str, url: str, body: bytes = b"", headers: Mapping[str, str] | None = None) -> _Call:
        return _Call(self, (method, url, body, headers, False))

    def post(self, url: str, *, data: bytes, headers: Mapping[str, str] | None = None, whole: bool = False) -> _Call:
        """`whole`: the server sends nothing until its whole reply is ready (a completion asked for unstreamed),
        so the wait is bounded by the total timeout only, not by the read timeout between bytes."""
        return _Call(self, ("POST", url, data, headers, whole))

    async def send(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str] | None, whole: bool = False
    ) -> Response:
        """Send one request and wait for its status and headers (the body is read from the `Response`)."""
        if self.closed:
            raise ConnectionError("the HTTP client is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.total_timeout if self.total_timeout is not None else 1e9)
        key, head = self._head(method, url, headers)
        read_timeout = None if whole else self.read_timeout
        if self._slots is not None:
            await self._slot(deadline)
        conn: _Connection | None = None
        try:
            conn = self._pooled(key) or await self._connect(loop, key, deadline)
            self._busy.add(conn)
            conn._reset()
            assert conn.transport is not None
            conn.transport.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
            while not conn.headers_done:
                await conn.wait(deadline, read_timeout)
        except BaseException:
            if conn is not None:
                self.release(conn, force_close=True)
            elif self._slots is not None:
                self._slots.release()
            raise
        return Response(self, conn, deadline, read_timeout)

    async def _slot(self, deadline: float) -> None:
        assert self._slots is not None
        if self._slots.take_now():  # the fast path
            return
        async with asyncio.timeout_at(deadline):  # our own pool is full: the upstream's connect time is not running
            await self._slots.take()

    def _head(self, method: str, url: str, headers: Mapping[str, str] | None) -> tuple[tuple[str, str, int], bytes]:
        """The request's bytes up to the value of Content-Length, built once per (method, URL, headers)."""
        extra = tuple(headers.items()) if headers else ()
        cached = self._heads.get((method, url, extra))
        if cached is not None:
            return cached
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        if method == "HEAD":
            raise ValueError("HEAD is not supported: its response has no body to wait for")
        merged = _merged({"host": ("Host", host if default else f"{host}:{port}")}, self._headers, dict(extra))
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{name}: {value}" for key, (name, value) in merged.items() if key != "content-length"]
        head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        if len(self._heads) > 256:  # URLs are few (one per endpoint); never let a odd caller grow this
            self._heads.clear()
        result = self._heads[(method, url, extra)] = ((scheme, parts.hostname, port), head)
        return result

    def _pooled(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest to be alive
            if not conn.closed and now - conn.idle_since < self.keepalive:
                return conn
            conn.close()
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], deadline: float
    ) -> _Connection:
        scheme, host, port = key
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        limit = deadline - loop.time()
        if self.connect_timeout is not None:
            limit = min(limit, self.connect_timeout)
        async with asyncio.timeout(limit):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop, key), host, port, ssl=context, server_hostname=host if context else None
            )
        return conn

    def release(self, conn: _Connection, *, force_close: bool = False) -> None:
        """Give a connection back: to the pool when its response was read to the end, else closed."""
        if conn not in self._busy:
            return
        self._busy.discard(conn)
        if self._slots is not None:
            self._slots.release()
        if force_close or self.closed or not conn.reusable():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(conn.key, collections.deque())
        while idle and conn.idle_since - idle[0].idle_since >= self.keepalive:
            idle.popleft().close()  # the oldest has outlived the keep-alive: nothing will take it any more
        idle.append(conn)

    def drain_then_release(self, conn: _Connection, seconds: float) -> None:
        """Read what is left of a response's body, for at most `seconds`, in a task; then release it."""
        task = asyncio.get_running_loop().create_task(self._drain(conn, seconds))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _drain(self, conn: _Connection, seconds: float) -> None:
        deadline = conn._loop.time() + seconds
        try:
            while not conn.complete:
                conn.take()  # discarded (and reading resumed, were it paused)
                await conn.wait(deadline, None)
            conn.take()
        except (Exception, asyncio.CancelledError):
            pass  # not complete: release() closes the connection instead of pooling it
        finally:
            self.release(conn)

    async def aclose(self) -> None:
        self.closed = True
        for task in list(self._draining):
            task.cancel()
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        await asyncio.sleep(0)  # let the transports close
