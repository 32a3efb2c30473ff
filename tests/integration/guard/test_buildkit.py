"""BuildKit builds through the guard with Debian's 20.10 CLI (``DOCKER_BUILDKIT=1``): the
hijacked ``/session`` relayed, ``POST /build?version=2`` judged on its query, two owners apart."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard import labels

pytestmark = pytest.mark.docker

CLI = shutil.which("docker", path="/usr/bin")
needs_cli = pytest.mark.skipif(
    CLI is None, reason="Debian's 20.10 CLI (/usr/bin/docker) is missing"
)

DOCKERFILE = """\
FROM dockyard/base:0.1 AS first
RUN --mount=type=cache,target=/cache echo cached > /cache/seen; echo {marker} > /made
FROM dockyard/base:0.1
COPY --from=first /made /made
RUN --mount=type=secret,id=token cp /run/secrets/token /token-copy
"""


def buildkit(guard, owner: str, *args: str, cwd: Path, check: bool = True):
    env = guard.env(owner, DOCKER_BUILDKIT="1", DOCKER_CONFIG=str(guard.root / "config"))
    env["BUILDKIT_PROGRESS"] = "plain"
    done = subprocess.run(
        [CLI or "docker", *args], env=env, cwd=cwd, capture_output=True, timeout=180, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode()}")
    return done


@pytest.fixture
def context(tmp_path) -> Path:
    marker = secrets.token_hex(4)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.format(marker=marker))
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "marker").write_text(marker)
    return tmp_path


@pytest.fixture
def registry(docker_client) -> Iterator[str]:
    """dockyard's registry image on a loopback port of the host (its engine pushes to it)."""
    container = docker_client.containers.run(
        "dockyard/registry:0.1",
        detach=True,
        ports={"5000/tcp": ("127.0.0.1", None)},
        labels=labels.managed("test-registry"),
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"]
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", int(port))):
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        container.remove(force=True, v=True)


@needs_cli
def test_multi_stage_build_with_cache_mount_and_secret_then_push(
    guard, owners, context, registry, docker_client
):
    alice = owners[0]
    ref = f"{registry}/dockyard-test/bk-{alice}:1"
    built = buildkit(guard, alice, "build", "--secret", f"id=token,src={context / 'token'}",
                     "-t", ref, ".", cwd=context)  # fmt: skip
    assert b"naming to" in built.stderr, built.stderr
    image = docker_client.images.get(ref)
    assert image.labels[labels.OWNER] == alice
    ran = guard.docker(alice, "run", "--rm", ref, "cat", "/made", "/token-copy", cli="20.10")
    assert ran.stdout == (context / "marker").read_bytes() + b"\ns3cret\n"
    pushed = guard.docker(alice, "push", ref, cli="20.10")
    assert b"digest: sha256:" in pushed.stdout, pushed.stdout
    audit = [line for line in guard.audit_lines() if line["path"] in ("/session", "/build")]
    assert {line["path"] for line in audit if line["verdict"] == "allow"} == {"/session", "/build"}


@needs_cli
def test_owners_stay_apart_and_escapes_are_denied(guard, owners, context, docker_client):
    alice, bob = owners
    ref = f"dockyard-test/bk-{alice}:1"
    secret = ("--secret", f"id=token,src={context / 'token'}")
    buildkit(guard, alice, "build", *secret, "-t", ref, ".", cwd=context)
    taken = buildkit(guard, bob, "build", *secret, "-t", ref, ".", cwd=context, check=False)
    assert b"dockyard guard: ownership: image" in taken.stderr, taken.stderr
    assert b"belongs to another owner" in taken.stderr
    host = buildkit(guard, bob, "build", "--network", "host", *secret, ".", cwd=context,
                    check=False)  # fmt: skip
    assert b"dockyard guard: build: build networkmode='host'" in host.stderr, host.stderr
    parent = buildkit(guard, bob, "build", "--cgroup-parent", "/", *secret, ".", cwd=context,
                      check=False)  # fmt: skip
    assert b"dockyard guard: cgroup-parent" in parent.stderr, parent.stderr
    assert docker_client.images.get(ref).labels[labels.OWNER] == alice


@needs_cli
def test_local_output_comes_back_through_the_session(guard, owners, context, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    secret = ("--secret", f"id=token,src={context / 'token'}")
    buildkit(guard, owners[0], "build", *secret, "-o", f"type=local,dest={out}", ".", cwd=context)
    assert (out / "token-copy").read_text() == "s3cret\n"


def _open_session(path: str, ident: str) -> socket.socket:
    """A BuildKit session opened by hand, held open (the daemon answers 101)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    sock.sendall(
        b"POST /session HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        + f"X-Docker-Expose-Session-Uuid: {ident}\r\n".encode()
        + b"X-Docker-Expose-Session-Name: test\r\n\r\n"
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101"), "session not upgraded"
    return sock


def _post(path: str, target: str) -> tuple[int, dict[str, str]]:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    with sock:
        sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body[body.index(b"{") :]) if b"{" in body else {}


def test_a_build_cannot_name_another_owners_session(guard, owners):
    """A build naming a session reads that client's files and secrets: only its own."""
    alice, bob = owners
    ident = secrets.token_hex(12)
    held = _open_session(guard.sockets[alice], ident)
    with held:
        target = f"/v1.41/build?version=2&remote=client-session&session={ident}&t=x:{bob}"
        status, body = _post(guard.sockets[bob], target)
        assert status == 403
        assert body["message"] == (
            f"dockyard guard: ownership: BuildKit session '{ident}' is not yours"
        )
        # ... and bob cannot take over the ID while alice holds it
        taken = socket.socket(socket.AF_UNIX)
        taken.connect(guard.sockets[bob])
        with taken:
            taken.sendall(
                b"POST /session HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                + f"X-Docker-Expose-Session-Uuid: {ident}\r\n\r\n".encode()
            )
            assert b"already in use" in taken.recv(4096)
    # Once alice's session is gone, nothing of it stays behind for bob to use.
    status, body = _post(guard.sockets[bob], target)
    assert status == 403
    assert "is not yours" in body["message"]


def test_only_the_builds_client_can_send_its_context_or_cancel_it(guard, owners):
    """A tar context sent apart names its build by ID: another client naming it would feed
    that build its own Dockerfile."""
    alice, bob = owners
    session, build = secrets.token_hex(12), secrets.token_hex(32)
    held = _open_session(guard.sockets[alice], session)
    waiting = socket.socket(socket.AF_UNIX)  # alice's build, waiting for its context
    waiting.connect(guard.sockets[alice])
    with held, waiting:
        waiting.sendall(
            f"POST /v1.41/build?version=2&remote=upload-request&session={session}"
            f"&buildid={build}&t=up:{alice} HTTP/1.1\r\n"
            "Host: d\r\nContent-Length: 0\r\n\r\n".encode()
        )
        time.sleep(0.3)  # (the guard has claimed the ID once it forwarded the build)
        status, body = _post(
            guard.sockets[bob], f"/v1.41/build?version=2&buildid=upload-request:{build}"
        )
        assert status == 403
        assert body["message"] == f"dockyard guard: ownership: build '{build}' is not yours"
        status, body = _post(guard.sockets[bob], f"/v1.41/build/cancel?id={build}")
        assert (status, body["message"]) == (
            403,
            f"dockyard guard: ownership: build '{build}' is not yours",
        )
        status, _ = _post(guard.sockets[alice], f"/v1.41/build/cancel?id={build}")
        assert status == 200
