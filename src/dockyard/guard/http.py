"""HTTP/1.1 on the wire: heads parsed strictly, bodies copied piece by piece.

The guard re-frames every message it forwards (it writes its own head and its own chunk
sizes), so what reaches dockerd is exactly what was parsed here: chunk extensions, trailers,
obsolete line folding and any byte after a message never pass through unread. Memory per
connection is bounded by ``HEAD_LIMIT`` plus one ``PIECE`` of body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httptools

HEAD_LIMIT = 64 * 1024
"""Largest request or response head (request line or status line plus headers)."""

PIECE = 256 * 1024
"""Largest piece of a body held in memory while relaying it."""

CHUNK_LINE_LIMIT = 1024


class HTTPError(Exception):
    """Input that is not HTTP/1.1 as the guard accepts it; answered with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed request or response head; ``headers`` keep their order and spelling."""

    method: str
    target: bytes
    status: int
    version: str
    headers: tuple[tuple[str, str], ...]
    keep_alive: bool

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


class _Collector:
    """httptools callbacks that keep the head's parts."""

    def __init__(self) -> None:
        self.target = b""
        self.headers: list[tuple[str, str]] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.done = True


def parse_head(data: bytes, *, response: bool = False) -> Head:
    """A complete head (ending in a blank line) of a request or, with ``response``, a reply."""
    collector = _Collector()
    parser = (
        httptools.HttpResponseParser(collector)
        if response
        else httptools.HttpRequestParser(collector)
    )
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass  # the head is complete; what follows an upgrade is not parsed here
    except httptools.HttpParserError as exc:
        raise HTTPError(f"malformed HTTP: {exc}") from None
    if not collector.done:
        raise HTTPError("incomplete HTTP head")
    version = parser.get_http_version()
    if version not in ("1.0", "1.1"):
        raise HTTPError(f"HTTP/{version} is not served", 505)
    tokens = {
        token.strip().lower()
        for name, value in collector.headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    method, status = "", 0
    if isinstance(parser, httptools.HttpRequestParser):
        method = parser.get_method().decode("latin-1")
    else:
        status = parser.get_status_code()
    return Head(
        method=method,
        target=collector.target,
        status=status,
        version=version,
        headers=tuple(collector.headers),
        # (httptools forgets keep-alive once a bodiless message is complete)
        keep_alive="close" not in tokens and (version == "1.1" or "keep-alive" in tokens),
    )


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The next head's bytes, or ``None`` at a clean end of stream before any byte."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HTTPError("connection closed inside an HTTP head") from None
    except asyncio.LimitOverrunError:
        raise HTTPError(f"HTTP head over {HEAD_LIMIT} bytes", 431) from None


async def sized(reader: asyncio.StreamReader, length: int) -> AsyncIterator[bytes]:
    """The pieces of a ``Content-Length`` body."""
    while length > 0:
        piece = await reader.read(min(length, PIECE))
        if not piece:
            raise HTTPError("connection closed inside a body")
        length -= len(piece)
        yield piece


def _chunk_size(line: bytes) -> int:
    size, _, _extension = line.rstrip(b"\r\n").partition(b";")
    text = size.strip(b" \t")
    if not text or len(text) > 15 or any(c not in b"0123456789abcdefABCDEF" for c in text):
        raise HTTPError(f"invalid chunk size {line[:40]!r}")
    return int(text, 16)


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise HTTPError("truncated or oversize chunk framing") from None
    if len(line) > CHUNK_LINE_LIMIT or not line.endswith(b"\r\n"):
        raise HTTPError("malformed chunk framing")
    return line


async def chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The data of a chunked body (extensions and trailers are read and dropped)."""
    while True:
        size = _chunk_size(await _line(reader))
        if size == 0:
            trailers = 0
            while await _line(reader) != b"\r\n":
                trailers += 1
                if trailers > 64:
                    raise HTTPError("too many trailer lines")
            return
        async for piece in sized(reader, size):
            yield piece
        if await _line(reader) != b"\r\n":
            raise HTTPError("chunk data longer than its size")


async def until_eof(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while piece := await reader.read(PIECE):
        yield piece


def encode_chunk(piece: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(piece), piece)


LAST_CHUNK = b"0\r\n\r\n"


async def collect(pieces: AsyncIterator[bytes], limit: int) -> bytes:
    """A whole body, refused when it grows past ``limit``."""
    data = bytearray()
    async for piece in pieces:
        data += piece
        if len(data) > limit:
            raise HTTPError(f"body over {limit} bytes", 413)
    return bytes(data)


def body_of(reader: asyncio.StreamReader, head: Head) -> AsyncIterator[bytes] | None:
    """The body framing a response head declares: ``None`` when it runs to end of stream."""
    encoding = head.header("transfer-encoding")
    if encoding is not None:
        if encoding.strip().lower() != "chunked":
            raise HTTPError(f"unsupported Transfer-Encoding {encoding!r}", 502)
        return chunked(reader)
    length = head.header("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise HTTPError(f"invalid Content-Length {length!r}", 502)
        return sized(reader, int(length))
    return None


def render_head(start: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    505: "HTTP Version Not Supported",
}


def json_response(status: int, body: bytes, *, close: bool) -> bytes:
    """A complete reply with a JSON body, as dockerd answers errors."""
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ]
    if close:
        headers.append(("Connection", "close"))
    return render_head(f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", headers) + body
