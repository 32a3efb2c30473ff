"""buildx's path: ``POST /grpc`` upgraded to h2c, read frame by frame by the guard, each
Control call judged, against the real dockerd (20.10 serves BuildKit's Control API there).
No buildx exists here: the test client below speaks h2c + gRPC itself, LLB hand-encoded by
field number."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import socket
import struct
import urllib.parse
from dataclasses import dataclass, field

import hpack
import pytest

from dockyard.guard import h2grpc
from dockyard.guard.h2grpc import DATA, END_HEADERS, HEADERS, RST_STREAM, frame
from dockyard.guard.protowire import encode, encode_varint

pytestmark = pytest.mark.docker

SOLVE = "/moby.buildkit.v1.Control/Solve"
DENIED = h2grpc.PERMISSION_DENIED


U64 = (1 << 64) - 1


def int64(number: int, value: int) -> bytes:
    """A (possibly negative) int64 field."""
    return encode_varint(number << 3) + encode_varint(value & U64)


def mkfile_definition(path: str = "/hello", data: bytes = b"hi\n") -> bytes:
    """``pb.Definition`` of one FileOp making a file on scratch, and its terminal op."""
    mkfile = encode(1, path) + encode(2, 0o644) + encode(3, data)
    action = int64(1, -1) + int64(2, -1) + int64(3, 0) + encode(5, mkfile)
    op = encode(4, encode(2, action))
    return definition_of(op)


def exec_definition(network: int = 0, security: int = 0) -> bytes:
    """An exec op (``true``) on dockyard's base image, with the given network and security."""
    source = encode(1, encode(3, encode(1, "docker-image://docker.io/dockyard/base:0.1")))
    source_digest = _digest(source)
    meta = encode(1, encode(1, "true"))
    mount = int64(1, 0) + encode(3, "/") + int64(4, 0)
    exec_op = meta + encode(2, mount) + encode(3, network) + encode(4, security)
    op = encode(1, encode(1, source_digest) + int64(2, 0)) + encode(2, exec_op)
    return b"".join(encode(1, raw) for raw in (source, op)) + _terminal(op)


def definition_of(op: bytes) -> bytes:
    return encode(1, op) + _terminal(op)


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _terminal(op: bytes) -> bytes:
    return encode(1, encode(1, encode(1, _digest(op)) + int64(2, 0)))


@dataclass
class Reply:
    status: int | None = None
    message: str = ""
    data: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    goaway: bool = False


