"""uvicorn's httptools protocol, with a response's head and body sent in one write.

uvicorn writes the status line and headers as soon as the app sends `http.response.start`, then the body
with `http.response.body`: two `send()` system calls for every blocking answer, and on loopback each wakes
the client once (its head parsed, then its body awaited). Those two writes were the largest single cost in
a promptd request at concurrency 1 (docs/benchmarks.md). Here the head waits for what follows it in the
same step of the event loop: a blocking answer leaves in one write; a streamed one sends its head when its
first chunk is sent, or at the latest on the loop's next turn.

Every write of the connection, the protocol's own and each response's, passes through one `_Coalescing`
transport, so the order of bytes on the wire never changes; closing the connection sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingProtocol"]


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
    """uvicorn's `--http httptools`, sending each response's head with what follows it (see the module)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Coalescing(transport, self.loop))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.transport.hold_next()  # type: ignore[attr-defined]  # the next write is a response's head
