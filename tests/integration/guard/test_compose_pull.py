"""docker-compose and pulls through the guard: the clients probe before they create."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time

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


def test_push_and_pull_through_the_guard(guard, owners, docker_client, base_image):
    registry = docker_client.api.create_container(
        builder.ensure("registry"),
        labels=labels.managed("test"),
        host_config=docker_client.api.create_host_config(port_bindings={5000: ("127.0.0.1", None)}),
    )
    ref = None
    try:
        docker_client.api.start(registry["Id"])
        port = docker_client.api.port(registry["Id"], 5000)[0]["HostPort"]
        ref = f"localhost:{port}/pulled:{owners[0][-6:]}"
        guard.docker(owners[0], "tag", base_image, ref)
        for _ in range(50):  # the registry takes a moment to listen
            if guard.docker(owners[0], "push", ref, check=False).returncode == 0:
                break
            time.sleep(0.1)
        guard.docker(owners[0], "rmi", ref)
        pulled = guard.docker(owners[0], "pull", ref).stdout.decode()
        assert "Digest: sha256:" in pulled
        ran = guard.docker(owners[0], "run", "--rm", ref, "echo", "pulled ok").stdout
        assert ran == b"pulled ok\n"
    finally:
        docker_client.api.remove_container(registry["Id"], force=True, v=True)
        if ref:
            with contextlib.suppress(Exception):
                docker_client.api.remove_image(ref, force=True)
