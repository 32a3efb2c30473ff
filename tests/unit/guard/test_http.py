"""The wire layer: strict heads, chunked bodies re-framed, limits that bound memory."""

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.guard import http


def with_reader(data: bytes, action):
    """Run ``action(reader)`` on a stream reader holding ``data`` then end of stream."""

    async def go():
        reader = asyncio.StreamReader(limit=http.HEAD_LIMIT)
        reader.feed_data(data)
        reader.feed_eof()
        return await action(reader)

    return asyncio.run(go())


def test_request_head_keeps_headers_in_order():
    head = http.parse_head(b"POST /v1.41/build?t=x HTTP/1.1\r\nHost: d\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert (head.method, head.target, head.version) == ("POST", b"/v1.41/build?t=x", "1.1")
    assert head.headers == (("Host", "d"), ("X-A", "1"), ("x-a", "2"))
    assert head.header("x-A") == "1"
    assert head.keep_alive


def test_end_to_end_headers_leave_out_the_connections_own():
    head = http.parse_head(
        b"POST /build HTTP/1.1\r\nHost: d\r\nConnection: keep-alive, Upgrade, X-Hop\r\n"
        b"Upgrade: tcp\r\nTransfer-Encoding: chunked\r\nX-Registry-Auth: e30=\r\n"
        b"Expect: 100-continue\r\nTE: trailers\r\nx-hop: 1\r\n\r\n"
    )
    assert head.end_to_end == (("Host", "d"), ("X-Registry-Auth", "e30="))
    assert head.header("transfer-encoding") == "chunked"


@pytest.mark.parametrize(
    ("raw", "keep"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
    ],
)
def test_keep_alive_survives_bodiless_messages(raw, keep):
    assert http.parse_head(raw, response=True).keep_alive is keep


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
    ],
)
def test_malformed_heads_are_http_errors(raw):
    with pytest.raises(http.HTTPError):
        http.parse_head(raw)


def test_oversize_head_is_431():
    data = b"GET / HTTP/1.1\r\nX: " + b"a" * http.HEAD_LIMIT + b"\r\n\r\n"
    with pytest.raises(http.HTTPError) as caught:
        with_reader(data, http.read_head)
    assert caught.value.status == 431


def test_clean_eof_before_a_head_is_none_and_a_torn_head_an_error():
    assert with_reader(b"", http.read_head) is None
    with pytest.raises(http.HTTPError):
        with_reader(b"GET / HT", http.read_head)


async def _all(pieces):
    return b"".join([piece async for piece in pieces])


def test_chunked_bodies_drop_extensions_and_trailers_and_stop_at_their_end():
    async def both(reader):
        return await _all(http.chunked(reader)), await reader.read()

    data = b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    assert with_reader(data, both) == (b"hello!", b"NEXT")


@pytest.mark.parametrize(
    "raw",
    [
        b"5\r\nhello!\r\n0\r\n\r\n",  # data longer than its size
        b"-1\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",  # bare LF
        b"ffffffffffffffffff\r\n",
        b"5\r\nhel",  # truncated
    ],
)
def test_bad_chunk_framing_is_an_error(raw):
    with pytest.raises(http.HTTPError):
        with_reader(raw, lambda reader: _all(http.chunked(reader)))


def test_a_greedy_reader_takes_many_chunks_per_read_and_refuses_bytes_after_the_body():
    body = b"".join(b"4\r\n%04d\r\n" % n for n in range(100)) + b"0\r\n\r\n"
    pieces = with_reader(body, lambda reader: _pieces(http.chunked(reader, greedy=True)))
    assert b"".join(pieces) == b"".join(b"%04d" % n for n in range(100))
    assert len(pieces) == 1
    with pytest.raises(http.HTTPError) as caught:
        with_reader(body + b"X", lambda reader: _all(http.chunked(reader, greedy=True)))
    assert caught.value.status == 502


async def _pieces(pieces):
    return [piece async for piece in pieces]


def _decode(data: bytes, cuts: list[int], keep: bool = True) -> tuple[bytes, int, bool]:
    """Feed ``data`` to a decoder in pieces cut at ``cuts``: (data, bytes used, done)."""
    decoder, out, used = http.ChunkDecoder(), bytearray(), 0
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        pieces, taken = decoder.feed(data[start:end], keep=keep)
        out += b"".join(pieces)
        used += taken
        if decoder.done:
            break
    return bytes(out), used, decoder.done


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    trailers=st.lists(st.sampled_from([b"X-A: 1\r\n", b"T: v\r\n"]), max_size=3),
    extension=st.sampled_from([b"", b";a=b", b";x"]),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12),
)
def test_a_decoder_fed_in_any_pieces_reads_the_same_body_and_stops_at_its_end(
    chunks, trailers, extension, cuts
):
    wire = b"".join(b"%x%b\r\n%b\r\n" % (len(c), extension, c) for c in chunks)
    wire += b"0\r\n" + b"".join(trailers) + b"\r\n"
    data, used, done = _decode(wire + b"NEXT REQUEST", cuts)
    assert (data, used, done) == (b"".join(chunks), len(wire), True)
    # checking framing alone (relaying it as it is) reads the same bytes
    assert _decode(wire + b"NEXT REQUEST", cuts, keep=False) == (b"", len(wire), True)


def test_a_decoder_refuses_an_endless_framing_line_fed_a_byte_at_a_time():
    decoder = http.ChunkDecoder()
    assert decoder.wanted() == 0
    for _ in range(http.CHUNK_LINE_LIMIT):
        decoder.feed(b"0")
    with pytest.raises(http.HTTPError):
        decoder.feed(b"0")


def test_sized_bodies_are_read_exactly_and_in_bounded_pieces():
    data = bytes(range(256)) * 4096  # 1 MiB

    async def pieces(reader):
        return [piece async for piece in http.sized(reader, len(data))], await reader.read()

    got, rest = with_reader(data + b"REST", pieces)
    assert b"".join(got) == data
    assert max(map(len, got)) <= http.PIECE
    assert rest == b"REST"


def test_collect_refuses_bodies_over_its_limit():
    with pytest.raises(http.HTTPError) as caught:
        with_reader(b"x" * 100, lambda reader: http.collect(http.sized(reader, 100), 10))
    assert caught.value.status == 413


def test_response_body_framing():
    async def framing(raw):
        return http.body_of(asyncio.StreamReader(), http.parse_head(raw, response=True))

    assert asyncio.run(framing(b"HTTP/1.1 200 OK\r\n\r\n")) is None
    with pytest.raises(http.HTTPError):
        asyncio.run(framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"))


def test_json_response_is_complete():
    raw = http.json_response(403, b'{"message":"no"}', close=True)
    head = http.parse_head(raw[: raw.index(b"\r\n\r\n") + 4], response=True)
    assert head.status == 403
    assert not head.keep_alive
    assert head.header("content-length") == "16"
    assert raw.endswith(b'{"message":"no"}')
