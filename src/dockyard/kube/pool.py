"""Per-job leases from warm engine pods: the pool service with Kubernetes objects under it.

The lease machine (dockyard.pool.leases) and the service's threads, locks and HTTP API are the
one-host ones; only what they touch changes: an engine is a pod (dockyard.kube.backend), a
lease marker is a labelled Secret, a keyed cache a PVC, a lease's client certificate a Secret
a job pod mounts at DOCKER_CERT_PATH. Everything is read back from labels in the namespace, so
``serve`` recovers its leases after kill -9 as on one host.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from dockyard import config, docker_api, labels
from dockyard.errors import DockyardError
from dockyard.kube import manifests, serving
from dockyard.kube.backend import KubeBackend, is_ready
from dockyard.kube.cluster import Cluster, explain
from dockyard.pool import inventory, leases
from dockyard.pool.config import PoolConfig
from dockyard.pool.gc import Removal
from dockyard.pool.service import Grant, PoolService, lease_bundle, write_bundle

ANNOTATED = (labels.OWNER, inventory.CACHE_KEY)
"""Label values Kubernetes would refuse (``uid:0``, a repository URL) go in annotations."""


class _NoDocker:
    """The Kubernetes pool never talks to a Docker engine: any attempt is a bug, loudly."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the Kubernetes pool used the Docker client ({name})")


def lease_secret(lease_id: str) -> str:
    return f"dockyard-lease-{lease_id}"


def split_labels(found: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations): the values Kubernetes labels cannot hold move to annotations."""
    own = {k: v for k, v in found.items() if k not in ANNOTATED}
    notes = {k: v for k, v in found.items() if k in ANNOTATED}
    return own, notes


def marker(lease: leases.Lease, namespace: str) -> dict[str, Any]:
    own, notes = split_labels(inventory.marker_labels(lease))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": lease.marker,
            "namespace": namespace,
            "labels": own,
            "annotations": notes,
        },
    }


def _created(meta: Any) -> float:
    stamp = meta.creation_timestamp
    return float(stamp.timestamp()) if stamp else 0.0


def _merged(meta: Any) -> dict[str, str]:
    return {**(meta.labels or {}), **(meta.annotations or {})}


class KubePoolService(PoolService):
    """``dockyard serve --backend kubernetes``."""

    def __init__(self, pools: Sequence[PoolConfig], cluster: Cluster, **kwargs: Any) -> None:
        for pool in pools:
            if pool.mirror is not None or pool.seed:
                raise DockyardError(
                    f"pool {pool.name}: mirror and seed are not supported on Kubernetes yet",
                    fix="remove them from the pool, or serve that pool with --backend docker",
                )
        super().__init__(pools, client=cast(docker_api.DockerClient, _NoDocker()), **kwargs)
        self.cluster = cluster
        self.backend = KubeBackend(cluster)
        self.core = cluster.core
        self.ns = cluster.namespace
        self._holder = serving.holder()
        self._serving = serving.Leases(cluster)

    # where the one-host service touches Docker

    def _image(self, pool: PoolConfig) -> str:
        return pool.image or config.OFFICIAL_ENGINE_IMAGE

    def _ensure_network(self, pool: PoolConfig) -> None:
        return None  # the namespace's pod network: nothing to make

    def _gather(self) -> inventory.Inventory:
        return gather(self.cluster)

    def _grant(self, lease: leases.Lease, bundle: dict[str, bytes]) -> Grant:
        environment = self.backend.env(lease.engine)
        environment["DOCKYARD_CLIENT_SECRET"] = lease_secret(lease.id)
        pems = {name: data.decode() for name, data in bundle.items()}
        return Grant(lease, self.ns, environment, pems)

    def _apply(self, command: leases.Command) -> dict[str, bytes]:
        match command:
            case leases.CreateEngine():
                self._settle(command)
            case leases.DestroyEngine(name=name, volume=volume, keep_volume=keep):
                self.backend.rm(name)
                if not keep:
                    _delete(self.cluster, "persistent_volume_claim", volume)
            case leases.WriteMarker(lease=lease):
                self.core.create_namespaced_secret(self.ns, marker(lease, self.ns))
            case leases.DeleteMarker(name=name):
                _delete(self.cluster, "secret", name)
            case leases.IssueCert(lease=lease):
                return self._issue(lease)
            case leases.RemoveCert(lease_id=lease_id):
                _delete(self.cluster, "secret", lease_secret(lease_id))
                shutil.rmtree(self.certs / lease_id, ignore_errors=True)
        return {}

    def _issue(self, lease: leases.Lease) -> dict[str, bytes]:
        """A client only the lease's engine trusts, as a Secret the job pod mounts."""
        bundle = lease_bundle(lease, self.backend.issuer(lease.engine))
        own = labels.managed(labels.ROLE_CLIENT, lease=lease.id, engine=lease.engine)
        self.core.create_namespaced_secret(
            self.ns,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": lease_secret(lease.id), "labels": own},
                "data": {k: base64.b64encode(v).decode() for k, v in bundle.items()},
            },
        )
        write_bundle(self.certs / lease.id, bundle)
        return bundle

    def _create(self, command: leases.CreateEngine) -> bool:
        pool = self.configs.get(command.pool)
        if pool is None:
            return False
        now = str(int(self.clock()))
        extra = inventory.engine_labels(
            pool.name, warm=pool.warm, created=now, cache_key=command.cache_key
        )
        keyed = command.cache_key is not None
        own, notes = split_labels({**extra, **_user()})
        engine = manifests.KubeEngine(
            name=command.name,
            namespace=self.ns,
            image=self._images.get(pool.name) or self._image(pool),
            cache_claim=command.volume if keyed else None,
            memory_limit=f"{pool.memory // 2**20}Mi" if pool.memory else None,
            cpu_limit=f"{int(pool.cpus * 1000)}m" if pool.cpus else None,
            insecure_registries=pool.insecure_registries,
            extra_labels=own,
            annotations=notes,
        )
        try:
            if command.new_cache is not None:
                cache = command.new_cache
                claim = manifests.cache_claim(engine)
                claim["metadata"]["labels"] |= split_labels(
                    labels.managed(
                        inventory.ROLE_POOL_CACHE,
                        pool=cache.pool,
                        index=str(cache.index),
                        created=now,
                    )
                )[0]
                claim["metadata"]["annotations"] = {inventory.CACHE_KEY: cache.key}
                self.core.create_namespaced_persistent_volume_claim(self.ns, claim)
            self.backend.apply(engine, timeout=pool.ready_timeout)
        except Exception as exc:  # settle as failed, or it counts against max for good
            import logging

            logging.getLogger("dockyard.pool").error(
                "engine %s of pool %s failed to start: %s", command.name, pool.name, exc
            )
            return False
        return True

    # who else serves: coordination Leases in the namespace (dockyard.kube.serving)

    def _claim(self) -> None:
        self._serving.renew(sorted(self.configs), self._holder)

    def _unclaim(self) -> None:
        with contextlib.suppress(DockyardError):
            self._serving.release(sorted(self.configs), self._holder)

    def _heartbeat(self) -> None:
        self._serving.renew(sorted(self.configs), self._holder)

    def _served_elsewhere(self, pools: set[str]) -> set[str]:
        found = self._serving.held()
        return set(serving.others(found, self._holder, self.clock())) & pools

    def gc(self, *, dry_run: bool = False) -> list[Removal]:
        """Remove, in this namespace only, what no lease or pool of this service owns, and
        nothing of a pool another live serve holds."""
        with self._lock:
            current = self._state
        keep = set(current.engines) | {lease.marker for lease in current.leases.values()}
        keep |= {e.volume for e in current.engines.values()} | set(current.caches)
        return collect(
            self.cluster,
            now=self.clock(),
            grace=self.gc_grace,
            keep=frozenset(keep),
            live=frozenset(current.leases),
            me=self._holder,
            dry_run=dry_run,
        )


