"""A plain connection (to the engine, or from a client), received straight into a buffer
and read as views of it.

asyncio's StreamReader copies each received block twice (into its buffer, then out of it).
Relaying ``docker save`` or ``docker load`` through the guard, those copies cost a sixth to
a third of the throughput on a 2-core host. Here the transport receives into a buffer
(``recv_into``) and large reads hand out views of it. A buffer, once a view of it is handed
out, is never written again: the next bytes go to a fresh one, so a view stays valid for as
long as anything (a transport's send buffer, a list of pieces) holds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from dockyard.guard import http

SIZE = http.PIECE
"""Bytes received ahead of the reader at most; reading pauses when they are all unread."""

FIRST_SIZE = 16 * 1024
"""The buffer a connection starts with: an idle or chatty one never needs more."""

COPY_BELOW = 16 * 1024
"""Reads smaller than this are copied out (cheaper than a fresh buffer for the next bytes)."""


class Link(asyncio.BufferedProtocol):
    """Both halves of one connection: a reader shaped like :class:`asyncio.StreamReader`
    (``read``, ``readuntil``) and a writer shaped like :class:`asyncio.StreamWriter`.

    One coroutine reads at a time; ``read`` returns ``bytes`` or a ``memoryview``.
    """

    def __init__(
        self,
        limit: int = http.HEAD_LIMIT,
        on_connected: Callable[[Link], None] | None = None,
    ) -> None:
        self.limit = limit
        self.on_connected = on_connected
        self.on_eof: Callable[[], None] | None = None
        """Called when the peer's end of stream arrives (or the connection is lost)."""
        self.buffer = bytearray(FIRST_SIZE)
        self.start = 0
        self.end = 0
        self.handed = False
        """Whether a view of ``buffer`` is out (then it is never written again)."""
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.writing_paused = False
        self.drainer: asyncio.Future[None] | None = None

    # -- the transport's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.on_connected is not None:
            self.on_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.handed or self.end == len(self.buffer):
            unread = self.buffer[self.start : self.end]
            if self.handed or 2 * len(unread) > len(self.buffer):
                # Views of this buffer are out, or it is mostly unread: a fresh, full-size one.
                self.buffer, self.handed = bytearray(SIZE), False
            self.buffer[: len(unread)] = unread
            self.start, self.end = 0, len(unread)
        return memoryview(self.buffer)[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        if self.end - self.start >= SIZE and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        return True  # keep the writing half open: a hijacked stream half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None:
            self.error = exc
        self._end()
        self.writing_paused = False
        if self.drainer is not None and not self.drainer.done():
            self.drainer.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drainer is not None and not self.drainer.done():
            self.drainer.set_result(None)

    def _end(self) -> None:
        told, self.eof = self.eof, True
        self._wake()
        if not told and self.on_eof is not None:
            self.on_eof()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- the reader

    async def _more(self) -> None:
        """Wait for bytes beyond what is unread now, or the end of the stream."""
        if self.error is not None:
            raise self.error
        if self.eof:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None
        if self.error is not None:
            raise self.error

    def _consumed(self, count: int) -> None:
        self.start += count
        if self.start == self.end and not self.handed:
            self.start = self.end = 0
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    async def read(self, n: int = -1) -> bytes | memoryview:
        """Up to ``n`` bytes once any are there; empty at the end of the stream."""
        while self.start == self.end:
            if self.eof:
                if self.error is not None:
                    raise self.error
                return b""
            await self._more()
        count = self.end - self.start if n < 0 else min(n, self.end - self.start)
        view = memoryview(self.buffer)[self.start : self.start + count]
        if count < COPY_BELOW:
            data: bytes | memoryview = bytes(view)
        else:
            data, self.handed = view, True
        self._consumed(count)
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or :class:`asyncio.IncompleteReadError` at an early end."""
        data = bytearray()
        while len(data) < n:
            piece = await self.read(n - len(data))
            if not piece:
                raise asyncio.IncompleteReadError(bytes(data), n)
            data += piece
        return bytes(data)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """The bytes up to and including ``separator``, with StreamReader's errors."""
        searched = 0  # (counted from ``start``: waiting may move the bytes to a new buffer)
        while True:
            found = self.buffer.find(separator, self.start + searched, self.end)
            if found >= 0:
                count = found + len(separator) - self.start
                if count > self.limit:
                    raise asyncio.LimitOverrunError("separator found beyond the limit", count)
                data = bytes(self.buffer[self.start : self.start + count])
                self._consumed(count)
                return data
            if self.end - self.start > self.limit:
                raise asyncio.LimitOverrunError("separator not found within the limit", 0)
            if self.eof:
                partial = bytes(self.buffer[self.start : self.end])
                self._consumed(len(partial))
                raise asyncio.IncompleteReadError(partial, None)
            searched = max(0, self.end - self.start - len(separator) + 1)
            await self._more()

    # -- the writer

    def write(self, data: bytes | memoryview) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self.error is not None:
            raise self.error
        if self.transport is not None and self.transport.is_closing():
            await asyncio.sleep(0)  # let a pending connection_lost arrive, as StreamWriter does
        if self.lost:
            raise ConnectionResetError("connection lost")
        if self.writing_paused:
            self.drainer = asyncio.get_running_loop().create_future()
            try:
                await self.drainer
            finally:
                self.drainer = None

    def can_write_eof(self) -> bool:
        return self.transport is not None and self.transport.can_write_eof()

    def write_eof(self) -> None:
        assert self.transport is not None
        self.transport.write_eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default if self.transport is None else self.transport.get_extra_info(name, default)
