"""Pools on the real host engine: services with unique pool names, CI-like clients of leases,
and a local "Docker Hub" for pull-through caches."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from types import SimpleNamespace

import docker.errors
import pytest

from dockyard import docker_api, labels, pki
from dockyard.engine import client as engine_client
from dockyard.images import builder, recipes
from dockyard.mirror import service as mirror
from dockyard.mirror import upstream
from dockyard.pool import gc, inventory, service
from dockyard.pool.config import PoolConfig


def wait_for(predicate, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def idle(svc, pool):
    return next(p for p in svc.pools() if p["name"] == pool)["idle"]


def purge(client, pool):
    """Everything of ``pool``: engines (with issuers), markers, caches, its network."""
    gc.run(client, now=time.time() + 10**7, certs=service.cert_root(), grace=0, pool=pool)
    selector = {"label": [*inventory.scope(), f"{inventory.POOL}={pool}"]}
    # A serve under test in another worker retires pools it does not serve, racing this gc:
    # an engine it was removing may still hold its volume. What is left goes first.
    for container in client.api.containers(all=True, filters=selector):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(container["Id"], force=True, v=True)
    for volume in client.api.volumes(filters=selector).get("Volumes") or []:
        client.api.remove_volume(volume["Name"], force=True)
    for network in client.api.networks(filters=selector):
        docker_api.remove_network(client, network["Id"])


@pytest.fixture
def make_pool(docker_client, engine_image):
    """Start a PoolService over a fresh pool; everything of it is removed afterwards."""
    started = []

    def make(*, reap_every=5.0, **settings):
        name = settings.pop("name", f"p{secrets.token_hex(3)}")
        svc = service.PoolService(
            [PoolConfig(name=name, image=engine_image, **settings)],
            client=docker_client,
            reap_every=reap_every,
        )
        started.append((svc, name))
        svc.start()
        return svc, name

    yield make
    for svc, name in started:
        for lease in svc.list_leases():
            svc.release(lease.id)
        svc.stop()
        purge(docker_client, name)


@pytest.fixture
def job(docker_client, agent_image):
    """A CI-like container given only a lease's environment and certificate bundle."""
    made = []

    def start(grant):
        env = dict(grant.environment, DOCKER_CERT_PATH=engine_client.CERT_PATH)
        body = {
            "Image": agent_image,
            "Entrypoint": ["sleep"],
            "Cmd": ["infinity"],
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": labels.managed(labels.ROLE_CLIENT, engine=grant.lease.engine),
            "HostConfig": {"NetworkMode": grant.network, "Init": True},
        }
        cid = docker_client.api.create_container_from_config(body)["Id"]
        made.append(cid)
        files = {
            f"{engine_client.CERT_PATH}/{name}": pem.encode()
            for name, pem in grant.certificates.items()
        }
        engine_client.put_files(docker_client, cid, files)
        docker_client.api.start(cid)
        return cid

    yield start
    for cid in made:
        engine_client.remove(docker_client, cid)


def sh(docker_client, cid, script):
    return engine_client.run(docker_client, cid, ["sh", "-c", script])


def assert_cert_files(grant):
    directory = grant.environment["DOCKER_CERT_PATH"]
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(f"{directory}/{pki.KEY}").st_mode) == 0o600


@pytest.fixture
def tools():
    """The helpers above, for test modules (test directories are not packages here)."""
    return SimpleNamespace(
        wait_for=wait_for, idle=idle, sh=sh, purge=purge, assert_cert_files=assert_cert_files
    )


@pytest.fixture
def hub(docker_client, base_image):
    """An upstream registry on a network of its own holding images built here, pushed as
    ``library/NAME`` (``library/t14:1`` is dockyard/base); caches of it are removed with their
    volumes afterwards."""
    suffix = secrets.token_hex(3)
    network = f"hub-{suffix}"
    docker_client.api.create_network(
        network, driver="bridge", labels=labels.managed(labels.ROLE_NETWORK)
    )
    found = upstream.start(docker_client, f"up-{suffix}", network, builder.ensure(recipes.REGISTRY))
    upstream.push(docker_client, found, base_image, "library/t14:1")
    yield found
    for cache in mirror.ls(docker_client):
        if network in cache["NetworkSettings"]["Networks"]:
            mirror.rm(docker_client, cache["Name"].lstrip("/"), volumes=True)
    upstream.remove(docker_client, found)
    for net in docker_client.api.networks(names=[network]):
        docker_client.api.remove_network(net["Id"])
