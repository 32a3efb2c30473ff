"""The floor of any Python proxy on this host: a relay that judges nothing.

Bytes from each client go to its own engine connection and back (with flow control), from
protocol callbacks on the guard's event loop (uvloop when installed), with no parsing at
all. What it adds to a call is the cost of the extra hop itself; what the guard adds beyond
it is the cost of reading, judging and re-framing.
``python -m benchmarks.bare_relay LISTEN UPSTREAM``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import cast

from dockyard.guard.server import event_loop_policy


class _Engine(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()

    def pause_writing(self) -> None:  # (the engine reads slower than the client sends)
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


class _Client(asyncio.Protocol):
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.engine: asyncio.Transport | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's are not subclasses)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        engine, _ = await loop.create_unix_connection(lambda: _Engine(self), self.upstream)
        self.engine = engine
        for data in self.early:
            engine.write(data)

    def data_received(self, data: bytes) -> None:
        if self.engine is None:
            self.early.append(data)
        else:
            self.engine.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.engine is not None:
            self.engine.close()

    def pause_writing(self) -> None:
        if self.engine is not None:
            self.engine.pause_reading()

    def resume_writing(self) -> None:
        if self.engine is not None:
            self.engine.resume_reading()


async def serve(listen: str, upstream: str) -> None:
    Path(listen).unlink(missing_ok=True)
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(lambda: _Client(upstream), listen)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.set_event_loop_policy(event_loop_policy())
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
