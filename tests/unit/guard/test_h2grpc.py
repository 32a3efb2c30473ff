"""The /grpc frame reader on hand-made HTTP/2 bytes (no Docker needed), fuzzed."""

from __future__ import annotations

import contextlib
import struct

import hpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.guard import h2grpc
from dockyard.guard.h2grpc import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PREFACE,
    SETTINGS,
    H2Error,
    Inspector,
    Message,
    frame,
)  # fmt: skip

SOLVE = "/moby.buildkit.v1.Control/Solve"


def headers(encoder: hpack.Encoder, stream: int, path: str = SOLVE) -> bytes:
    block = encoder.encode([(":method", "POST"), (":path", path), (":scheme", "http")])
    return frame(HEADERS, END_HEADERS, stream, block)


def message(body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(body)) + body


def test_frames_pass_and_a_message_is_held_until_judged():
    inspector, encoder = Inspector(), hpack.Encoder()
    opening = PREFACE + frame(SETTINGS, 0, 0, b"") + headers(encoder, 1)
    events = inspector.feed(opening[:10]) + inspector.feed(opening[10:])
    assert b"".join(e for e in events if isinstance(e, bytes)) == opening
    data = message(b"\x0a\x01r")
    first, second = frame(DATA, 0, 1, data[:3]), frame(DATA, END_STREAM, 1, data[3:])
    assert inspector.feed(first) == []
    (judged,) = inspector.feed(second)
    assert judged == Message(1, SOLVE, b"\x0a\x01r")
    assert inspector.release(1) == [first, second]


def test_padding_is_stripped_before_the_message_is_read():
    inspector, encoder = Inspector(), hpack.Encoder()
    inspector.feed(PREFACE + headers(encoder, 1))
    padded = bytes([3]) + message(b"x") + b"\x00" * 3
    (judged,) = inspector.feed(frame(DATA, PADDED | END_STREAM, 1, padded))
    assert judged.data == b"x"


@pytest.mark.parametrize(
    ("after_preface", "reason"),
    [
        (lambda e: frame(0xA, 0, 0, b""), "frame type 10"),
        (lambda e: headers(e, 1, "/moby.buildkit.v1.Control/Prune"), "not allowed"),
        (lambda e: headers(e, 2), "may not open"),
        (lambda e: frame(DATA, 0, 1, message(b"x")), "without a call"),
        (lambda e: headers(e, 1) + frame(DATA, 0, 1, b"\x01" + struct.pack(">I", 1) + b"x"),
         "compressed"),
        (lambda e: headers(e, 1) + frame(DATA, 0, 1, b"\x00" + struct.pack(">I", 1 << 30)),
         "over"),
        (lambda e: headers(e, 1) + frame(DATA, 0, 1, message(b"a") + message(b"b")),
         "more than one message"),
        (lambda e: headers(e, 1) + frame(DATA, END_STREAM, 1, b"\x00\x00"), "inside a message"),
        (lambda e: frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"), "unreadable header"),
        (lambda e: frame(HEADERS, 0, 1, b"") + frame(DATA, 0, 1, b""), "interrupted"),
        (lambda e: headers(e, 1) + frame(DATA, PADDED, 1, b"\x09ab"), "padding"),
    ],
)  # fmt: skip
def test_what_cannot_be_read_exactly_ends_the_connection(after_preface, reason):
    inspector = Inspector()
    with pytest.raises(H2Error, match=reason):
        inspector.feed(PREFACE + after_preface(hpack.Encoder()))


def test_a_bad_preface_is_refused_as_soon_as_it_differs():
    with pytest.raises(H2Error, match="preface"):
        Inspector().feed(b"GET / HTTP/1.1\r\n")


def test_the_refusal_is_a_grpc_error_then_goaway():
    refusal = h2grpc.refusal(3, "no: 100%", answered=False)
    assert refusal[3] == HEADERS
    length = int.from_bytes(refusal[:3], "big")
    fields = dict(hpack.Decoder().decode(refusal[9 : 9 + length]))
    assert fields["grpc-status"] == "7"
    assert fields["grpc-message"] == "dockyard guard: buildkit: no: 100%25"
    assert refusal[9 + length + 3] == h2grpc.GOAWAY


def test_answers_relay_whole_frames_only():
    answers = h2grpc.Answers()
    data = frame(HEADERS, END_HEADERS, 5, b"\x88") + frame(DATA, 0, 5, b"abc")
    assert answers.feed(data[:12]) == data[:10]
    assert answers.feed(data[12:]) == data[10:]
    assert answers.answered == {5}


@given(st.lists(st.binary(max_size=300), max_size=6))
def test_any_bytes_after_the_preface_are_read_or_refused_never_crash(pieces):
    inspector = Inspector()
    inspector.feed(PREFACE)
    try:
        for piece in pieces:
            for event in inspector.feed(piece):
                assert isinstance(event, bytes | Message)
    except H2Error:
        pass


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=10))
def test_any_frame_payload_on_a_call_is_read_or_refused(payload, kind):
    inspector, encoder = Inspector(), hpack.Encoder()
    inspector.feed(PREFACE + headers(encoder, 1))
    with contextlib.suppress(H2Error):
        inspector.feed(frame(kind, 0, 1, payload))
    assert len(inspector.buffer) < 9 + 64
