"""The start prologue in dockyard's real engine image, with the engine's privilege."""

from __future__ import annotations

import pytest

from dockyard import archive, labels
from dockyard.engine import host, startup
from dockyard.engine.privilege import host_config

pytestmark = pytest.mark.docker


def run_prologue(docker_client, image, before, then):
    """Run ``before``, then the prologue, which execs ``sh -c then``; its output."""
    decision = host.privilege_decision(docker_client, image)
    assert decision.mode is not None
    body = {
        "Image": image,
        "Entrypoint": ["sh", "-c", f'{before}; exec sh {startup.PATH} sh -c "$0"', then],
        "Labels": labels.managed(labels.ROLE_PROBE),
        "HostConfig": host_config(decision.mode, decision.cap_drop),
    }
    cid = docker_client.api.create_container_from_config(body)["Id"]
    try:
        docker_client.api.put_archive(cid, "/", archive.tar({startup.PATH: startup.script()}))
        docker_client.api.start(cid)
        assert docker_client.api.wait(cid, timeout=60)["StatusCode"] == 0
        return docker_client.api.logs(cid).decode()
    finally:
        docker_client.api.remove_container(cid, force=True, v=True)


@pytest.mark.parametrize(
    ("before", "backend", "binary"),
    [
        ("true", "iptables=default", "/usr/sbin/iptables"),
        # Legacy rules an earlier dockerd left: docker:dind switches to legacy, and so do we.
        ("iptables-legacy -N DOCKER", "iptables=legacy", "iptables-legacy"),
    ],
)
def test_iptables_backend_is_chosen_as_docker_dind_does(
    docker_client, engine_image, before, backend, binary
):
    output = run_prologue(
        docker_client, engine_image, before,
        f'cat {startup.STATUS_PATH}; command -v iptables; readlink -f "$(command -v iptables)"',
    )  # fmt: skip
    assert backend in output.splitlines()
    assert binary in output
