"""TLS run by the guard itself over a plain asyncio connection, so that it can half-close.

asyncio's own TLS transport closes the whole connection when the peer sends close_notify,
yet a docker client ends a hijacked attach's input exactly so (Go's ``tls.Conn.CloseWrite``)
and then waits for the output. Here the TLS state lives in an :class:`ssl.SSLObject` over a
pair of :class:`ssl.MemoryBIO`: the peer's close_notify is an end of stream on the reading
side only, the writing side stays usable until the guard is done with it, and then sends its
own close_notify. The server sees the same reader and writer interface as on plain sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, Protocol

HANDSHAKE_TIMEOUT = 30.0
"""Seconds a client may take to complete its TLS handshake."""

RECORD = 64 * 1024
"""Most bytes read from the socket or the TLS object at once."""


class Writer(Protocol):
    """What the guard writes to: an :class:`asyncio.StreamWriter` or a :class:`TLSWriter`."""

    def write(self, data: bytes | memoryview) -> None: ...
    async def drain(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class _Gate:
    """The transport a decrypted-data reader pauses and resumes: it gates the socket reads."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def pause_reading(self) -> None:
        self.open.clear()

    def resume_reading(self) -> None:
        self.open.set()


class TLSWriter:
    """The writing half of a TLS connection, shaped like :class:`asyncio.StreamWriter`."""

    def __init__(
        self, raw: asyncio.StreamWriter, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO
    ) -> None:
        self.raw = raw
        self.tls = tls
        self.outgoing = outgoing
        self.shut = False
        """Whether this side's close_notify is sent (nothing more can be written)."""
        self.pump: asyncio.Task[None] | None = None

    def flush(self) -> None:
        """Send what the TLS object has produced (records, alerts, tickets)."""
        data = self.outgoing.read()
        if data and not self.raw.is_closing():
            self.raw.write(data)

    def write(self, data: bytes | memoryview) -> None:
        if self.shut:
            raise ConnectionResetError("TLS connection already shut down")
        view = memoryview(data)
        while view:
            written = self.tls.write(view[:RECORD])
            view = view[written:]
            self.flush()

    async def drain(self) -> None:
        await self.raw.drain()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Send close_notify: the end of this side's data, while the peer's may still come."""
        if self.shut:
            return
        self.shut = True
        with contextlib.suppress(ssl.SSLError):  # SSLWantRead: the peer's is still to come
            self.tls.unwrap()
        self.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.write_eof()
        if self.pump is not None:
            self.pump.cancel()
        self.raw.close()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    async def wait_closed(self) -> None:
        await self.raw.wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.tls
        if name == "peercert":
            return self.tls.getpeercert()
        if name == "cipher":
            return self.tls.cipher()
        return self.raw.get_extra_info(name, default)


async def _handshake(raw: asyncio.StreamReader, writer: TLSWriter, incoming: ssl.MemoryBIO) -> None:
    while True:
        try:
            writer.tls.do_handshake()
        except ssl.SSLWantReadError:
            writer.flush()
            data = await raw.read(RECORD)
            if not data:
                raise ConnectionResetError("client closed during the TLS handshake") from None
            incoming.write(data)
        except ssl.SSLError:
            writer.flush()  # the alert that tells the client why
            raise
        else:
            writer.flush()
            return


async def _pump(
    raw: asyncio.StreamReader,
    writer: TLSWriter,
    incoming: ssl.MemoryBIO,
    reader: asyncio.StreamReader,
    gate: _Gate,
) -> None:
    """Decrypt what the peer sends into ``reader``; its close_notify (or the socket's end)
    is ``reader``'s end of stream and nothing more."""
    try:
        while True:
            while True:
                try:
                    data = writer.tls.read(RECORD)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    data = b""
                if not data:  # close_notify (the ssl module reads it as b""): data is over
                    writer.flush()
                    reader.feed_eof()
                    return
                reader.feed_data(data)
                await gate.open.wait()
            writer.flush()
            data = await raw.read(RECORD)
            if not data:
                reader.feed_eof()
                return
            incoming.write(data)
    except OSError as exc:  # ssl.SSLError included
        reader.set_exception(exc)


async def _start(
    raw_reader: asyncio.StreamReader,
    raw_writer: asyncio.StreamWriter,
    reader: asyncio.StreamReader,
    wrap: Callable[[ssl.MemoryBIO, ssl.MemoryBIO], ssl.SSLObject],
) -> TLSWriter:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    writer = TLSWriter(raw_writer, wrap(incoming, outgoing), outgoing)
    try:
        await asyncio.wait_for(_handshake(raw_reader, writer, incoming), HANDSHAKE_TIMEOUT)
    except BaseException:
        raw_writer.close()
        raise
    gate = _Gate()
    reader.set_transport(gate)  # type: ignore[arg-type]  # only pause/resume_reading are used
    writer.pump = asyncio.get_running_loop().create_task(
        _pump(raw_reader, writer, incoming, reader, gate)
    )
    return writer


async def accept(
    raw_reader: asyncio.StreamReader,
    raw_writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    reader: asyncio.StreamReader,
) -> TLSWriter:
    """Complete the server side of a TLS handshake (certificate checks included), then feed
    the client's decrypted data into ``reader``; the writer to answer it with. The socket is
    closed when the handshake fails."""
    return await _start(
        raw_reader,
        raw_writer,
        reader,
        lambda incoming, outgoing: context.wrap_bio(incoming, outgoing, server_side=True),
    )


async def connect(
    raw_reader: asyncio.StreamReader,
    raw_writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    reader: asyncio.StreamReader,
    server_hostname: str | None,
) -> TLSWriter:
    """The client side of :func:`accept`."""
    return await _start(
        raw_reader,
        raw_writer,
        reader,
        lambda incoming, outgoing: context.wrap_bio(
            incoming, outgoing, server_side=False, server_hostname=server_hostname
        ),
    )
