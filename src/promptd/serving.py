"""uvicorn's httptools protocol, with a response's head and body sent in one write.

uvicorn writes the status line and headers as soon as the app sends `http.response.start`, then the body
with `http.response.body`: two `send()` system calls for every blocking answer, and on loopback each wakes
the client once (its head parsed, then its body awaited). Those two writes were the largest single cost in
a promptd request at concurrency 1 (docs/benchmarks.md). Here the head waits for what follows it in the
same step of the event loop: a blocking answer leaves in one write; a streamed one sends its head when its
first chunk is sent, or at the latest on the loop's next turn.

Every write of the connection, the protocol's own and each response's, passes through one `_Coalescing`
transport, so the order of bytes on the wire never changes; closing the connection sends what is held first.

The same protocol bounds what a client may make the server hold (ServingLimits, from the settings): the time
to send a request's head (`header_timeout`, also the time a new connection may stay silent) and its body
(`body_timeout`), the head's size (`max_header_kb`: 431), the body's size (`max_body_mb`, or `max_upload_mb`
for multipart uploads: 413, at once from Content-Length, or as a chunked body's bytes arrive, before the rest
is read) and the number of open connections (`max_connections`: 503 and closed). Idle keep-alive connections
are closed after uvicorn's `timeout_keep_alive` (`keepalive_timeout`). A refusal is answered in the error
shape of the API the path belongs to (faces/refusal.py) and the connection is closed; a request already
handed to the app sees its client disconnect. Each refusal answered is logged and counted with the app's own
(promptd/rejections.py: the `rejections` table and `promptd_rejections_total`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from promptd.faces.refusal import refusal_body
from promptd.rejections import count_refusal
from promptd.settings import Settings

__all__ = ["CoalescingProtocol", "ServerConfig", "ServingLimits", "run", "serving_limits"]

log = logging.getLogger("promptd.serving")


@dataclass(frozen=True, slots=True)
class ServingLimits:
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = 101 * 1024 * 1024
    max_connections: int | None = 1000


def serving_limits(settings: Settings) -> ServingLimits:
    return ServingLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=int(settings.max_header_kb * 1024),
        max_body_bytes=int(settings.max_body_mb * 1024 * 1024),
        max_upload_bytes=int(settings.upload_body_limit_mb * 1024 * 1024),
        max_connections=settings.max_connections or None,
    )


class ServerConfig(uvicorn.Config):
    """uvicorn's Config carrying promptd's ServingLimits to the protocol (and, pickled, to worker processes)."""

    def __init__(self, app: Any, *, limits: ServingLimits, **options: Any) -> None:
        super().__init__(app, **options)
        self.limits = limits


def run(app: Any, *, limits: ServingLimits, supervisor: Any = None, **options: Any) -> None:
    """uvicorn.run(app, **options), with the limits: one process, or `workers` processes on one socket (under
    `supervisor`, uvicorn's Multiprocess by default)."""
    from uvicorn.supervisors import Multiprocess

    config = ServerConfig(app, limits=limits, **options)
    server = uvicorn.Server(config)
    if config.workers > 1:
        (supervisor or Multiprocess)(config, sockets=[config.bind_socket()]).run()
        return
    server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the server could not start


_REASONS = {408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}  # fmt: skip


class _Coalescing:
    """A transport on which a write announced by `hold_next()` (a response's head) waits to be joined by the
    writes after it, until the loop's next turn. Pipelined requests announce a head each."""

    __slots__ = ("_held", "_hold", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._hold = 0  # heads announced and not written yet

    def hold_next(self) -> None:
        self._hold += 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held:
            self._held.append(bytes(data))
            self.flush()
        elif self._hold:
            self._hold -= 1
            self._held.append(bytes(data))
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:  # everything else: the socket's transport itself
        return getattr(self._transport, name)


class CoalescingProtocol(HttpToolsProtocol):
    """uvicorn's `--http httptools`, sending each response's head with what follows it, within the limits
    (see the module)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ServingLimits = getattr(config, "limits", None) or ServingLimits()
        self._deadline: asyncio.TimerHandle | None = None
        self._head = True  # reading a request's head (or waiting for one)
        self._head_bytes = 0
        self._body_bytes = 0
        self._body_limit = 0
        self._refusal: tuple[int, str, str] | None = None
        self._running: RequestResponseCycle | None = None  # the cycle of the request being read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = self.limits.max_connections is not None and len(self.connections) >= self.limits.max_connections
        super().connection_made(_Coalescing(transport, self.loop))  # type: ignore[arg-type]
        if full:
            self._refuse(503, "too_many_connections", "The server has too many open connections; try again.")
            return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._head:
            if self._deadline is None:  # the first byte of a request on a kept-alive connection
                self._arm(self.limits.header_timeout)
            self._head_bytes += len(data)
        super().data_received(data)
        if self._refusal is None and self._head and self._head_bytes > self.limits.max_header_bytes:
            self._refusal = (431, "header_too_large", "The request's headers are too large.")
        if self._refusal is not None:
            self._refuse(*self._refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head, self._body_bytes, self._running = True, 0, None

    def on_headers_complete(self) -> None:
        self._head = False
        self._disarm()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self._refusal = (431, "header_too_large", "The request's headers are too large.")
            return
        fields = dict(self.headers)
        multipart = fields.get(b"content-type", b"").lower().startswith(b"multipart/")
        self._body_limit = self.limits.max_upload_bytes if multipart else self.limits.max_body_bytes
        length = fields.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self._body_limit:
            self._refusal = self._too_large()
            return
        super().on_headers_complete()
        self._running = self.cycle
        self.transport.hold_next()  # type: ignore[attr-defined]  # the next write is a response's head
        has_body = int(length) > 0 if length.isdigit() else b"transfer-encoding" in fields
        if has_body or b"transfer-encoding" in fields:
            self._arm(self.limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        if self._refusal is not None:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self._body_limit:  # a chunked body, counted as it arrives
            self._refusal = self._too_large()
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is not None:
            return
        self._disarm()
        self._head, self._head_bytes = True, 0
        super().on_message_complete()

    # --- refusals ---------------------------------------------------------------------------------------------

    def _too_large(self) -> tuple[int, str, str]:
        mb = self._body_limit / 1024 / 1024
        return 413, "request_too_large", f"The request body is larger than the limit of {mb:g} MB."

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self._head and not self._head_bytes:  # a connection that never said anything: closed
            self.transport.close()
            return
        self._refuse(408, "request_timeout", "The request was not received in time.")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` in the path's API shape (unless the app has started answering) and close."""
        self._disarm()
        self._refusal = (status, code, message)
        running = self._running
        if running is not None and not running.response_complete:  # the app has the request: it sees the
            running.disconnected = True  # client leave (its body read fails), and its answer goes nowhere
            running.message_event.set()
            if running.response_started:
                self.transport.close()
                return
        url: bytes = getattr(self, "url", b"")  # none before a request began
        path = url.split(b"?", 1)[0].decode("latin-1")
        body = refusal_body(path, status, code, message)
        log.info("refused %s (%d %s)", path or "a connection", status, code)
        count_refusal(self.app_state, path, status, code)
        if not self.transport.is_closing():
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head % (status, _REASONS[status], len(body)) + body)
            self.transport.close()