class Client:
    """One h2c connection to a guard's (or dockerd's) unix socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.sock.sendall(
            b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            piece = self.sock.recv(1)
            if not piece:
                break
            head += piece
        self.switched = head.startswith(b"HTTP/1.1 101")
        self.head = head
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.next_stream = 1
        self.replies: dict[int, Reply] = {}
        self.ended: set[int] = set()
        if self.switched:
            self.sock.sendall(h2grpc.PREFACE + h2grpc.frame(h2grpc.SETTINGS, 0, 0, b""))

    def call(self, method: str, message: bytes) -> Reply:
        """A unary call; the reply's status and message (gRPC trailers)."""
        return self.read(self.send(method, message))

    def send(self, method: str, message: bytes) -> int:
        """Start a unary call; its stream."""
        stream = self.next_stream
        self.next_stream += 2
        headers = [(":method", "POST"), (":scheme", "http"), (":path", method),
                   (":authority", "docker"), ("content-type", "application/grpc"),
                   ("te", "trailers")]  # fmt: skip
        block = self.encoder.encode(headers)
        body = b"\x00" + struct.pack(">I", len(message)) + message
        self.sock.sendall(
            h2grpc.frame(h2grpc.HEADERS, h2grpc.END_HEADERS, stream, block)
            + h2grpc.frame(h2grpc.DATA, h2grpc.END_STREAM, stream, body)
        )
        self.replies[stream] = Reply()
        return stream

    def read(self, stream: int) -> Reply:
        """Frames until ``stream`` ends (those of other calls are kept for them)."""
        while stream not in self.ended:
            while len(self.buffer) < 9 or len(self.buffer) < 9 + int.from_bytes(
                self.buffer[:3], "big"
            ):
                piece = self.sock.recv(65536)
                if not piece:
                    return self.replies[stream]
                self.buffer += piece
            length = int.from_bytes(self.buffer[:3], "big")
            kind, flags = self.buffer[3], self.buffer[4]
            sid = struct.unpack(">I", self.buffer[5:9])[0] & 0x7FFFFFFF
            payload = self.buffer[9 : 9 + length]
            self.buffer = self.buffer[9 + length :]
            reply = self.replies.get(sid, Reply())
            if kind == h2grpc.SETTINGS and not flags & 1:
                self._send(h2grpc.frame(h2grpc.SETTINGS, 1, 0, b""))
            elif kind == h2grpc.PING and not flags & 1:
                self._send(h2grpc.frame(h2grpc.PING, 1, 0, payload))
            elif kind == h2grpc.GOAWAY:
                self.replies[stream].goaway = True
            elif kind == h2grpc.HEADERS:
                decoded = self.decoder.decode(payload, raw=True)
                reply.headers += decoded
                found = dict(decoded)
                if b"grpc-status" in found:
                    reply.status = int(found[b"grpc-status"])
                    reply.message = urllib.parse.unquote(found.get(b"grpc-message", b"").decode())
            elif kind == h2grpc.DATA:
                reply.data += payload
                if payload:  # give the window back
                    update = struct.pack(">I", len(payload))
                    self._send(
                        h2grpc.frame(h2grpc.WINDOW_UPDATE, 0, 0, update)
                        + h2grpc.frame(h2grpc.WINDOW_UPDATE, 0, sid, update)
                    )
            if kind in (h2grpc.HEADERS, h2grpc.DATA) and flags & h2grpc.END_STREAM:
                self.ended.add(sid)
        return self.replies[stream]

    def _send(self, data: bytes) -> None:
        """An answer to the peer's control frames (it may have closed already: the guard
        closes right after a refusal)."""
        with contextlib.suppress(OSError):
            self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def solve_request(
    ref: str, definition: bytes = b"", *, frontend: str = "", entitlements: tuple[str, ...] = (),
    exporter: str = "", attrs: dict[str, str] | None = None,
) -> bytes:  # fmt: skip
    out = encode(1, ref)
    if definition:
        out += encode(2, definition)
    if exporter:
        out += encode(3, exporter)
    for key, value in (attrs or {}).items():
        out += encode(4, encode(1, key) + encode(2, value))
    if frontend:
        out += encode(6, frontend)
    for name in entitlements:
        out += encode(9, name)
    return out


@pytest.fixture
def clients(guard, owners):
    opened: list[Client] = []

    def connect(owner: str) -> Client:
        client = Client(guard.sockets[owner])
        assert client.switched, client.head
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def ref() -> str:
    return secrets.token_hex(10)


def test_a_raw_solve_and_the_describing_calls_pass(clients, owners):
    client = clients(owners[0])
    done = client.call(SOLVE, solve_request(ref(), mkfile_definition()))
    assert (done.status, done.message) == (0, "")
    workers = client.call("/moby.buildkit.v1.Control/ListWorkers", b"")
    assert workers.status == 0
    assert workers.data  # the daemon's worker records came back through the guard


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (solve_request("r", mkfile_definition(), entitlements=("network.host",)),
         "entitlement 'network.host' is not allowed"),
        (solve_request("r", mkfile_definition(), entitlements=("security.insecure",)),
         "entitlement 'security.insecure' is not allowed"),
        (solve_request("r", exec_definition(network=1)), "LLB exec with host networking"),
        (solve_request("r", exec_definition(security=1)), "insecure (privileged) mode"),
        (solve_request("r", frontend="dockerfile.v0", attrs=None) + encode(
            7, encode(1, "force-network-mode") + encode(2, "host")), "force-network-mode"),
        (solve_request("r", mkfile_definition()) + encode(42, "?"), "field 42"),
    ],
)  # fmt: skip
def test_escapes_through_solve_are_denied_with_a_grpc_error(clients, owners, request_bytes, reason):
    client = clients(owners[0])
    unique = request_bytes.replace(encode(1, "r"), encode(1, ref()), 1)
    reply = client.call(SOLVE, unique)
    assert reply.status == DENIED
    assert reply.message.startswith("dockyard guard: buildkit: "), reply.message
    assert reason in reply.message


