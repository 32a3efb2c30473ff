"""`dockyard up` (cold and warm) and `dockyard demo`, against the same topology done by hand
the way the problem statement and most tutorials do it (plaintext DinD on tcp://dind:2375).

- up cold: no stack volumes (images present); up warm: `down` kept the volumes.
- by hand: network, a DinD started with ``--host=tcp://0.0.0.0:2375``, a registry, a CI
  container with ``DOCKER_HOST=tcp://dind:2375``, polled until ``docker version`` answers from
  the CI container; then the same build and push, and the same proof (pull and run on a fresh
  DinD started the same way).
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from functools import partial

from dockyard import config, demo, docker_api, labels
from dockyard.engine import client as engine_client
from dockyard.engine import host
from dockyard.engine.privilege import host_config
from dockyard.images import builder, recipes
from dockyard.stack import apply

PLAIN_DIND = ["dockerd", "--host=tcp://0.0.0.0:2375", "--storage-driver=overlay2",
              "--insecure-registry=registry:5000"]  # fmt: skip


class ByHand:
    """The tutorial topology, made with plain API calls and cleaned up afterwards."""

    def __init__(self, client: docker_api.DockerClient) -> None:
        self.client = client
        self.name = f"byhand-{secrets.token_hex(3)}"
        self.engine_image = builder.ensure("engine")
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def _run(self, name: str, body: dict[str, object]) -> str:
        body["Labels"] = labels.managed("bench")
        cid = str(self.client.api.create_container_from_config(body, name=name)["Id"])
        self.containers.append(cid)
        self.client.api.start(cid)
        return cid

    def dind(self, name: str) -> str:
        decision = host.privilege_decision(self.client, self.engine_image)
        assert decision.mode is not None
        volume = f"{name}-data"
        self.client.api.create_volume(volume, labels=labels.managed("bench"))
        self.volumes.append(volume)
        hostcfg = host_config(decision.mode, decision.cap_drop)
        hostcfg["Binds"] = [*hostcfg.get("Binds", []), f"{volume}:/var/lib/docker"]
        hostcfg["NetworkMode"] = self.name
        alias = {"EndpointsConfig": {self.name: {"Aliases": [name]}}}
        return self._run(name, {"Image": self.engine_image, "Entrypoint": PLAIN_DIND[:1],
                                "Cmd": PLAIN_DIND[1:], "HostConfig": hostcfg,
                                "NetworkingConfig": alias})  # fmt: skip

    def up(self) -> None:
        self.client.api.create_network(self.name, labels=labels.managed("bench"))
        self.dind(f"{self.name}-dind")
        registry: dict[str, object] = {
            "Image": builder.ensure("registry"),
            "HostConfig": {"NetworkMode": self.name},
            "NetworkingConfig": {"EndpointsConfig": {self.name: {"Aliases": ["registry"]}}},
        }
        self._run(f"{self.name}-registry", registry)
        self.ci = self._run(
            f"{self.name}-ci",
            {"Image": builder.ensure("agent"), "Cmd": ["sleep", "infinity"],
             "Env": [f"DOCKER_HOST=tcp://{self.name}-dind:2375"],
             "HostConfig": {"NetworkMode": self.name}},
        )  # fmt: skip
        self.wait(self.ci, ["docker", "version"])
        base = recipes.recipe(recipes.BASE).ref
        saved = b"".join(self.client.api.get_image(base))
        engine_client.put_files(self.client, self.ci, {"/tmp/base.tar": saved})
        self.must(self.ci, ["docker", "load", "-i", "/tmp/base.tar"])

    def demo(self) -> None:
        engine_client.put_tree(self.client, self.ci, demo.example_dir(), "/w")
        ref = f"registry:5000/hello:{secrets.token_hex(3)}"
        base = recipes.recipe(recipes.BASE).ref
        self.must(
            self.ci, ["docker", "build", "-q", "--build-arg", f"BASE={base}", "-t", ref, "/w"]
        )
        self.must(self.ci, ["docker", "push", ref])
        fresh = self.dind(f"{self.name}-fresh")
        self.wait(fresh, ["docker", "-H", "tcp://127.0.0.1:2375", "version"])
        self.must(fresh, ["docker", "-H", "tcp://127.0.0.1:2375", "pull", "-q", ref])
        self.must(fresh, ["docker", "-H", "tcp://127.0.0.1:2375", "run", "--rm", ref])

    def wait(self, container: str, command: list[str]) -> None:
        deadline = time.monotonic() + 120
        while engine_client.run(self.client, container, command).code != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} never answered")
            time.sleep(0.05)

    def must(self, container: str, command: list[str]) -> None:
        result = engine_client.run(self.client, container, command)
        if result.code != 0:
            raise RuntimeError(f"{command}: {result.output}")

    def clean(self) -> None:
        for cid in self.containers:
            self.client.api.remove_container(cid, force=True, v=True)
        for volume in self.volumes:
            self.client.api.remove_volume(volume, force=True)
        self.client.api.remove_network(self.name)


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def main(runs: int) -> None:
    client = docker_api.connect()
    for role in ("engine", "registry", "agent", "base"):
        builder.ensure(role)
    results: dict[str, list[float]] = {k: [] for k in
               ("up cold", "up warm", "demo", "by hand: up", "by hand: demo")}  # fmt: skip
    for index in range(runs):
        cfg = config.StackConfig(name=f"bench-{secrets.token_hex(3)}")
        try:
            results["up cold"].append(_timed(partial(apply.up, cfg, client=client)))
            results["demo"].append(_timed(partial(demo.run, cfg.name)))
            apply.down(cfg.name, client=client)
            results["up warm"].append(_timed(partial(apply.up, cfg, client=client)))
        finally:
            apply.down(cfg.name, volumes=True, client=client)
        by_hand = ByHand(client)
        try:
            results["by hand: up"].append(_timed(by_hand.up))
            results["by hand: demo"].append(_timed(by_hand.demo))
        finally:
            by_hand.clean()
        print(
            f"  run {index + 1}/{runs}: "
            + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items())
        )
    medians = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{'step':<16}{'median s':>10}")
    for key in ("up cold", "up warm", "by hand: up", "demo", "by hand: demo"):
        print(f"{key:<16}{medians[key]:>10.2f}")
    print(f"by hand up / dockyard up cold: {medians['by hand: up'] / medians['up cold']:.1f}x")
    print(f"by hand demo / dockyard demo:  {medians['by hand: demo'] / medians['demo']:.1f}x")


if __name__ == "__main__":
    main(3)
