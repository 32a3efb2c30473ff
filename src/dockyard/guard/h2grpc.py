"""HTTP/2 frames of buildx's ``/grpc`` connection, read on their way to dockerd (sans-I/O).

After dockerd switches ``POST /grpc`` to h2c, the client speaks HTTP/2 with gRPC on top. The
guard relays the frames unchanged (so both ends keep their HPACK and flow-control state) but
reads every one the client sends: header blocks are decoded (``hpack``, the h2 project's
HPACK codec, so the guard's table follows the client's exactly) to learn each stream's
method, and DATA frames are held back per stream until the gRPC message they carry has been
judged. What cannot be read exactly (a bad preface, an unknown frame type, a compressed or
oversize message, a second message on a unary call, a method the guard does not know) ends
the connection: the client gets a gRPC error on its stream (``grpc-status`` 7, the guard's
message), then GOAWAY. The guard's own header block uses only literals without indexing, so
it leaves the client's HPACK table as dockerd's encoder expects it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import hpack

from dockyard.guard import solve

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
_CLIENT_TYPES = frozenset({DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY,
                           WINDOW_UPDATE, CONTINUATION})  # fmt: skip
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20
MAX_FRAME = 1 << 24
MESSAGE_LIMIT = 16 << 20
"""The largest gRPC message the guard holds to judge (a Solve with a big LLB definition)."""
HEADER_LIMIT = 1 << 20
PERMISSION_DENIED = 7


class H2Error(Exception):
    """The client's bytes end the connection; ``stream`` is where the client sees why."""

    def __init__(self, reason: str, stream: int = 0) -> None:
        super().__init__(reason)
        self.stream = stream


@dataclass(slots=True)
class Call:
    """One gRPC call (stream) the client opened."""

    method: str = ""
    buffer: bytearray = field(default_factory=bytearray)
    held: list[bytes] = field(default_factory=list)
    """Raw DATA frames not forwarded until the message in them is judged."""
    messages: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    """A complete gRPC message for the I/O layer to judge (and settle) before its frames go."""

    stream: int
    method: str
    data: bytes


Event = bytes | Message
"""What :meth:`Inspector.feed` yields: bytes to forward upstream, or a message to judge."""


