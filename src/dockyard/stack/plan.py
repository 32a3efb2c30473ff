"""Stack config -> the objects it needs: pure, so every wiring decision is unit-tested.

Names follow the Jenkins install guide's topology: one network, the engine reachable as
``docker`` (``DOCKER_HOST=tcp://docker:2376``), the registry as ``registry:5000``, the CI
container with the client certificates read-only at ``/certs/client``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from dockyard import config, labels
from dockyard.engine.spec import TLS_PORT
from dockyard.mirror import plan as mirror_plan
from dockyard.stack.presets import Preset

ENGINE_ALIAS = "docker"
REGISTRY_ALIAS = "registry"
REGISTRY_PORT = 5000
CERT_PATH = "/certs/client"
HOST_SOCKET = "/var/run/docker.sock"
SPEC_HASH = labels.PREFIX + "spec-hash"
COMPONENT = labels.PREFIX + "component"

Kind = Literal["network", "volume", "engine", "guard", "container"]
GUARD_MOUNT = "/run/dockyard"
GUARD_SOCKET = f"{GUARD_MOUNT}/guard.sock"


@dataclass(frozen=True)
class Names:
    """Every name a stack uses, derived from its name alone."""

    stack: str

    @property
    def network(self) -> str:
        return self.stack

    @property
    def engine(self) -> str:
        return f"{self.stack}-engine"

    @property
    def registry(self) -> str:
        return f"{self.stack}-registry"

    @property
    def ci(self) -> str:
        return f"{self.stack}-ci"

    @property
    def guard(self) -> str:
        return f"{self.stack}-guard"

    @property
    def engine_cache(self) -> str:
        return f"{self.stack}-engine-cache"

    @property
    def registry_data(self) -> str:
        return f"{self.stack}-registry-data"

    @property
    def ci_home(self) -> str:
        return f"{self.stack}-ci-home"

    @property
    def certs(self) -> str:
        return f"{self.stack}-certs"


@dataclass(frozen=True)
class Facts:
    """What the plan needs from the world, gathered by the reconciler first."""

    engine_image: str | None  # resolved engine image (None when no engine is planned)
    registry_image: str
    registry_storage: str  # the registry image's storage directory
    preset: Preset
    image_ids: dict[str, str] = field(default_factory=dict)  # image ref -> ID, for hashes
    registry_port: int | None = None  # loopback port the registry is published on (socket)
    base_image: str = "dockyard/base:0.1"  # what the examples build on
    guard_dir: str | None = None  # host directory of the guard's socket (socket mode)


@dataclass(frozen=True)
class Desired:
    kind: Kind
    name: str
    component: str
    body: dict[str, Any]
    labels: dict[str, str]

    @property
    def spec_hash(self) -> str:
        return self.labels[SPEC_HASH]


def stack_labels(stack: str, component: str) -> dict[str, str]:
    return labels.managed(labels.ROLE_STACK, stack=stack, component=component)


def _desired(
    kind: Kind, name: str, component: str, body: dict[str, Any], stack: str, *hashed: object
) -> Desired:
    """Label an object with what it is and a hash of everything that defines it."""
    found = stack_labels(stack, component)
    digest = hashlib.sha256(
        json.dumps([body, *hashed], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    found[SPEC_HASH] = digest
    return Desired(kind, name, component, body, found)


def registry_ref(cfg: config.StackConfig, published_port: int | None = None) -> str:
    """Where the CI container pushes: ``registry:5000`` through a stack engine; the host's
    engine (socket modes) resolves no container names, so it pushes to the published port."""
    if cfg.docker == "dind":
        return f"{REGISTRY_ALIAS}:{REGISTRY_PORT}"
    return f"localhost:{published_port or REGISTRY_PORT}"


def guard_socket_mode(preset: Preset) -> str:
    """Who may use the guard's socket: only the CI container sees its directory, so a
    non-root CI user gets a socket it can open."""
    return "0660" if preset.uid == 0 else "0666"


def ci_environment(cfg: config.StackConfig) -> dict[str, str]:
    """Exactly what the CI container gets: the docker CLI's standard variables."""
    if cfg.docker == "dind":
        return {
            "DOCKER_HOST": f"tcp://{ENGINE_ALIAS}:{TLS_PORT}",
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": CERT_PATH,
        }
    if cfg.docker == "socket":
        return {"DOCKER_HOST": f"unix://{GUARD_SOCKET}"}
    return {"DOCKER_HOST": f"unix://{HOST_SOCKET}"}


def engine_options(cfg: config.StackConfig, facts: Facts) -> config.EngineOptions:
    names = Names(cfg.name)
    engine = cfg.engine
    mirrors: tuple[str, ...] = engine.registry_mirrors
    trusted: tuple[str, ...] = ()
    if cfg.mirror is not None:  # the host's cache of that upstream, joined to this network
        cache = mirror_plan.name_of(cfg.mirror.upstream, cfg.mirror.username)
        mirrors, trusted = (mirror_plan.url(cache), *mirrors), (mirror_plan.address(cache),)
    registry = (f"{REGISTRY_ALIAS}:{REGISTRY_PORT}",) if cfg.registry.enabled else ()
    return config.EngineOptions(
        name=names.engine,
        network=names.network,
        cache=names.engine_cache,
        image=facts.engine_image,
        mtu=engine.mtu,
        cpus=engine.cpus,
        memory=engine.memory,
        pids=engine.pids,
        registry_mirrors=mirrors,
        # The registry (and the cache) are trusted over plain HTTP by this stack's engines only.
        insecure_registries=(*registry, *trusted),
        aliases=(ENGINE_ALIAS,),
        ready_timeout=engine.ready_timeout,
    )


