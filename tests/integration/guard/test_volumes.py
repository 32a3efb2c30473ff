"""Volumes a container create makes (named by Binds or Mounts, or anonymous) belong to the
client whose create made them, on the real engine."""

from __future__ import annotations

import secrets
import time

import pytest

from dockyard import labels

pytestmark = pytest.mark.docker

BASE = "dockyard/base:0.1"


def test_an_implicit_volume_is_its_creators_and_invisible_to_others(guard, owners, docker_client):
    """The issue's test: create, prune, let a create with Binds make it again, then mount it
    with Mounts: allowed, and still invisible to another owner."""
    alice, bob = owners
    name = f"cache-{secrets.token_hex(3)}"
    guard.docker(alice, "volume", "create", name)
    guard.docker(alice, "volume", "prune", "-f")
    assert not docker_client.volumes.list(filters={"name": name})
    guard.docker(alice, "run", "--rm", "-v", f"{name}:/c", BASE, "sh", "-c", "echo kept > /c/f")
    assert docker_client.volumes.get(name).attrs["Labels"][labels.OWNER] == alice
    read = guard.docker(
        alice, "run", "--rm", "--mount", f"type=volume,src={name},dst=/c", BASE, "cat", "/c/f"
    )
    assert read.stdout == b"kept\n"
    assert name in guard.docker(alice, "volume", "ls", "-q").stdout.decode().split()
    assert guard.docker(alice, "volume", "inspect", name).returncode == 0
    # bob sees nothing of it and cannot mount, inspect or remove it
    assert name not in guard.docker(bob, "volume", "ls", "-q").stdout.decode().split()
    for args in (
        ("run", "--rm", "-v", f"{name}:/c", BASE, "true"),
        ("run", "--rm", "--mount", f"type=volume,src={name},dst=/c", BASE, "true"),
        ("volume", "inspect", name),
        ("volume", "rm", name),
    ):
        denied = guard.docker(bob, *args, check=False)
        assert b"dockyard guard: ownership: volume" in denied.stderr, (args, denied.stderr)
    guard.docker(alice, "volume", "rm", name)
    assert not docker_client.volumes.list(filters={"name": name})


def test_a_volume_a_mount_made_first_stays_its_creators(guard, owners, docker_client):
    alice, bob = owners
    name = f"first-{secrets.token_hex(3)}"
    made = guard.docker(
        bob, "create", "--mount", f"type=volume,src={name},dst=/d", BASE, "true", cli="20.10"
    )
    assert docker_client.volumes.get(name).attrs["Labels"][labels.OWNER] == bob
    denied = guard.docker(alice, "create", "-v", f"{name}:/d", BASE, "true", check=False)
    assert b"belongs to another owner" in denied.stderr, denied.stderr
    guard.docker(bob, "rm", made.stdout.decode().strip())
    guard.docker(bob, "volume", "rm", name)


def test_anonymous_volumes_are_the_owners_and_go_with_rm_v(guard, owners, docker_client):
    alice, bob = owners
    made = guard.docker(alice, "create", "-v", "/cache", BASE, "true").stdout.decode().strip()
    mounts = docker_client.api.inspect_container(made)["Mounts"]
    (anonymous,) = [mount["Name"] for mount in mounts if mount["Type"] == "volume"]
    assert guard.docker(alice, "volume", "inspect", anonymous).returncode == 0
    denied = guard.docker(bob, "volume", "inspect", anonymous, check=False)
    assert b"belongs to another owner" in denied.stderr, denied.stderr
    guard.docker(alice, "rm", "-v", made)
    assert not docker_client.volumes.list(filters={"name": anonymous})
    # --rm removes its anonymous volume too
    running = guard.docker(alice, "run", "-d", "--rm", "-v", "/scratch", BASE, "sleep", "30")
    ident = running.stdout.decode().strip()
    (scratch,) = [m["Name"] for m in docker_client.api.inspect_container(ident)["Mounts"]]
    guard.docker(alice, "kill", ident)
    for _ in range(100):
        if not docker_client.volumes.list(filters={"name": scratch}):
            break
        time.sleep(0.05)
    assert not docker_client.volumes.list(filters={"name": scratch})
