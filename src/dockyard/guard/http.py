"""HTTP/1.1 on the wire: heads parsed strictly, bodies copied piece by piece.

The guard re-frames every request it forwards (it writes its own head and its own chunk
sizes), so what reaches dockerd is exactly what was parsed here: chunk extensions, trailers,
obsolete line folding and any byte after a message never pass through unread. dockerd's
answers go back framed as dockerd sent them, each chunk's framing checked on the way and
nothing relayed past the body's end. Memory per connection is bounded by ``HEAD_LIMIT`` plus
one ``PIECE`` of body.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httptools

from dockyard.guard import memo

HEAD_LIMIT = 64 * 1024
"""Largest request or response head (request line or status line plus headers)."""

PIECE = 256 * 1024
"""Largest piece of a body held in memory while relaying it."""

CHUNK_LINE_LIMIT = 1024


Data = bytes | memoryview
"""A piece of a body: a view stays valid for as long as it is held (see :mod:`.link`)."""


class Reader(Protocol):
    """What bodies and heads are read from: an :class:`asyncio.StreamReader` or a
    :class:`~dockyard.guard.link.Link`."""

    async def read(self, n: int = -1) -> Data: ...
    async def readuntil(self, separator: bytes = b"\n") -> bytes: ...


class HTTPError(Exception):
    """Input that is not HTTP/1.1 as the guard accepts it; answered with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "upgrade",
        "expect",
        "http2-settings",
    }
)
"""Headers about one connection's framing, never forwarded as they came (RFC 9110 7.6.1)."""


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed request or response head; ``headers`` keep their order and spelling."""

    method: str
    target: bytes
    status: int
    version: str
    headers: tuple[tuple[str, str], ...]
    keep_alive: bool
    first: Mapping[str, str] = field(compare=False, repr=False)
    """Each header's first value, by lower-case name."""
    end_to_end: tuple[tuple[str, str], ...] = field(compare=False, repr=False)
    """The headers without the :data:`HOP_BY_HOP` ones and those ``Connection`` names."""

    def header(self, name: str) -> str | None:
        return self.first.get(name.lower())


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
    first: dict[str, str] = {}
    end_to_end = []
    for name, value in collector.headers:
        lowered = name.lower()
        first.setdefault(lowered, value)
        if lowered not in HOP_BY_HOP and lowered not in tokens:  # (Connection names its own)
            end_to_end.append((name, value))
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
        first=first,
        end_to_end=tuple(end_to_end),
    )


@memo.cached(len)
def parse_request(data: bytes) -> Head:
    """A request head (cached: clients send the same heads again and again)."""
    return parse_head(data)


@memo.cached(len)
def parse_response(data: bytes) -> Head:
    """A response head (cached: dockerd's heads repeat within each second of ``Date``)."""
    return parse_head(data, response=True)


async def read_head(reader: Reader) -> bytes | None:
    """The next head's bytes, or ``None`` at a clean end of stream before any byte."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HTTPError("connection closed inside an HTTP head") from None
    except asyncio.LimitOverrunError:
        raise HTTPError(f"HTTP head over {HEAD_LIMIT} bytes", 431) from None


async def sized(reader: Reader, length: int) -> AsyncIterator[Data]:
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


_LINE_FEED = re.compile(rb"\n")
_NEXT_CHUNK = re.compile(rb"\r\n([0-9a-fA-F]{1,15})\r\n")
"""The usual bytes between two chunks' data: the end of one, the plain size of the next."""