@dataclass(frozen=True)
class ClientSecret:
    """A lease's client certificate, as a Secret a job pod mounts."""

    name: str
    lease: str
    engine: str
    created_at: float


def plan_gc(
    found: inventory.Inventory,
    clients: list[ClientSecret],
    stale: list[serving.Held],  # Leases of serves that are gone
    *,
    now: float,
    grace: float,
    keep: frozenset[str] = frozenset(),
    live: frozenset[str] = frozenset(),
    others: frozenset[str] = frozenset(),
    pool: str | None = None,
) -> list[Removal]:
    """What to remove: pool engines, lease markers, caches and client Secrets that no lease
    or pool owns, older than ``grace``; never a standalone engine, nothing of a pool in
    ``others`` (another live serve's), only ``pool``'s when one is named."""

    def ours(own: Mapping[str, str], created: float) -> bool:
        belongs = own.get(inventory.POOL)
        return (
            belongs is not None
            and belongs not in others
            and (pool is None or belongs == pool)
            and now - created >= grace
        )

    removals = []
    engine_pool: dict[str, str | None] = {}
    for pod in found.containers:
        name = pod.labels.get(labels.ENGINE, pod.name)
        engine_pool[name] = pod.labels.get(inventory.POOL)
        if pod.labels.get(labels.ROLE) != labels.ROLE_ENGINE or name in keep:
            continue
        if ours(pod.labels, pod.created_at):
            removals.append(Removal("engine", name, name, "no pool or lease owns it"))
    for volume in found.volumes:
        if volume.name not in keep and ours(volume.labels, volume.created_at):
            removals.append(
                Removal("volume", volume.name, volume.name, "no lease or engine owns it")
            )
    for secret in clients:
        if secret.lease in live or secret.lease in keep:
            continue
        owner = engine_pool.get(secret.engine)
        if owner in others or (pool is not None and owner != pool):
            continue
        if now - secret.created_at >= grace:
            removals.append(Removal("certs", secret.name, secret.name, "its lease ended"))
    for held in stale:
        if (pool is None or held.pool == pool) and now - held.renewed >= grace:
            removals.append(Removal("serve", held.name, held.name, "its serve stopped renewing it"))
    return removals


