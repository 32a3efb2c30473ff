"""The guard's TCP listener with mutual TLS: the client certificate's name is its owner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from dockyard import pki

pytestmark = pytest.mark.docker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def tls_guard(tmp_path):
    port = free_port()
    guard = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "guard", "--listen", f"tcp://127.0.0.1:{port}",
         "--tls", "--audit-log", str(tmp_path / "audit.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    owner = f"tls-{os.getpid()}"
    try:
        good = pki.PkiStore().client_dir(owner, engine=pki.SERVICE_ISSUERS["guard"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env |= {"DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1"}

        def docker(cert_dir, *args, cli="docker", stdin=None):
            return subprocess.run(
                [cli, *args], env=env | {"DOCKER_CERT_PATH": str(cert_dir)},
                input=stdin, capture_output=True, timeout=60, check=False,
            )  # fmt: skip

        for _ in range(100):
            if docker(good, "version").returncode == 0:
                break
            time.sleep(0.1)
        yield docker, good, owner
    finally:
        guard.terminate()
        guard.wait(10)
        pki.PkiStore().remove_client(owner)


def test_tls_listener_takes_the_owner_from_the_certificate(tls_guard, base_image, tmp_path):
    docker, good, owner = tls_guard
    started = docker(good, "run", "-d", "--name", owner, base_image, "echo", "over tls")
    assert started.returncode == 0, started.stderr
    try:
        docker(good, "wait", owner)
        assert docker(good, "logs", owner).stdout == b"over tls\n"
        listed = docker(good, "ps", "-a", "--format", "{{.Names}}").stdout.decode().split()
        assert listed == [owner]  # its own objects only: the owner is the certificate's name
    finally:
        docker(good, "rm", "-f", owner)
    stranger = pki.PkiStore(tmp_path / "other").client_dir("stranger")
    assert docker(stranger, "version").returncode != 0


def test_attached_run_over_tls(tls_guard, clis, base_image):
    """A hijacked attach outlives the client's close_notify: the CLI ends its input with it
    (``CloseWrite``) and then reads the output."""
    docker, good, _owner = tls_guard
    for cli in clis.values():
        ran = docker(good, "run", "--rm", base_image, "echo", "over tls", cli=cli)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == b"over tls\n"
        piped = docker(good, "run", "-i", "--rm", base_image, "cat", cli=cli, stdin=b"in\n" * 999)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == b"in\n" * 999
