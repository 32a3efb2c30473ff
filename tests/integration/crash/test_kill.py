"""kill -9 of each long command at the points its own progress names: the rerun succeeds,
gc reclaims what the dead run left, and nothing labelled remains once the object is removed.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from dockyard.engine import service
from dockyard.images import recipes

from .conftest import dockyard, kill_at, labelled, named_networks, start, wait_for_line

pytestmark = pytest.mark.docker
BASE = recipes.recipe(recipes.BASE).ref


def listed(name):
    found = json.loads(dockyard("engine", "ls", "--json").stdout)
    return next((e for e in found if e["name"] == name), None)


@pytest.mark.parametrize("point", ["creating network", "creating engine container", "waiting for"])
def test_engine_create_killed_then_created_again(point, docker_client, engine_image, unique):
    name = unique("kc")
    kill_at(point, "engine", "create", name)
    left, table = listed(name), dockyard("engine", "ls").stdout
    again = dockyard("engine", "create", name)  # resumes: it never was an engine to use
    assert again.code == 0, again.stderr
    if left is not None:  # the container was made: shown as never ready, never as existing
        assert left.get("ready") is False
        assert "never ready" in table
    assert listed(name)["ready"] is True
    assert len(named_networks(docker_client, f"dockyard-{name}")) == 1
    assert dockyard("engine", "rm", name, "--volumes").code == 0
    assert labelled(docker_client, engine=name) == []


def test_gc_reclaims_an_engine_whose_create_was_killed(docker_client, engine_image, unique):
    name = unique("kg")
    kill_at("waiting for", "engine", "create", name)
    swept = dockyard("gc", "--grace", "0s", "--json")
    assert swept.code == 0, swept.stderr
    gone = {(r["kind"], r["name"]) for r in json.loads(swept.stdout)["removed"]}
    assert ("engine", name) in gone
    assert ("network", f"dockyard-{name}") in gone
    assert listed(name) is None
    # what stays is its cache volume, as after engine rm; the next create reuses it
    assert labelled(docker_client, engine=name) == [f"volume dockyard-cache-{name}"]
    assert dockyard("engine", "create", name).code == 0
    assert dockyard("engine", "rm", name, "--volumes").code == 0
    assert labelled(docker_client, engine=name) == []


@pytest.mark.parametrize("point", ["creating engine container", "waiting for", "seeding", "ci "])
def test_up_killed_then_up_finishes_the_stack(point, stack_file, docker_client, engine_image):
    name, path = stack_file
    kill_at(point, "up", "-f", str(path))
    again = dockyard("up", "-f", str(path), "--json")
    assert again.code == 0, again.stderr
    assert dockyard("status", "--stack", name).code == 0
    assert service.has_image(f"{name}-engine", BASE, client=docker_client)
    if point == "seeding":  # ready but never seeded: finished, not called unchanged
        actions = {a["component"]: a["action"] for a in json.loads(again.stdout)["actions"]}
        assert actions["engine"] in ("completed", "recreated")
    assert len(named_networks(docker_client, name)) == 1
    assert dockyard("down", "--stack", name, "--volumes").code == 0
    assert labelled(docker_client, stack=name) == []


def test_demo_killed_leaves_nothing_gc_or_down_cannot_reclaim(
    stack_file, docker_client, agent_image, engine_image
):
    name, path = stack_file
    assert dockyard("up", "-f", str(path)).code == 0
    verify = f"{name}-verify-"

    def verifiers():
        return [item for item in labelled(docker_client) if verify in item]

    kill_at("docker pull (fresh engine)", "demo", "--stack", name)  # its verify engine is up
    assert verifiers()
    swept = dockyard("gc", "--grace", "0s", "--json")
    assert swept.code == 0, swept.stderr
    assert verifiers() == []
    kill_at("waiting for", "demo", "--stack", name)  # while its verify engine starts
    assert verifiers()
    down = dockyard("down", "--stack", name, "--volumes")
    assert down.code == 0, down.stderr
    assert labelled(docker_client, stack=name) == []


def test_a_failed_up_removes_what_it_created(stack_file, docker_client, base_image):
    name, path = stack_file
    path.write_text(f"name: {name}\ndocker: dind\nengine:\n  image: {base_image}\n")
    failed = dockyard("up", "-f", str(path))
    assert failed.code == 1
    assert labelled(docker_client, stack=name) == []


def test_doctor_names_a_missing_base_image_and_up_seeds_it(stack_file, docker_client, agent_image):
    name, path = stack_file
    assert dockyard("up", "-f", str(path)).code == 0
    engine = f"{name}-engine"
    cid = docker_client.api.exec_create(engine, ["docker", "rmi", BASE])["Id"]
    docker_client.api.exec_start(cid)
    doctor = dockyard("doctor", "--stack", name)
    assert doctor.code == 1
    assert f"the engine lacks {BASE}" in doctor.stdout
    assert "data-root" in dockyard("doctor", "--stack", name, "--json").stdout
    again = dockyard("up", "-f", str(path), "--json")
    assert {a["component"]: a["action"] for a in json.loads(again.stdout)["actions"]}[
        "engine"
    ] == "completed"
    assert dockyard("doctor", "--stack", name).code == 0


def ping(sock, tries=100):
    """The guard prints 'guarding' before its loop binds: the first accept follows soon."""
    for _ in range(tries):
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            try:
                client.connect(str(sock))
            except (ConnectionRefusedError, FileNotFoundError):
                time.sleep(0.05)
                continue
            client.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
            return client.recv(4096)
    raise AssertionError(f"nothing accepts on {sock}")


def test_guard_killed_then_started_again_on_its_socket(tmp_path):
    sock = tmp_path / "guard.sock"
    argv = ("guard", "--listen", f"unix://{sock}?owner=crash", "--audit-log", str(tmp_path / "a"))
    first = start(*argv)
    wait_for_line(first, "guarding")
    assert ping(sock).startswith(b"HTTP/1.1 200")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert sock.exists()  # what a killed guard leaves: a socket nobody listens on
    process = start(*argv)
    try:
        wait_for_line(process, "guarding")
        assert ping(sock).startswith(b"HTTP/1.1 200")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_serve_and_lease_killed_then_served_leased_and_reclaimed(
    tmp_path, docker_client, engine_image, unique
):
    pool = unique("kp").replace("-", "")
    config = tmp_path / "pools.yaml"
    config.write_text(
        f"pools:\n  - name: {pool}\n    image: {engine_image}\n    warm: 1\n    max: 2\n"
    )
    server = f"unix://{tmp_path}/serve.sock"
    serve = ("serve", "--listen", server, "--config", str(config))
    kill_at("serving", *serve)  # its first warm engine is being made
    process = start(*serve)
    try:
        wait_for_line(process, "serving")
        lines = kill_at("# lease", "lease", "--pool", pool, "--server", server)
        lease_id = lines[-1].split()[2].rstrip(":")
        listed = dockyard("leases", "--server", server, "--json")
        assert lease_id in {item["id"] for item in json.loads(listed.stdout)}
        assert dockyard("release", lease_id, "--server", server).code == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    swept = dockyard("gc", "--grace", "0s")
    assert swept.code == 0, swept.stderr
    assert labelled(docker_client, pool=pool) == []