def plan(cfg: config.StackConfig, facts: Facts) -> list[Desired]:
    """Every object of the stack, in creation order."""
    names = Names(cfg.name)
    stack = cfg.name
    ids = facts.image_ids
    mtu = {"com.docker.network.driver.mtu": str(cfg.network_mtu)} if cfg.network_mtu else {}
    network = {"driver": "bridge", "options": mtu}
    found = [
        _desired("network", names.network, "network", network, stack),
        _desired("volume", names.ci_home, "ci-home", {}, stack),
    ]
    if cfg.docker == "dind":
        found.append(_desired("volume", names.engine_cache, "engine-cache", {}, stack))
        found.append(_desired("volume", names.certs, "certs", {}, stack))
        options = engine_options(cfg, facts)
        found.append(
            _desired(
                "engine", names.engine, "engine",
                options.model_dump(mode="json"), stack, ids.get(facts.engine_image or ""),
            )
        )  # fmt: skip
    if cfg.docker == "socket":
        guard = {"profile": "ci-build", "socket_mode": guard_socket_mode(facts.preset)}
        found.append(_desired("guard", names.guard, "guard", guard, stack))
    if cfg.registry.enabled:
        found.append(_desired("volume", names.registry_data, "registry-data", {}, stack))
        found.append(
            _desired(
                "container", names.registry, "registry",
                registry_body(cfg, facts), stack, ids.get(facts.registry_image),
            )
        )  # fmt: skip
    found.append(
        _desired(
            "container", names.ci, "ci", ci_body(cfg, facts), stack, ids.get(facts.preset.image)
        )
    )
    for item in found:
        if item.kind == "container":
            item.body["Labels"] = item.labels
    return found


def registry_body(cfg: config.StackConfig, facts: Facts) -> dict[str, Any]:
    names = Names(cfg.name)
    host: dict[str, Any] = {
        "Binds": [f"{names.registry_data}:{facts.registry_storage}"],
        "NetworkMode": names.network,
        "RestartPolicy": {"Name": "unless-stopped"},
    }
    if cfg.docker != "dind":
        # The host's engine pushes to it: loopback only, on a port chosen free.
        port = str(facts.registry_port or "")
        host["PortBindings"] = {f"{REGISTRY_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": port}]}
    return {
        "Image": facts.registry_image,
        "Hostname": REGISTRY_ALIAS,
        "ExposedPorts": {f"{REGISTRY_PORT}/tcp": {}},
        "HostConfig": host,
        "NetworkingConfig": {"EndpointsConfig": {names.network: {"Aliases": [REGISTRY_ALIAS]}}},
    }


def ci_body(cfg: config.StackConfig, facts: Facts) -> dict[str, Any]:
    names = Names(cfg.name)
    preset = facts.preset
    binds = [f"{names.ci_home}:{preset.home}"]
    if cfg.docker == "dind":
        binds.append(f"{names.certs}:{CERT_PATH}:ro")
    elif cfg.docker == "socket":
        binds.append(f"{facts.guard_dir}:{GUARD_MOUNT}:ro")  # the socket alone, read-only
    else:
        binds.append(f"{HOST_SOCKET}:{HOST_SOCKET}")
    env = {**preset.env, **ci_environment(cfg), "DOCKYARD_BASE": facts.base_image}
    if cfg.registry.enabled:
        env["DOCKYARD_REGISTRY"] = registry_ref(cfg, facts.registry_port)
    host: dict[str, Any] = {
        "Binds": binds,
        "NetworkMode": names.network,
        "Init": True,
        "RestartPolicy": {"Name": "unless-stopped"},
    }
    body: dict[str, Any] = {
        "Image": cfg.ci.image or preset.image,
        "Hostname": names.ci,
        "Env": [f"{key}={value}" for key, value in sorted(env.items())],
        "HostConfig": host,
        "NetworkingConfig": {"EndpointsConfig": {names.network: {"Aliases": ["ci"]}}},
    }
    if preset.entrypoint is not None:
        body["Entrypoint"] = list(preset.entrypoint)
    if preset.command is not None:
        body["Cmd"] = list(preset.command)
    if preset.workdir:
        body["WorkingDir"] = preset.workdir
    if preset.user:
        body["User"] = preset.user
    if preset.ui_port and cfg.ci.ui_port:
        body["ExposedPorts"] = {f"{preset.ui_port}/tcp": {}}
        host["PortBindings"] = {
            f"{preset.ui_port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(cfg.ci.ui_port)}]
        }
    return body
