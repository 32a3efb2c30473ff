"""The bypasses other guards fixed in 2026 (ANCHORS.md, "News from the field"), tried on the
real engine through dockyard's guard."""

from __future__ import annotations

import io
import secrets
import shutil
import subprocess
import tarfile

import pytest

from dockyard import labels

pytestmark = pytest.mark.docker

BASE = "dockyard/base:0.1"
CLI = shutil.which("docker", path="/usr/bin")


def _context(*dockerfiles: str) -> bytes:
    """A build context tar whose entries may repeat a name (the daemon keeps the last)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for text in dockerfiles:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return data.getvalue()


@pytest.mark.skipif(CLI is None, reason="Debian's 20.10 CLI (/usr/bin/docker) is missing")
@pytest.mark.parametrize("buildkit", ["0", "1"])
def test_a_context_with_two_dockerfiles_cannot_claim_another_owner(
    guard, owners, docker_client, buildkit
):
    """The guard reads no Dockerfile: what it enforces (the owner stamp, the query's escapes)
    holds whichever entry dockerd builds, here the last one, which claims bob's label."""
    alice, bob = owners
    ref = f"dockyard-test/two-{alice}-{buildkit}:1"
    context = _context(
        f"FROM {BASE}\nLABEL picked=first\n",
        f"FROM {BASE}\nLABEL picked=last {labels.OWNER}={bob}\n",
    )
    env = guard.env(alice, DOCKER_BUILDKIT=buildkit, DOCKER_CONFIG=str(guard.root / "config"))
    done = subprocess.run(
        [CLI or "docker", "build", "-t", ref, "-"], input=context, env=env,
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = docker_client.images.get(ref).labels
    assert found["picked"] == "last"
    assert found[labels.OWNER] == alice
    denied = guard.docker(bob, "rmi", ref, check=False)
    assert b"belongs to another owner" in denied.stderr, denied.stderr


def test_a_name_made_again_by_another_owner_does_not_inherit_the_old_rights(
    guard, owners, docker_client
):
    """Nothing the guard remembers about a name outlives the object: after alice's container
    and volume are removed and bob makes the same names, alice is refused both."""
    alice, bob = owners
    name = f"reused-{secrets.token_hex(3)}"
    guard.docker(alice, "create", "--name", name, "-v", f"{name}:/v", BASE, "true")
    guard.docker(alice, "inspect", name)  # looked up (and any cache warmed) as alice's
    guard.docker(alice, "volume", "inspect", name)
    guard.docker(alice, "rm", name)
    guard.docker(alice, "volume", "rm", name)
    guard.docker(bob, "create", "--name", name, "-v", f"{name}:/v", BASE, "true")
    for args in (("inspect", name), ("rm", name), ("volume", "inspect", name),
                 ("run", "--rm", "-v", f"{name}:/v", BASE, "true")):  # fmt: skip
        denied = guard.docker(alice, *args, check=False)
        assert b"belongs to another owner" in denied.stderr, (args, denied.stderr)
    assert docker_client.volumes.get(name).attrs["Labels"][labels.OWNER] == bob
