"""The engine link: views that stay valid, StreamReader's errors, flow control, half-close."""

import asyncio
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.guard import http
from dockyard.guard.link import COPY_BELOW, FIRST_SIZE, SIZE, Link


def on_link(action):
    """Run ``action(link, peer)`` with ``peer`` a blocking socket at the link's other end."""

    async def go():
        ours, peer = socket.socketpair()
        _, link = await asyncio.get_running_loop().create_unix_connection(Link, sock=ours)
        try:
            return await action(link, peer)
        finally:
            link.close()
            peer.close()

    return asyncio.run(go())


async def settle():
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_a_large_read_is_a_view_that_later_bytes_never_overwrite():
    async def action(link, peer):
        first = b"a" * COPY_BELOW
        peer.sendall(first)
        view = await link.read(COPY_BELOW)
        assert isinstance(view, memoryview)
        sending = asyncio.create_task(asyncio.to_thread(peer.sendall, b"b" * SIZE))
        rest = bytearray()
        while len(rest) < SIZE:
            rest += await link.read(SIZE)
        await sending
        return bytes(view), bytes(rest)

    held, rest = on_link(action)
    assert held == b"a" * COPY_BELOW
    assert rest == b"b" * SIZE


def test_small_reads_are_copies_and_the_end_of_stream_is_empty():
    async def action(link, peer):
        peer.sendall(b"hello")
        peer.shutdown(socket.SHUT_WR)
        return await link.read(100), await link.read(100)

    assert on_link(action) == (b"hello", b"")


def test_heads_are_read_as_a_stream_reader_reads_them():
    async def action(link, peer):
        peer.sendall(b"HTTP/1.1 200 OK\r\n\r\nbody")
        head = await http.read_head(link)
        body = await link.read(100)
        peer.sendall(b"torn head")
        peer.shutdown(socket.SHUT_WR)
        with pytest.raises(http.HTTPError, match="inside an HTTP head"):
            await http.read_head(link)
        return head, body

    assert on_link(action) == (b"HTTP/1.1 200 OK\r\n\r\n", b"body")


def test_an_oversize_head_overruns_the_limit():
    async def action(link, peer):
        peer.sendall(b"X" * (http.HEAD_LIMIT + 10))
        with pytest.raises(http.HTTPError) as caught:
            await http.read_head(link)
        return caught.value.status

    assert on_link(action) == 431


def test_reading_pauses_when_the_buffer_is_full_and_resumes_when_read():
    sent = 2 * SIZE

    async def action(link, peer):
        sending = asyncio.create_task(asyncio.to_thread(peer.sendall, b"x" * sent))
        while not link.reading_paused:
            await asyncio.sleep(0.01)
        assert link.end - link.start == SIZE
        got = 0
        while got < sent:
            got += len(await link.read(SIZE))
        await sending
        return got

    assert on_link(action) == sent


def test_the_peer_half_closing_leaves_the_link_writable():
    async def action(link, peer):
        peer.shutdown(socket.SHUT_WR)
        assert await link.read(10) == b""
        link.write(b"still here")
        await link.drain()
        return peer.recv(100)

    assert on_link(action) == b"still here"


def test_drain_after_the_connection_is_lost_raises():
    async def action(link, peer):
        peer.close()
        await settle()
        link.write(b"x" * 1000)
        await settle()
        with pytest.raises(ConnectionError):
            await link.drain()

    on_link(action)


def test_a_quiet_connection_keeps_a_small_buffer_and_a_busy_one_grows():
    async def action(link, peer):
        for _ in range(50):
            peer.sendall(b"GET /_ping HTTP/1.1\r\n\r\n")
            await http.read_head(link)
        small = len(link.buffer)
        head = b"GET / HTTP/1.1\r\nX: " + b"a" * (http.HEAD_LIMIT - 100) + b"\r\n\r\n"
        sending = asyncio.create_task(asyncio.to_thread(peer.sendall, head))
        assert await http.read_head(link) == head
        await sending
        return small, len(link.buffer)

    assert on_link(action) == (FIRST_SIZE, SIZE)


def test_a_head_split_across_a_buffer_renewal_is_still_found():
    async def action(link, peer):
        body = COPY_BELOW + 1000
        peer.sendall(b"b" * body + b"GET / HT")
        while link.end - link.start < body + 8:
            await settle()
        assert isinstance(await link.read(COPY_BELOW), memoryview)  # the buffer is handed out
        assert await link.read(1000) == b"b" * 1000
        reading = asyncio.create_task(http.read_head(link))
        await settle()
        peer.sendall(b"TP/1.1\r\n\r\n")  # lands in a fresh buffer, the unread bytes moved
        return await asyncio.wait_for(reading, 5)

    assert on_link(action) == b"GET / HTTP/1.1\r\n\r\n"


@settings(max_examples=40, deadline=None)
@given(
    messages=st.lists(
        st.tuples(
            st.binary(max_size=200).map(
                lambda b: b"H" + b.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n\r\n"
            ),
            st.integers(min_value=0, max_value=2 * SIZE),
        ),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.integers(min_value=1000, max_value=SIZE), min_size=1, max_size=6),
    sizes=st.lists(st.integers(min_value=1, max_value=2 * SIZE), min_size=1, max_size=6),
)
def test_heads_and_bodies_read_back_exactly_however_they_arrive(messages, cuts, sizes):
    bodies = [bytes([n % 251]) * length for n, (_, length) in enumerate(messages)]
    wire = b"".join(head + body for (head, _), body in zip(messages, bodies, strict=True))

    def send(peer):
        offset, turn = 0, 0
        while offset < len(wire):
            step = cuts[turn % len(cuts)]
            peer.sendall(wire[offset : offset + step])
            offset, turn = offset + step, turn + 1

    async def action(link, peer):
        sending = asyncio.create_task(asyncio.to_thread(send, peer))
        heads, held, turn = [], [], 0  # every piece is held until the end: none may change
        for _, length in messages:
            heads.append(await http.read_head(link))
            pieces, left = [], length
            while left:
                piece = await link.read(min(left, sizes[turn % len(sizes)]))
                pieces.append(piece)
                left -= len(piece)
                turn += 1
            held.append(pieces)
        await sending
        return heads, [b"".join(pieces) for pieces in held]

    heads, got = on_link(action)
    assert heads == [head for head, _ in messages]
    assert got == bodies
