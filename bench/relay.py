"""The floor: a byte relay between the load generator and the mock (no HTTP parsing, no logic), on uvloop.

    python bench/relay.py --port 9200 --upstream-port 9100 [--workers N]

Whatever a gateway adds beyond what this adds, it adds by its own work; what this adds is the price of one
more process and one more pair of loopback connections on this machine. With `--workers N`, N processes
share the port (SO_REUSEPORT: the kernel spreads the connections), the floor of a gateway run with N workers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal


class Pipe(asyncio.Protocol):
    """One side of a relayed connection: what it receives goes to its peer."""

    def __init__(self) -> None:
        self.peer: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)
        else:
            self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()


class Downstream(Pipe):
    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        up_transport, up = await loop.create_connection(Pipe, "127.0.0.1", self.upstream_port)
        assert self.transport is not None
        up.peer = self.transport
        self.peer = up_transport
        for data in self.pending:
            up_transport.write(data)
        self.pending.clear()


async def serve(port: int, upstream_port: int, reuse_port: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Downstream(upstream_port), "127.0.0.1", port, reuse_port=reuse_port)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    import uvloop

    children: list[int] = []
    for _ in range(a.workers - 1):
        pid = os.fork()
        if pid == 0:
            children.clear()
            break
        children.append(pid)
    if children:  # the parent serves too; stopping it stops them

        def stop(*_: object) -> None:
            for child in children:
                os.kill(child, signal.SIGTERM)
            os._exit(0)

        signal.signal(signal.SIGTERM, stop)
    uvloop.run(serve(a.port, a.upstream_port, reuse_port=a.workers > 1))


if __name__ == "__main__":
    main()
