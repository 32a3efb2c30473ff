"""BuildKit Control calls judged from their protobuf bytes (hand-encoded by field number)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.guard import solve
from dockyard.guard.protowire import ProtoError, encode, fields, varint


def entry(number: int, key: str, value: str | bytes) -> bytes:
    return encode(number, encode(1, key) + encode(2, value))


def op_exec(network: int = 0, security: int = 0, cgroup: str = "", mount_type: int = 0) -> bytes:
    meta = encode(1, "sh") + (encode(10, cgroup) if cgroup else b"")
    mount = encode(3, "/") + encode(6, mount_type)
    body = encode(1, meta) + encode(2, mount) + encode(3, network) + encode(4, security)
    return encode(2, body)


def source(identifier: str, **attrs: str) -> bytes:
    body = encode(1, identifier) + b"".join(entry(2, k, v) for k, v in attrs.items())
    return encode(3, body)


def definition(*ops: bytes) -> bytes:
    return b"".join(encode(1, op) for op in ops)


def request(*parts: bytes) -> bytes:
    return b"".join(parts)


DOCKERFILE = request(encode(1, "ref1"), encode(5, "sess1"), encode(6, "dockerfile.v0"))


def test_a_dockerfile_solve_needs_its_session_and_its_tags():
    found = solve.judge_solve(request(DOCKERFILE, encode(3, "moby"), entry(4, "name", "a:1,b:2")))
    assert (found.ref, found.tags, found.sessions) == ("ref1", ["a:1", "b:2"], {"sess1"})


def test_a_raw_llb_solve_is_read_op_by_op():
    raw = definition(source("docker-image://docker.io/library/base:1"), op_exec(network=2))
    found = solve.judge_solve(request(encode(1, "r"), encode(2, raw)))
    assert found.ref == "r"
    local = definition(source("local://context", **{"local.session": "s9"}))
    assert solve.judge_solve(encode(2, local)).sessions == {"s9"}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (request(DOCKERFILE, encode(9, "network.host")), "entitlement 'network.host'"),
        (request(DOCKERFILE, encode(9, "security.insecure")), "entitlement 'security.insecure'"),
        (encode(2, definition(op_exec(network=1))), "host networking"),
        (encode(2, definition(op_exec(security=1))), "insecure"),
        (encode(2, definition(op_exec(cgroup="/"))), "cgroup parent"),
        (encode(2, definition(op_exec(mount_type=7))), "mount type 7"),
        (encode(2, definition(source("docker-image://a"), encode(5, b""))), "nested builds"),
        (encode(2, definition(encode(99, b""))), "op field 99"),
        (encode(2, definition(source("unix:///var/run/docker.sock"))), "LLB source"),
        (request(DOCKERFILE, entry(7, "force-network-mode", "host")), "force-network-mode"),
        (request(DOCKERFILE, entry(7, "cgroup-parent", "/x")), "cgroup-parent"),
        (request(DOCKERFILE, entry(7, "source", "evil/frontend")), "source .another frontend"),
        (request(DOCKERFILE, entry(7, "cmdline", "evil/frontend")), "cmdline .another frontend"),
        (request(DOCKERFILE, entry(7, "label:io.dockyard.owner", "b")), "reserved"),
        (request(DOCKERFILE, encode(3, "image"), entry(4, "push", "true")), "exporter 'image'"),
        (request(DOCKERFILE, encode(3, "moby"), entry(4, "push", "true")), "attribute 'push'"),
        (request(encode(6, "gateway.v0")), "frontend 'gateway.v0'"),
        (request(DOCKERFILE, encode(8, encode(4, b"x"))), "cache"),
        (request(DOCKERFILE, encode(13, b"")), "field 13"),
        (b"\x0a\x05ab", "unreadable"),
        # a frontend input that hides a host-network exec
        (request(DOCKERFILE, encode(10, encode(1, "ctx") + encode(2, definition(op_exec(1))))),
         "host networking"),
    ],
)  # fmt: skip
def test_escapes_and_unreadable_solves_are_denied(message, reason):
    with pytest.raises(solve.SolveDeniedError, match=reason):
        solve.judge_solve(message)


def test_entitlements_a_profile_allows():
    allowed = frozenset({"network.host"})
    assert solve.judge_solve(request(DOCKERFILE, encode(9, "network.host")), allowed).ref


def test_calls_other_than_solve_status_and_descriptions_are_refused():
    assert solve.judge_call(solve.SOLVE) is None
    assert solve.judge_call("/moby.buildkit.v1.Control/ListWorkers") is None
    for method in ("/moby.buildkit.v1.Control/Prune", "/moby.buildkit.v1.Control/Session",
                   "/moby.buildkit.v1.Control/DiskUsage", "/x.Y/Z"):  # fmt: skip
        assert "not allowed" in (solve.judge_call(method) or "")
    assert solve.status_ref(encode(1, "ref1")) == "ref1"
    with pytest.raises(solve.SolveDeniedError):
        solve.status_ref(encode(2, "x"))


@pytest.mark.parametrize(
    "data", [b"\x80", b"\x08", b"\x0a\x02a", b"\x0b", b"\x00\x01", b"\x08" + b"\xff" * 10 + b"\x01"]
)
def test_the_wire_reader_refuses_what_it_cannot_read_exactly(data):
    with pytest.raises(ProtoError):
        list(fields(data))


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varints_round_trip(value):
    from dockyard.guard.protowire import encode_varint

    assert varint(encode_varint(value), 0) == (value, len(encode_varint(value)))


@given(st.binary(max_size=512))
def test_any_bytes_are_judged_or_refused_never_crash(data):
    with contextlib.suppress(solve.SolveDeniedError):
        solve.judge_solve(data)
    with contextlib.suppress(solve.SolveDeniedError):
        solve.status_ref(data)