class Inspector:
    """The client side of one ``/grpc`` connection."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.preface = False
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = HEADER_LIMIT
        self.calls: dict[int, Call] = {}
        self.block: tuple[int, bytearray, int] | None = None
        """A header block waiting for CONTINUATION frames: (stream, fragment, flags)."""

    def feed(self, data: bytes) -> list[Event]:
        """The events of the bytes the client sent (raises :class:`H2Error`)."""
        self.buffer += data
        events: list[Event] = []
        if not self.preface:
            if len(self.buffer) < len(PREFACE):
                if not PREFACE.startswith(bytes(self.buffer)):
                    raise H2Error("not an HTTP/2 connection preface")
                return events
            if not self.buffer.startswith(PREFACE):
                raise H2Error("not an HTTP/2 connection preface")
            events.append(PREFACE)
            del self.buffer[: len(PREFACE)]
            self.preface = True
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if length > MAX_FRAME:
                raise H2Error("frame over the size limit")
            if len(self.buffer) < 9 + length:
                break
            raw = bytes(self.buffer[: 9 + length])
            del self.buffer[: 9 + length]
            events.extend(self._frame(raw))
        return events

    def _frame(self, raw: bytes) -> list[Event]:
        kind, flags = raw[3], raw[4]
        stream = struct.unpack(">I", raw[5:9])[0] & 0x7FFFFFFF
        payload = raw[9:]
        if kind not in _CLIENT_TYPES:
            raise H2Error(f"HTTP/2 frame type {kind} is not read by the guard")
        if self.block is not None and kind != CONTINUATION:
            raise H2Error("header block interrupted")
        if kind == HEADERS:
            return self._headers(raw, stream, flags, payload)
        if kind == CONTINUATION:
            return self._continuation(raw, stream, flags, payload)
        if kind == DATA:
            return self._data(raw, stream, flags, payload)
        if kind == RST_STREAM:
            self.calls.pop(stream, None)
        return [raw]

    def _headers(self, raw: bytes, stream: int, flags: int, payload: bytes) -> list[Event]:
        if stream == 0 or stream % 2 == 0:
            raise H2Error("HEADERS on a stream the client may not open")
        fragment = _unpad(payload, flags, stream)
        if flags & PRIORITY_FLAG:
            if len(fragment) < 5:
                raise H2Error("HEADERS priority truncated", stream)
            fragment = fragment[5:]
        self.block = (stream, bytearray(fragment), flags)
        return self._end_block(raw, flags)

    def _continuation(self, raw: bytes, stream: int, flags: int, payload: bytes) -> list[Event]:
        if self.block is None or self.block[0] != stream:
            raise H2Error("CONTINUATION without its HEADERS", stream)
        self.block[1].extend(payload)
        if len(self.block[1]) > HEADER_LIMIT:
            raise H2Error("header block over the size limit", stream)
        return self._end_block(raw, flags)

    def _end_block(self, raw: bytes, flags: int) -> list[Event]:
        if not flags & END_HEADERS:
            return [raw]
        assert self.block is not None
        stream, fragment, _ = self.block
        self.block = None
        try:
            headers = self.decoder.decode(bytes(fragment), raw=True)
        except (hpack.HPACKError, ValueError) as exc:
            raise H2Error(f"unreadable header block: {exc}", stream) from None
        call = self.calls.get(stream)
        if call is None:  # a new call (a second block is the client's trailers)
            found = dict(headers)
            path = found.get(b":path", b"").decode("latin-1")
            problem = solve.judge_call(path)
            if problem:
                raise H2Error(problem, stream)
            self.calls[stream] = Call(method=path)
        return [raw]

    def _data(self, raw: bytes, stream: int, flags: int, payload: bytes) -> list[Event]:
        call = self.calls.get(stream)
        if call is None:
            raise H2Error("DATA on a stream without a call", stream)
        chunk = _unpad(payload, flags, stream)
        if call.messages:  # after the one message of a unary call: only its end
            if chunk:
                raise H2Error("more than one message on a unary call", stream)
            if call.held:
                call.held.append(raw)
                return []
            return [raw]
        call.buffer += chunk
        call.held.append(raw)
        if len(call.buffer) >= 5:
            compressed, size = call.buffer[0], int.from_bytes(call.buffer[1:5], "big")
            if compressed:
                raise H2Error("compressed gRPC messages are not read by the guard", stream)
            if size > MESSAGE_LIMIT:
                raise H2Error(f"gRPC message over {MESSAGE_LIMIT} bytes", stream)
            if len(call.buffer) > 5 + size:
                raise H2Error("more than one message on a unary call", stream)
            if len(call.buffer) == 5 + size:
                call.messages += 1
                data = bytes(call.buffer[5:])
                call.buffer.clear()
                return [Message(stream, call.method, data)]
        if flags & END_STREAM and call.buffer:
            raise H2Error("a call ended inside a message", stream)
        return []

    def release(self, stream: int) -> list[bytes]:
        """The held frames of a message judged harmless, to forward."""
        call = self.calls.get(stream)
        if call is None:
            return []
        held, call.held = call.held, []
        return held


def _unpad(payload: bytes, flags: int, stream: int) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise H2Error("padding past the frame", stream)
    return payload[1 : len(payload) - payload[0]]


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + (payload)
    )


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2):
    it neither reads nor changes the peer's dynamic table."""
    return b"\x00" + _length(name) + name + _length(value) + value


def _length(text: bytes) -> bytes:
    """An HPACK string length with a 7-bit prefix (Huffman bit off)."""
    size = len(text)
    if size < 127:
        return bytes([size])
    out = bytearray([127])
    size -= 127
    while size >= 128:
        out.append(size % 128 + 128)
        size //= 128
    out.append(size)
    return bytes(out)


def refusal(stream: int, reason: str, *, answered: bool) -> bytes:
    """What the client gets for a refused call: a gRPC error on its stream (a trailers-only
    answer, or trailers after dockerd's ``answered`` headers), then GOAWAY."""
    message = f"dockyard guard: buildkit: {reason}"
    quoted = "".join(c if 0x20 <= ord(c) < 0x7F and c != "%" else f"%{ord(c):02X}" for c in message)
    block = b""
    if not answered:
        block += _literal(b":status", b"200") + _literal(b"content-type", b"application/grpc")
    block += _literal(b"grpc-status", str(PERMISSION_DENIED).encode())
    block += _literal(b"grpc-message", quoted.encode())
    out = frame(HEADERS, END_STREAM | END_HEADERS, stream, block) if stream else b""
    last = stream or 0
    return out + frame(GOAWAY, 0, 0, struct.pack(">II", last, 0) + message.encode()[:200])


class Answers:
    """dockerd's side of the connection: only frame boundaries (the guard's own frames go
    between two of dockerd's) and which streams dockerd has answered with headers."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.started = False
        self.answered: set[int] = set()

    def feed(self, data: bytes) -> bytes:
        """The whole frames in what dockerd sent, to relay (a partial frame waits)."""
        self.buffer += data
        at = 0
        while len(self.buffer) - at >= 9:
            length = int.from_bytes(self.buffer[at : at + 3], "big")
            if len(self.buffer) - at < 9 + length:
                break
            if self.buffer[at + 3] == HEADERS:
                stream = struct.unpack(">I", self.buffer[at + 5 : at + 9])[0] & 0x7FFFFFFF
                self.answered.add(stream)
            at += 9 + length
        out = bytes(self.buffer[:at])
        del self.buffer[:at]
        return out
