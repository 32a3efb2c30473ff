"""docker-compose and pulls through the guard: the clients probe before they create."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from dockyard import labels
from dockyard.images import builder

pytestmark = pytest.mark.docker

COMPOSE = """
version: "3.7"
services:
  web:
    image: {base}
    command: ["sh", "-c", "sleep 300"]
    volumes: ["data:/data"]
  client:
    image: {base}
    command: ["sh", "-c", "ping -c1 web >/dev/null && echo reached web"]
    depends_on: [web]
volumes:
  data: {{}}
"""


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_up_and_down_of_a_two_service_project(guard, owners, base_image, tmp_path):
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(base=base_image))
    env = guard.env(owners[0])

    def compose(*args: str) -> str:
        done = subprocess.run(
            ["docker-compose", "-p", f"p{owners[0][-6:]}", *args], cwd=tmp_path, env=env,
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode() + done.stderr.decode()

    compose("up", "-d")
    time.sleep(1)
    assert "reached web" in compose("logs", "client")
    # The other owner sees none of it.
    assert "web" not in guard.docker(owners[1], "ps", "-a").stdout.decode()
    compose("down", "-v")
    assert guard.docker(owners[0], "ps", "-aq").stdout.strip() == b""


@contextlib.contextmanager
def local_registry(docker_client) -> Iterator[str]:
    """A registry published on a loopback port: its ``localhost:PORT`` prefix."""
    registry = docker_client.api.create_container(
        builder.ensure("registry"),
        labels=labels.managed("test"),
        host_config=docker_client.api.create_host_config(port_bindings={5000: ("127.0.0.1", None)}),
    )
    try:
        docker_client.api.start(registry["Id"])
        yield f"localhost:{docker_client.api.port(registry['Id'], 5000)[0]['HostPort']}"
    finally:
        docker_client.api.remove_container(registry["Id"], force=True, v=True)


def push(guard, owner: str, ref: str) -> None:
    for _ in range(50):  # the registry takes a moment to listen
        if guard.docker(owner, "push", ref, check=False).returncode == 0:
            return
        time.sleep(0.1)
    guard.docker(owner, "push", ref)


def test_push_and_pull_through_the_guard(guard, owners, docker_client, base_image):
    ref = None
    try:
        with local_registry(docker_client) as registry:
            ref = f"{registry}/pulled:{owners[0][-6:]}"
            guard.docker(owners[0], "tag", base_image, ref)
            push(guard, owners[0], ref)
            guard.docker(owners[0], "rmi", ref)
            pulled = guard.docker(owners[0], "pull", ref).stdout.decode()
            assert "Digest: sha256:" in pulled
            ran = guard.docker(owners[0], "run", "--rm", ref, "echo", "pulled ok").stdout
            assert ran == b"pulled ok\n"
    finally:
        if ref:
            with contextlib.suppress(Exception):
                docker_client.api.remove_image(ref, force=True)


def test_a_pull_cannot_move_a_tag_another_owner_built(
    guard, owners, clis, docker_client, base_image, tmp_path
):
    alice, bob = owners
    with local_registry(docker_client) as registry:
        ref = f"{registry}/shared:{alice[-6:]}"

        def build(version: str) -> str:
            context = tmp_path / version
            context.mkdir()
            (context / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo {version} > /v\n")
            guard.docker(alice, "build", "-q", "-t", ref, str(context))
            return str(docker_client.api.inspect_image(ref)["Id"])

        pushed = build("v1")
        push(guard, alice, ref)
        local = build("v2")  # alice's tag now differs from what the registry holds
        for cli in clis:
            denied = guard.docker(bob, "pull", ref, cli=cli, check=False)
            assert denied.returncode != 0
            assert b"dockyard guard: ownership" in denied.stderr, denied.stderr
            assert b"belongs to another owner" in denied.stderr
            assert docker_client.api.inspect_image(ref)["Id"] == local
        pulled = guard.docker(alice, "pull", ref).stdout.decode()
        assert "Digest: sha256:" in pulled
        assert docker_client.api.inspect_image(ref)["Id"] == pushed
        # alice's images (both builds) carry her owner label: the guard fixture removes them
