"""What Docker shows of pools, read back from labels: the only state pools keep.

:func:`gather` is the one place that lists objects (I/O, thin); everything else turns those
plain records into the lease machine's and gc's inputs (pure).

Pool labels, added to dockyard's vocabulary: an engine of a pool carries ``pool``,
``cache-key`` (keyed pools), ``created`` and ``warm`` (the pool's warm size when it was made,
so gc knows it without the config); a lease is a marker volume (role ``lease``) carrying
``lease``, ``pool``, ``engine``, ``cache-key``, ``expires`` and ``owner``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from dockyard import docker_api, labels
from dockyard.pool import leases

POOL = labels.PREFIX + "pool"
CACHE_KEY = labels.PREFIX + "cache-key"
CREATED = labels.PREFIX + "created"
WARM = labels.PREFIX + "warm"
EXPIRES = labels.PREFIX + "expires"
INDEX = labels.PREFIX + "index"
MAX_AGE = labels.PREFIX + "max-age"
MAX_COUNT = labels.PREFIX + "max-count"

ROLE_LEASE = "lease"
ROLE_POOL_DATA = "pool-data"  # an ephemeral engine's data root
ROLE_POOL_CACHE = "pool-cache"  # a keyed cache volume


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    labels: Mapping[str, str]
    running: bool
    ready: bool  # a restart policy is set only once an engine is proven ready
    created_at: float
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Volume:
    name: str
    labels: Mapping[str, str]
    created_at: float


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    labels: Mapping[str, str]
    created_at: float
    attached: tuple[str, ...]  # container IDs


@dataclass(frozen=True)
class Inventory:
    containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    networks: tuple[Network, ...] = ()

    def role(self, role: str) -> list[Volume]:
        return [v for v in self.volumes if v.labels.get(labels.ROLE) == role]


def scope() -> list[str]:
    """The label filter of objects this process may own: dockyard's, narrowed by
    ``DOCKYARD_LABELS`` when set (a CI job or a test run sees only its own objects)."""
    return labels.selector() + [f"{k}={v}" for k, v in labels.user_labels().items()]


def gather(client: docker_api.DockerClient) -> Inventory:
    """List every dockyard object in scope; engines are inspected for readiness."""
    selector = {"label": scope()}
    containers = []
    for found in client.api.containers(all=True, filters=selector):
        own = found.get("Labels") or {}
        ready = False
        if own.get(labels.ROLE) == labels.ROLE_ENGINE:
            try:
                inspected = client.api.inspect_container(found["Id"])
            except docker_api.NotFound:
                continue
            ready = (inspected["HostConfig"].get("RestartPolicy") or {}).get("Name") == (
                "unless-stopped"
            )
        mounts = tuple(m["Name"] for m in found.get("Mounts") or [] if m.get("Name"))
        containers.append(
            Container(
                found["Id"],
                (found.get("Names") or ["/"])[0].lstrip("/"),
                own,
                found.get("State") == "running",
                ready,
                float(found.get("Created") or 0),
                mounts,
            )
        )
    volumes = [
        Volume(v["Name"], v.get("Labels") or {}, _timestamp(v.get("CreatedAt")))
        for v in client.api.volumes(filters=selector).get("Volumes") or []
    ]
    networks = []
    for found in client.api.networks(filters=selector):
        try:  # listed, then removed by someone else: skip it like a container
            attached = client.api.inspect_network(found["Id"]).get("Containers") or {}
        except docker_api.NotFound:
            continue
        networks.append(
            Network(
                found["Id"],
                found["Name"],
                found.get("Labels") or {},
                _timestamp(found.get("Created")),
                tuple(attached),
            )
        )
    return Inventory(tuple(containers), tuple(volumes), tuple(networks))


def _timestamp(text: str | None) -> float:
    """Docker's RFC 3339 times (nanoseconds and ``Z`` included); 0 when absent or odd."""
    try:
        return datetime.fromisoformat(text or "").timestamp()
    except ValueError:
        return 0.0


# --- pure readings ----------------------------------------------------------------------------


def pool_engines(inventory: Inventory) -> list[Container]:
    return [
        c
        for c in inventory.containers
        if c.labels.get(POOL) and c.labels.get(labels.ROLE) == labels.ROLE_ENGINE
    ]


def seen_engines(inventory: Inventory) -> list[leases.SeenEngine]:
    return [
        leases.SeenEngine(
            name=c.labels.get(labels.ENGINE, c.name),
            pool=c.labels[POOL],
            ready=c.running and c.ready,
            volume=c.labels.get(labels.PREFIX + "cache", ""),
            cache_key=c.labels.get(CACHE_KEY),
            created_at=float(c.labels.get(CREATED) or c.created_at),
        )
        for c in pool_engines(inventory)
    ]


def seen_markers(inventory: Inventory) -> list[leases.SeenMarker]:
    found = []
    for volume in inventory.role(ROLE_LEASE):
        own = volume.labels
        try:
            expires = int(own[EXPIRES])
            lease = leases.Lease(
                own[labels.LEASE],
                own[POOL],
                own[labels.ENGINE],
                own.get(CACHE_KEY),
                expires,
                own.get(labels.OWNER, ""),
            )
        except (KeyError, ValueError):
            lease = leases.Lease("?", "?", "?", None, 0)  # unreadable: expired, so removed
        found.append(leases.SeenMarker(volume.name, lease))
    return found


def caches(inventory: Inventory) -> list[leases.Cache]:
    return [
        leases.Cache(
            v.name,
            v.labels.get(POOL, ""),
            v.labels.get(CACHE_KEY, ""),
            int(v.labels.get(INDEX) or 0),
            float(v.labels.get(CREATED) or v.created_at),
        )
        for v in inventory.role(ROLE_POOL_CACHE)
    ]


def engine_labels(pool: str, *, warm: int, created: str, cache_key: str | None) -> dict[str, str]:
    """What marks a pool's engine, on either backend: its pool, age, warmth and cache key."""
    found = {POOL: pool, CREATED: created, WARM: str(warm)}
    if cache_key is not None:
        found[CACHE_KEY] = cache_key
    return found


def marker_labels(lease: leases.Lease) -> dict[str, str]:
    extra = {"lease": lease.id, "pool": lease.pool, "engine": lease.engine}
    extra |= {"expires": str(lease.expires_at), "owner": lease.owner}
    if lease.cache_key is not None:
        extra["cache_key"] = lease.cache_key
    return labels.managed(ROLE_LEASE, **extra)
