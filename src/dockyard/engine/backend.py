"""Where engines live: one interface, two backends.

The pool, leases, gc and ``engine ls`` need only this: create an engine (returning once it is
ready), wait for an existing one to be ready, the client environment, a list by labels, and
removal. ``DockerBackend`` is the one-host code of dockyard.engine.service, unchanged;
``dockyard.kube.backend.KubeBackend`` puts engines in pods. Labels are the only state on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dockyard import config, docker_api, labels

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Engine:
    """What every backend can say about an engine."""

    name: str
    endpoint: str
    state: str
    cache: str
    labels: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _noop(_: str) -> None:
    return None


class Backend(Protocol):
    kind: str

    def create(self, options: config.EngineOptions, *, progress: Progress = _noop) -> Engine:
        """Create the engine and return once a TLS-verified API call to it works."""
        ...

    def ready(self, name: str, timeout: float) -> None:
        """Wait until an existing engine answers; raise DockyardError quoting why not."""
        ...

    def env(self, name: str) -> dict[str, str]:
        """The docker CLI's variables for a client where jobs run."""
        ...

    def ls(self, selector: Mapping[str, str] | None = None) -> list[Engine]:
        """Engines whose labels carry every ``selector`` item."""
        ...

    def rm(self, name: str, *, volumes: bool = False) -> list[str]:
        """Remove the engine (and its cache if asked); returns what went."""
        ...


class DockerBackend:
    """Engines as containers on one Docker host: dockyard.engine.service behind the seam."""

    kind = "docker"

    def __init__(self, client: docker_api.DockerClient | None = None) -> None:
        self.client = client or docker_api.shared()

    def create(self, options: config.EngineOptions, *, progress: Progress = _noop) -> Engine:
        from dockyard.engine import service

        service.create(options, client=self.client, progress=progress)
        return self._one(options.name)

    def ready(self, name: str, timeout: float) -> None:
        from dockyard.engine import readiness, service

        info = service.get(name, self.client)
        spec = _probe_spec(info)
        readiness.wait(self.client, info.container, spec, timeout=timeout)

    def env(self, name: str) -> dict[str, str]:
        from dockyard.engine import service

        return service.env(name, self.client)

    def ls(self, selector: Mapping[str, str] | None = None) -> list[Engine]:
        wanted = [f"{k}={v}" for k, v in (selector or {}).items()]
        found = self.client.api.containers(
            all=True, filters={"label": labels.selector(labels.ROLE_ENGINE) + wanted}
        )
        engines = []
        for item in found:
            own = item.get("Labels") or {}
            engines.append(
                Engine(
                    name=own.get(labels.ENGINE, ""),
                    endpoint=own.get(labels.ENDPOINT, ""),
                    state=str(item.get("State", "")),
                    cache=own.get(labels.PREFIX + "cache", ""),
                    labels=dict(own),
                )
            )
        return sorted(engines, key=lambda e: e.name)

    def rm(self, name: str, *, volumes: bool = False) -> list[str]:
        from dockyard.engine import service

        return service.rm(name, volumes=volumes, client=self.client)

    def _one(self, name: str) -> Engine:
        return next(e for e in self.ls({labels.ENGINE: name}))


def _probe_spec(info: Any) -> Any:
    from dockyard.engine.privilege import Mode
    from dockyard.engine.spec import EngineSpec

    return EngineSpec(
        name=info.name,
        image=info.image,
        network=info.network,
        cache_volume=info.cache_volume,
        mtu=info.mtu,
        privilege=Mode(info.privilege) if info.privilege else Mode.CAPS,
        insecure=info.endpoint.endswith(":2375"),
    )
