"""The buildbot preset runs a real build that pushes, on the stack's topology built by hand.

Network, TLS engine (alias ``docker``, trusting ``registry:5000``), registry (alias
``registry``) and the buildbot container wired like a stack's CI container: only
DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH and the client certificates at /certs/client.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest

from dockyard import config, docker_api, labels, pki
from dockyard.engine import client as engine_client
from dockyard.engine import service
from dockyard.images import builder
from dockyard.stack.presets import buildbot

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def buildbot_image(docker_client: docker_api.DockerClient) -> str:
    return builder.ensure("buildbot")


@pytest.fixture(scope="module")
def registry_image(docker_client: docker_api.DockerClient) -> str:
    return builder.ensure("registry")


def _container(
    client: docker_api.DockerClient, name: str, network: str, alias: str, body: dict[str, object]
) -> str:
    body = {
        **body,
        "Labels": labels.managed(labels.ROLE_CLIENT, test="buildbot"),
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": [alias]}}},
    }
    return str(client.api.create_container_from_config(body, name=name)["Id"])


def test_buildbot_builds_and_pushes_to_the_registry(
    docker_client, engine_image, base_image, registry_image, buildbot_image, unique
):
    client = docker_client
    net = unique("it-bb")
    engine = f"{net}-engine"
    containers: list[str] = []
    engine_made = False
    timings: dict[str, float] = {}
    client.api.create_network(net, driver="bridge", labels=labels.managed(labels.ROLE_NETWORK))
    try:
        mark = time.monotonic()
        service.create(
            config.EngineOptions(
                name=engine,
                network=net,
                image=engine_image,
                aliases=("docker",),
                insecure_registries=("registry:5000",),
            ),
            client=client,
        )
        engine_made = True
        service.seed(engine, [base_image], client=client)
        timings["engine"] = time.monotonic() - mark

        registry = _container(
            client,
            f"{net}-registry",
            net,
            "registry",
            {"Image": registry_image, "HostConfig": {"NetworkMode": net}},
        )
        containers.append(registry)
        client.api.start(registry)

        env = {
            **buildbot.PRESET.env,
            "DOCKER_HOST": "tcp://docker:2376",
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": "/certs/client",
        }
        ci = _container(
            client,
            f"{net}-ci",
            net,
            "ci",
            {
                "Image": buildbot_image,
                "Env": [f"{k}={v}" for k, v in sorted(env.items())],
                "HostConfig": {"NetworkMode": net, "Init": True},
            },
        )
        containers.append(ci)
        # The engine's own client bundle, as `dockyard engine env` hands it out.
        bundle = Path(service.env(engine, client)["DOCKER_CERT_PATH"])
        certs = {
            f"/certs/client/{n}": (bundle / n).read_bytes()
            for n in (pki.CA_CERT, pki.CERT, pki.KEY)
        }
        engine_client.put_files(client, ci, {**buildbot.PRESET.files, **certs})
        mark = time.monotonic()
        client.api.start(ci)

        number = buildbot.trigger(client, ci, timeout=120)
        timings["ready+trigger"] = time.monotonic() - mark
        mark = time.monotonic()
        result = buildbot.follow(client, ci, number, timeout=300)
        timings["build"] = time.monotonic() - mark
        print(f"\nbuildbot build {number}: {result}\ntimings: {timings}")

        assert result.result == "success", result.log_tail
        assert [s.name for s in result.steps] == ["worker_preparation", "build", "push", "digest"]
        assert all(s.result == "success" for s in result.steps)
        assert result.digest is not None
        repository, _, digest = result.digest.partition("@")
        assert repository == "registry:5000/hello"
        assert digest.startswith("sha256:")

        # The registry itself has the tag, and serves the digest the build recorded.
        tags = engine_client.run(
            client, ci, ["curl", "-sf", "http://registry:5000/v2/hello/tags/list"]
        )
        assert f"build-{number}" in json.loads(tags.output)["tags"]
        head = engine_client.run(
            client,
            ci,
            [
                "curl", "-sfI",
                "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
                f"http://registry:5000/v2/hello/manifests/build-{number}",
            ],
        )  # fmt: skip
        assert f"docker-content-digest: {digest}" in head.output.lower()

        # After a restart (stale pid files, existing dirs), builds go on where they left off.
        client.api.restart(ci, timeout=10)
        second = buildbot.follow(client, ci, buildbot.trigger(client, ci), timeout=300)
        assert second.number == number + 1
        assert second.result == "success", second.log_tail
    finally:
        for cid in reversed(containers):
            with contextlib.suppress(docker_api.NotFound):
                client.api.remove_container(cid, force=True, v=True)
        if engine_made:
            service.rm(engine, volumes=True, client=client)
        with contextlib.suppress(docker_api.NotFound):
            client.api.remove_network(net)