class ChunkDecoder:
    """The chunked transfer coding as a machine without I/O: fed bytes, it returns the data
    they carry and how many bytes belong to the body; extensions and trailers are dropped.

    It never reads past the body's last byte, so whatever follows stays with the caller.
    """

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self) -> None:
        self.state = self._SIZE
        self.left = 0
        """Data bytes still to come in the current chunk."""
        self.line = bytearray()
        """A framing line begun in an earlier feed."""
        self.trailers = 0

    @property
    def done(self) -> bool:
        return self.state == self._DONE

    def wanted(self) -> int:
        """The most bytes the next feed can take without passing the body's end; 0 means a
        framing line (read up to its line feed)."""
        return self.left if self.state == self._DATA else 0

    def feed(self, data: Data, *, keep: bool = True) -> tuple[list[memoryview], int]:
        """The data pieces in ``data`` (none unless ``keep``) and the number of its bytes
        that belong to the body."""
        view, pos, size, pieces = memoryview(data), 0, len(data), []
        while pos < size and self.state != self._DONE:
            if self.state == self._DATA:
                take = min(self.left, size - pos)
                if keep:
                    pieces.append(view[pos : pos + take])
                pos += take
                self.left -= take
                if not self.left:
                    self.state = self._DATA_END
                continue
            if self.state == self._DATA_END and not self.line:
                usual = _NEXT_CHUNK.match(view, pos)
                if usual is not None:  # (the general path below reads the same, slower)
                    self.left = int(usual.group(1), 16)
                    self.state = self._DATA if self.left else self._TRAILER
                    pos = usual.end()
                    continue
            found = _LINE_FEED.search(view, pos, pos + CHUNK_LINE_LIMIT - len(self.line))
            if found is None:
                self.line += view[pos:]
                pos = size
                if len(self.line) > CHUNK_LINE_LIMIT:
                    raise HTTPError("oversize chunk framing line")
                break
            self.line += view[pos : found.end()]
            pos = found.end()
            self._framing_line(bytes(self.line))
            self.line.clear()
        return pieces, pos

    def _framing_line(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise HTTPError("malformed chunk framing")
        if self.state == self._SIZE:
            self.left = _chunk_size(line)
            self.state = self._DATA if self.left else self._TRAILER
        elif self.state == self._DATA_END:
            if line != b"\r\n":
                raise HTTPError("chunk data longer than its size")
            self.state = self._SIZE
        elif line == b"\r\n":
            self.state = self._DONE
        else:
            self.trailers += 1
            if self.trailers > 64:
                raise HTTPError("too many trailer lines")


async def chunked(
    reader: Reader, *, greedy: bool = False, framed: bool = False
) -> AsyncIterator[Data]:
    """The data of a chunked body, one piece per read; with ``framed``, the body's own bytes
    (framing included, checked as they pass) for relaying it unchanged.

    ``greedy`` reads whatever has arrived, many chunks at once, and fails if the body ends
    before the read does: for answers, after which the peer sends nothing unasked. Without
    it no byte past the body is read (a client may send its next request right after).
    """
    decoder = ChunkDecoder()
    while not decoder.done:
        if greedy:
            data = await reader.read(PIECE)
        elif wanted := decoder.wanted():
            data = await reader.read(min(wanted, PIECE))
        else:
            try:
                data = await reader.readuntil(b"\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                raise HTTPError("truncated or oversize chunk framing") from None
        if not data:
            raise HTTPError("connection closed inside a body")
        pieces, used = decoder.feed(data, keep=not framed)
        if used < len(data):
            raise HTTPError("bytes after the end of a chunked body", 502)
        if framed:
            yield data
        elif len(pieces) == 1:
            yield pieces[0]
        elif pieces:
            yield b"".join(pieces)


async def until_eof(reader: Reader) -> AsyncIterator[Data]:
    while piece := await reader.read(PIECE):
        yield piece


def encode_chunk(piece: Data) -> bytes:
    return b"".join((b"%x\r\n" % len(piece), piece, b"\r\n"))


LAST_CHUNK = b"0\r\n\r\n"


async def collect(pieces: AsyncIterator[Data], limit: int) -> bytes:
    """A whole body, refused when it grows past ``limit``."""
    data = bytearray()
    async for piece in pieces:
        data += piece
        if len(data) > limit:
            raise HTTPError(f"body over {limit} bytes", 413)
    return bytes(data)


def body_of(reader: Reader, head: Head, *, framed: bool = False) -> AsyncIterator[Data] | None:
    """The body a response head declares (``framed``: as sent, see :func:`chunked`);
    ``None`` when it runs to the end of the stream."""
    encoding = head.header("transfer-encoding")
    if encoding is not None:
        if encoding.strip().lower() != "chunked":
            raise HTTPError(f"unsupported Transfer-Encoding {encoding!r}", 502)
        return chunked(reader, greedy=True, framed=framed)
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
