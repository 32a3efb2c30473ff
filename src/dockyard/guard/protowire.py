"""Protocol Buffers' wire format, read strictly: just enough to judge BuildKit's messages.

A message is a sequence of (field number, wire type, value). The guard reads the few fields
it judges by their numbers (facts of BuildKit's public API) and refuses what it cannot read
exactly: truncated input, over-long varints, groups, field number 0, a length past the end.
Nothing here allocates more than the input it is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5
_WIRE_TYPES = frozenset({VARINT, FIXED64, BYTES, FIXED32})


class ProtoError(ValueError):
    """Bytes that are not a protobuf message the guard can read exactly."""


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    wire: int
    value: int | bytes
    """An integer for VARINT, FIXED64 and FIXED32, the bytes of a BYTES field."""

    def data(self) -> bytes:
        if not isinstance(self.value, bytes):
            raise ProtoError(f"field {self.number} is not length-delimited")
        return self.value

    def text(self) -> str:
        try:
            return self.data().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtoError(f"field {self.number} is not UTF-8 text") from None

    def integer(self) -> int:
        if not isinstance(self.value, int) or self.wire != VARINT:
            raise ProtoError(f"field {self.number} is not a varint")
        return self.value


def varint(data: bytes | memoryview, at: int) -> tuple[int, int]:
    """The varint at ``at`` and the offset after it."""
    value = shift = 0
    for count in range(10):
        if at + count >= len(data):
            raise ProtoError("truncated varint")
        byte = data[at + count]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if count == 9 and byte > 1:
                raise ProtoError("varint over 64 bits")
            return value, at + count + 1
        shift += 7
    raise ProtoError("varint over 10 bytes")


def fields(data: bytes) -> Iterator[Field]:
    """The fields of one message, in wire order."""
    at = 0
    while at < len(data):
        key, at = varint(data, at)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise ProtoError(f"field number {number}")
        if wire not in _WIRE_TYPES:
            raise ProtoError(f"field {number}: wire type {wire}")
        if wire == VARINT:
            value, at = varint(data, at)
            yield Field(number, wire, value)
        elif wire == BYTES:
            size, at = varint(data, at)
            if size > len(data) - at:
                raise ProtoError(f"field {number}: length past the end")
            yield Field(number, wire, bytes(data[at : at + size]))
            at += size
        else:
            width = 8 if wire == FIXED64 else 4
            if at + width > len(data):
                raise ProtoError(f"field {number}: truncated fixed-width value")
            yield Field(number, wire, int.from_bytes(data[at : at + width], "little"))
            at += width


def map_entry(entry: Field) -> tuple[str, bytes]:
    """One entry of a ``map<string, ...>`` (a message of key 1 and value 2), the value raw."""
    key, value = "", b""
    for part in fields(entry.data()):
        if part.number == 1:
            key = part.text()
        elif part.number == 2:
            value = part.data()
        else:
            raise ProtoError(f"map entry field {part.number}")
    return key, value


def string_map(entry: Field) -> tuple[str, str]:
    """One entry of a ``map<string, string>``."""
    key, value = map_entry(entry)
    try:
        return key, value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtoError(f"map value of {key[:40]!r} is not UTF-8 text") from None


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode(number: int, value: int | bytes | str) -> bytes:
    """One field (a varint for ints, length-delimited for bytes and text): for tests and
    the guard's own test client."""
    if isinstance(value, int):
        return encode_varint(number << 3 | VARINT) + encode_varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return encode_varint(number << 3 | BYTES) + encode_varint(len(raw)) + raw