def test_a_tag_the_image_exporter_names_needs_ownership(clients, owners, docker_client):
    alice, bob = owners
    tag = f"dockyard-test/grpc-{alice}:1"
    attrs = {"name": tag}
    made = clients(alice).call(
        SOLVE, solve_request(ref(), mkfile_definition(), exporter="moby", attrs=attrs)
    )
    try:
        assert made.status == 0, made.message
        assert docker_client.images.get(tag)
        taken = clients(bob).call(
            SOLVE, solve_request(ref(), mkfile_definition(), exporter="moby", attrs=attrs)
        )
        assert taken.status == DENIED
        assert f"image {tag!r} belongs to another owner" in taken.message
    finally:
        docker_client.api.remove_image(tag, force=True)


def test_unknown_methods_are_refused(clients, owners):
    for method in ("/moby.buildkit.v1.Control/Prune", "/moby.buildkit.v1.Control/DiskUsage"):
        reply = clients(owners[0]).call(method, b"")
        assert reply.status == DENIED
        assert "is not allowed through the guard" in reply.message


def test_another_owners_build_status_cannot_be_followed(clients, owners):
    alice, bob = owners
    mine = ref()
    assert clients(alice).call(SOLVE, solve_request(mine, mkfile_definition())).status == 0
    reply = clients(bob).call("/moby.buildkit.v1.Control/Status", encode(1, mine))
    assert reply.status == DENIED
    assert f"build {mine!r} is not yours" in reply.message


def test_bad_input_is_torn_down_and_other_connections_carry_on(clients, owners, guard, monkeypatch):
    monkeypatch.setattr(h2grpc, "MESSAGE_LIMIT", 1024)
    bystander = clients(owners[0])
    # an oversize message
    big = clients(owners[0]).call(SOLVE, solve_request(ref(), mkfile_definition(b"x" * 4096)))
    assert big.status == DENIED
    assert "over 1024 bytes" in big.message
    # a malformed preface: the connection is closed
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(guard.sockets[owners[0]])
    raw.sendall(b"POST /grpc HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    raw.settimeout(30)
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    raw.sendall(b"GET / HTTP/1.1\r\n\r\n" + b"\x00" * 40)
    got = b""
    while piece := raw.recv(65536):
        got += piece
    assert b"not an HTTP/2 connection preface" in got
    raw.close()
    # a stream reset in the middle of a Solve: the next call on the connection works
    client = clients(owners[0])
    headers = [(":method", "POST"), (":scheme", "http"), (":path", SOLVE), (":authority", "d")]
    block = client.encoder.encode([*headers, ("content-type", "application/grpc")])
    half = b"\x00" + struct.pack(">I", 500) + b"\x0a"
    client.sock.sendall(
        frame(HEADERS, END_HEADERS, 1, block) + frame(DATA, 0, 1, half)
        + frame(RST_STREAM, 0, 1, struct.pack(">I", 8))
    )  # fmt: skip
    client.next_stream = 3
    after = client.call(SOLVE, solve_request(ref(), mkfile_definition()))
    assert after.status == 0, after.message
    # and the bystander was never disturbed
    assert bystander.call(SOLVE, solve_request(ref(), mkfile_definition())).status == 0


def test_status_sent_before_its_solve_on_one_connection_follows_it(clients, owners):
    """buildx asks for a build's Status as it starts the Solve: the guard must not wait for
    the Solve (behind the Status on the same connection) before passing the Status."""
    client = clients(owners[0])
    mine = ref()
    status = client.send("/moby.buildkit.v1.Control/Status", encode(1, mine))
    solved = client.send(SOLVE, solve_request(mine, mkfile_definition()))
    assert client.read(solved).status == 0
    followed = client.read(status)
    assert followed.status == 0, followed.message
    assert followed.data  # the build's vertexes streamed back
