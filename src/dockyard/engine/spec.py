"""Engine spec -> Engine API create body: pure, so every flag an engine gets is unit-tested.

The command line is complete on its own (dockyard's start prologue, then ``dockerd``), so the
same spec works with the official ``docker:dind`` image and with dockyard's Debian-built one:
neither image's entrypoint script is relied on (see :mod:`dockyard.engine.startup`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard import labels
from dockyard.engine import startup
from dockyard.engine.privilege import CgroupPlan, Mode, cgroup_plan, host_config

TLS_PORT = 2376
PLAIN_PORT = 2375
DATA_ROOT = "/var/lib/docker"
STORAGE_DRIVER = "overlay2"
SERVER_TLS_DIR = "/etc/dockyard/tls"
PROBE_TLS_DIR = "/etc/dockyard/probe"


@dataclass(frozen=True)
class EngineSpec:
    """Everything decided about one engine before anything is created."""

    name: str
    image: str
    network: str
    cache_volume: str
    mtu: int
    privilege: Mode
    cap_drop: tuple[str, ...] = ()
    cgroup_version: int = 1
    insecure: bool = False
    nano_cpus: int | None = None
    memory: int | None = None
    pids: int | None = None
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return PLAIN_PORT if self.insecure else TLS_PORT

    @property
    def endpoint(self) -> str:
        """The ``DOCKER_HOST`` a client on the engine's network uses."""
        return f"tcp://{self.name}:{self.port}"

    @property
    def dns_names(self) -> tuple[str, ...]:
        """Names the server certificate must carry."""
        # Not localhost: every engine's key is readable by whoever controls that engine, and a
        # shared name would let one impersonate dockyard services clients reach as localhost.
        return (self.name, *self.aliases)

    @property
    def cgroup(self) -> CgroupPlan:
        return cgroup_plan(self.privilege, self.cgroup_version)


def dockerd_args(spec: EngineSpec) -> list[str]:
    """The inner daemon's command line: one TCP listener, TLS unless ``insecure``."""
    args = ["--host=unix:///var/run/docker.sock"]
    if spec.insecure:
        # --tls=false says plaintext is intended: dockerd then skips its 15 s warning delay.
        args += [f"--host=tcp://0.0.0.0:{PLAIN_PORT}", "--tls=false"]
    else:
        args += [
            f"--host=tcp://0.0.0.0:{TLS_PORT}",
            "--tlsverify",
            f"--tlscacert={SERVER_TLS_DIR}/ca.pem",
            f"--tlscert={SERVER_TLS_DIR}/cert.pem",
            f"--tlskey={SERVER_TLS_DIR}/key.pem",
        ]
    # Named explicitly so that a data root overlay2 cannot use fails loudly instead of
    # silently degrading to vfs.
    args += [f"--storage-driver={STORAGE_DRIVER}", f"--data-root={DATA_ROOT}", f"--mtu={spec.mtu}"]
    args += [f"--insecure-registry={item}" for item in spec.insecure_registries]
    args += [f"--registry-mirror={item}" for item in spec.registry_mirrors]
    return args


def engine_labels(spec: EngineSpec) -> dict[str, str]:
    return {
        **spec.extra_labels,
        **labels.managed(
            labels.ROLE_ENGINE,
            engine=spec.name,
            privilege=spec.privilege.value,
            endpoint=spec.endpoint,
            network=spec.network,
            cache=spec.cache_volume,
            storage_driver=STORAGE_DRIVER,
            mtu=str(spec.mtu),
            cgroup_version=str(spec.cgroup_version),
            cgroup_binding=spec.cgroup.binding.value,
        ),
    }


def cgroup_summary(found: Mapping[str, str]) -> str:
    """What an engine's labels say about its cgroups, for ``status`` and ``engine ls``."""
    binding = found.get(labels.PREFIX + "cgroup-binding")
    if not binding:
        return "limits do not bind inside (made without the start prologue)"
    return f"cgroup v{found.get(labels.PREFIX + 'cgroup-version', '?')}, limits bind ({binding})"


def create_body(spec: EngineSpec) -> dict[str, Any]:
    """The ``POST /containers/create`` body for the engine container."""
    host: dict[str, Any] = host_config(spec.privilege, spec.cap_drop, spec.cgroup.namespace)
    host["Binds"] = [*host.get("Binds", []), f"{spec.cache_volume}:{DATA_ROOT}"]
    host["Init"] = True  # reaps the inner daemon's orphans whatever the image's own PID 1 is
    host["NetworkMode"] = spec.network
    if spec.nano_cpus is not None:
        host["NanoCpus"] = spec.nano_cpus
    if spec.memory is not None:
        host["Memory"] = spec.memory
    if spec.pids is not None:
        host["PidsLimit"] = spec.pids
    entrypoint, cmd = startup.command(dockerd_args(spec))
    return {
        "Image": spec.image,
        "Entrypoint": entrypoint,
        "Cmd": cmd,
        "Hostname": spec.name,
        "Labels": engine_labels(spec),
        "ExposedPorts": {f"{spec.port}/tcp": {}},
        "HostConfig": host,
        "NetworkingConfig": {
            "EndpointsConfig": {spec.network: {"Aliases": [spec.name, *spec.aliases]}}
        },
    }


def probe_command() -> list[str]:
    """Run inside the engine: a TLS-verified call through its network name, then the driver.

    Printing the storage driver proves the daemon answers the real API, not just a port.
    """
    return ["docker", "info", "--format", "{{.Driver}}"]


def probe_environment(spec: EngineSpec) -> dict[str, str]:
    env = {"DOCKER_HOST": spec.endpoint}
    if not spec.insecure:
        env |= {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": PROBE_TLS_DIR}
    return env