def gather(cluster: Cluster) -> inventory.Inventory:
    """Engine pods, lease markers and cache claims in the namespace, as the pure planners
    read them (labels and annotations merged)."""
    core, ns = cluster.core, cluster.namespace
    sel = ",".join(f"{k}={v}" for k, v in {labels.MANAGED: "true", **_user()}.items())
    try:
        pods = core.list_namespaced_pod(ns, label_selector=sel).items
        secrets = core.list_namespaced_secret(ns, label_selector=sel).items
        claims = core.list_namespaced_persistent_volume_claim(ns, label_selector=sel).items
    except Exception as exc:
        raise explain(exc, cluster, "list pods, secrets and claims") from exc
    containers = tuple(
        inventory.Container(
            str(p.metadata.uid),
            str(p.metadata.name),
            _merged(p.metadata),
            running=p.status.phase == "Running",
            ready=is_ready(p),
            created_at=_created(p.metadata),
        )
        for p in pods
        if not p.metadata.deletion_timestamp
    )
    volumes = tuple(
        inventory.Volume(str(o.metadata.name), _merged(o.metadata), _created(o.metadata))
        for o in (*secrets, *claims)
        if (o.metadata.labels or {}).get(labels.ROLE)
        in (inventory.ROLE_LEASE, inventory.ROLE_POOL_CACHE)
    )
    return inventory.Inventory(containers, volumes, ())


def client_secrets(cluster: Cluster) -> list[ClientSecret]:
    """Lease client certificates of this dockyard (its labels): never another serve's scope."""
    mine = {labels.MANAGED: "true", labels.ROLE: labels.ROLE_CLIENT, **_user()}
    query = ",".join(f"{k}={v}" for k, v in mine.items())
    try:
        items = cluster.core.list_namespaced_secret(cluster.namespace, label_selector=query).items
    except Exception as exc:
        raise explain(exc, cluster, "list secrets") from exc
    return [
        ClientSecret(
            str(s.metadata.name),
            own[labels.LEASE],
            own.get(labels.ENGINE, ""),
            _created(s.metadata),
        )
        for s in items
        if (own := s.metadata.labels or {}).get(labels.LEASE)
    ]


def collect(
    cluster: Cluster,
    *,
    now: float,
    grace: float,
    keep: frozenset[str] = frozenset(),
    live: frozenset[str] = frozenset(),
    me: str | None = None,
    pool: str | None = None,
    dry_run: bool = False,
) -> list[Removal]:
    """gc in one namespace: list, plan (plan_gc), remove unless ``dry_run``. Standalone (no
    serve of ours running) it keeps and holds nothing: what a live serve holds is spared by
    its Lease."""
    held = serving.Leases(cluster).held()
    others = serving.others(held, me, now)
    stale = [h for h in held if h.holder != me and h.pool not in others]
    removals = plan_gc(
        gather(cluster), client_secrets(cluster), stale, now=now, grace=grace, keep=keep,
        live=live, others=others, pool=pool,
    )  # fmt: skip
    if not dry_run:
        backend = KubeBackend(cluster)
        for removal in removals:
            with contextlib.suppress(DockyardError):
                _remove(cluster, backend, removal)
    return removals


def _remove(cluster: Cluster, backend: KubeBackend, removal: Removal) -> None:
    if removal.kind == "engine":
        backend.rm(removal.ident)
    elif removal.kind == "serve":
        serving.Leases(cluster).drop(removal.ident)
    elif removal.kind == "volume":
        _delete(cluster, "secret", removal.ident)
        _delete(cluster, "persistent_volume_claim", removal.ident)
    else:
        _delete(cluster, "secret", removal.ident)


def _delete(cluster: Cluster, kind: str, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        getattr(cluster.core, f"delete_namespaced_{kind}")(
            name, cluster.namespace, _preload_content=False
        )
    except ApiException as exc:
        if exc.status != 404:
            raise DockyardError(f"cannot delete {kind} {name}: {exc.reason}") from exc


def _user() -> dict[str, str]:
    return labels.user_labels()
