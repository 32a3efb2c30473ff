"""What a stack is doing, read from labels and checked from the CI container's side."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard import docker_api, labels
from dockyard.engine import client as engine_client
from dockyard.errors import DockyardError
from dockyard.stack import guard as stack_guard
from dockyard.stack.plan import COMPONENT, HOST_SOCKET, REGISTRY_ALIAS, REGISTRY_PORT, Names

DIND_PARTS = frozenset({"engine", "engine-cache", "certs"})  # only a dind stack has these
UNFINISHED = (
    "the last dockyard up stopped before it was made: run dockyard up again and read its error"
)
ORDER = (
    "network", "engine-cache", "certs", "ci-home", "registry-data", "engine", "guard", "registry",
    "mirror", "ci",
)  # fmt: skip


@dataclass(frozen=True)
class Component:
    component: str
    kind: str
    name: str
    state: str
    health: str = ""
    detail: str = ""


@dataclass
class StackStatus:
    stack: str
    mode: str
    components: list[Component] = field(default_factory=list)
    ci_environment: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return bool(self.components) and all(
            c.health in ("", "ok") and c.state in ("running", "present") for c in self.components
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"healthy": self.healthy}


def status(stack: str, client: docker_api.DockerClient | None = None) -> StackStatus:
    client = client or docker_api.shared()
    selector = {"label": labels.selector(stack=stack)}
    found: list[Component] = []
    containers = {
        c["Labels"].get(COMPONENT, "?"): c
        for c in client.api.containers(all=True, filters=selector)
    }
    for network in client.api.networks(filters=selector):
        found.append(Component("network", "network", network["Name"], "present"))
    for volume in client.api.volumes(filters=selector).get("Volumes") or []:
        component = (volume.get("Labels") or {}).get(COMPONENT, "volume")
        found.append(Component(component, "volume", volume["Name"], "present"))
    if not found and not containers:
        raise DockyardError(f"no stack named {stack}", fix="create it with: dockyard up")
    ci = containers.get("ci")
    env = _ci_env(client, ci)
    checks = _checks_from_ci(client, ci, env) if ci and ci["State"] == "running" else {}
    for component, container in containers.items():
        own = container["Labels"]
        detail = ""
        if component == "engine":
            detail = (
                f"{own.get(labels.PREFIX + 'endpoint')} storage "
                f"{own.get(labels.PREFIX + 'storage-driver')} privilege "
                f"{own.get(labels.PREFIX + 'privilege')}"
            )
        health = checks.get(component, ("", ""))
        found.append(
            Component(
                component, "container", container["Names"][0].lstrip("/"), container["State"],
                health[0], health[1] or detail,
            )
        )  # fmt: skip
    guard = stack_guard.current(stack)
    if guard is not None:
        found.append(
            Component(
                "guard", "process", f"{stack}-guard", "running" if guard.running else "stopped",
                "" if guard.running else "failing",
                f"pid {guard.pid}, ci-build policy, audit {stack_guard.audit_log(stack)}",
            )
        )  # fmt: skip
    mode = mode_of({c.component for c in found}, guard is not None, env.get("DOCKER_HOST", ""))
    found += missing(stack, mode, set(containers))
    found.extend(_mirrors(client, stack))
    found.sort(key=lambda c: ORDER.index(c.component) if c.component in ORDER else len(ORDER))
    return StackStatus(stack, mode, found, env)


def _mirrors(client: docker_api.DockerClient, network: str) -> list[Component]:
    """The host's caches on the stack's network: hits, misses and size, or what is wrong."""
    from dockyard.mirror import service as mirror

    found = []
    for cache in mirror.ls(client):
        if network not in cache["NetworkSettings"]["Networks"]:
            continue
        seen = mirror.report(client, cache["Name"].lstrip("/"))
        detail = (
            f"{seen['upstream']}: {seen.get('hits', 0)} hits, {seen.get('misses', 0)} misses, "
            f"{_mib(seen.get('size', 0))} of {_mib(seen.get('max_size', 0))}"
        )
        health = "failing" if seen["problem"] else "ok"
        state = str(seen["state"])
        found.append(
            Component("mirror", "container", seen["name"], state, health, seen["problem"] or detail)
        )
    return found


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def mode_of(components: set[str], guarded: bool, docker_host: str) -> str:
    """Pure: the stack's mode from what of it exists, a half-made stack's too."""
    if docker_host.startswith("tcp://") or components & DIND_PARTS:
        return "dind"
    if docker_host == f"unix://{HOST_SOCKET}":
        return "socket-unsafe"
    if guarded or docker_host.startswith("unix://"):
        return "socket"
    return "unknown"


def missing(stack: str, mode: str, containers: set[str]) -> list[Component]:
    """Pure: the containers a stack of ``mode`` must have and has not: a stopped up."""
    names = Names(stack)
    wanted = {"ci": names.ci} | ({"engine": names.engine} if mode in ("dind", "unknown") else {})
    return [
        Component(part, "container", name, "missing", "failing", UNFINISHED)
        for part, name in wanted.items()
        if part not in containers
    ]


def _ci_env(client: docker_api.DockerClient, ci: dict[str, Any] | None) -> dict[str, str]:
    if ci is None:
        return {}
    env = client.api.inspect_container(ci["Id"])["Config"].get("Env") or []
    pairs = (item.partition("=") for item in env)
    return {key: value for key, _, value in pairs if key.startswith("DOCKER_")}


def _checks_from_ci(
    client: docker_api.DockerClient, ci: dict[str, Any], env: dict[str, str]
) -> dict[str, tuple[str, str]]:
    """Health as the CI container sees it: its engine answers, its registry answers."""
    checks: dict[str, tuple[str, str]] = {}
    version = engine_client.run(
        client, ci["Id"], ["docker", "version", "--format", "{{.Server.Version}}"]
    )
    target = "engine" if "tcp://" in env.get("DOCKER_HOST", "") else "ci"
    if version.code == 0:
        checks[target] = (
            "ok",
            f"CI reaches Docker {version.output.strip()} at {env['DOCKER_HOST']}",
        )
    else:
        checks[target] = ("failing", _last(version.output) + " (run: dockyard doctor)")
    registry = engine_client.run(
        client, ci["Id"],
        ["curl", "-fsS", "-o", "/dev/null", f"http://{REGISTRY_ALIAS}:{REGISTRY_PORT}/v2/"],
    )  # fmt: skip
    checks["registry"] = (
        ("ok", f"CI reaches http://{REGISTRY_ALIAS}:{REGISTRY_PORT}")
        if registry.code == 0
        else ("failing", _last(registry.output))
    )
    return checks


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
