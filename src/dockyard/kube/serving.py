"""Which pools a live ``serve`` holds, told by coordination Leases in the namespace.

On one host a served pool is a held file lock. In a cluster the serve may run anywhere, so
each pool it serves has a Lease ``dockyard-serve-POOL`` it renews while it runs (as leader
election does): a second serve of the pool is refused while the Lease is fresh, and a
standalone ``gc`` treats the pool as served (its engines and leases are left alone). A serve
killed with -9 stops renewing; its Lease goes stale after ``DURATION`` seconds and the pool
is then fair game for ``gc``, which removes the stale Lease too. The holder is a process tag
(dockyard.creator): a holder on this host that is provably dead holds nothing, so a serve
restarted where it crashed starts at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dockyard import creator, labels
from dockyard.errors import DockyardError
from dockyard.kube.cluster import Cluster, explain
from dockyard.pool.inventory import POOL
from dockyard.pool.service import ClaimLostError

ROLE_SERVE = "serve"
DURATION = 30  # seconds a Lease stays fresh without renewal (serve renews every 5 s)


def lease_name(pool: str) -> str:
    return f"dockyard-serve-{pool}"


def holder() -> str:
    """This serve process, as other processes see it."""
    return creator.mine()


@dataclass(frozen=True)
class Held:
    """One pool's Lease as read back."""

    name: str
    pool: str
    holder: str
    renewed: float  # epoch seconds
    duration: int

    def fresh(self, now: float) -> bool:
        return now - self.renewed < self.duration

    def live(self, now: float, holder_alive: bool | None) -> bool:
        """Held by a serve that may still run: renewed lately, and not provably dead."""
        return self.fresh(now) and holder_alive is not False


def claim_verdict(
    found: Held | None, me: str, now: float, holder_alive: bool | None = None
) -> str | None:
    """Why this process may not serve the pool, or None when it may."""
    if found is None or found.holder == me or not found.live(now, holder_alive):
        return None
    return (
        f"pool {found.pool} is served by {found.holder} (its Lease {found.name} was renewed "
        f"{now - found.renewed:.0f} s ago)"
    )


def others(found: list[Held], me: str | None, now: float) -> frozenset[str]:
    """Pools another live serve holds."""
    return frozenset(
        h.pool for h in found if h.holder != me and h.live(now, creator.alive(h.holder))
    )


def manifest(pool: str, namespace: str, me: str, now: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(pool),
            "namespace": namespace,
            "labels": labels.managed(ROLE_SERVE, pool=pool),
        },
        "spec": {
            "holderIdentity": me,
            "leaseDurationSeconds": DURATION,
            "acquireTime": now,
            "renewTime": now,
        },
    }


class Leases:
    """The adapter: reads and writes the Leases of one namespace."""

    def __init__(self, cluster: Cluster) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.ns = cluster.namespace
        self.api: Any = client.CoordinationV1Api(cluster.api)

    def held(self) -> list[Held]:
        selector = f"{labels.MANAGED}=true,{labels.ROLE}={ROLE_SERVE}"
        try:
            items = self.api.list_namespaced_lease(self.ns, label_selector=selector).items
        except Exception as exc:
            raise explain(exc, self.cluster, "list leases (coordination.k8s.io)") from exc
        return [_held(item) for item in items]

    def renew(self, pools: list[str], me: str) -> None:
        """Take or renew every pool's Lease; ClaimLostError naming the other serve where one
        holds it live (at start: refused; later: this serve stalled and lost it)."""
        from kubernetes.client.exceptions import ApiException

        stamp = datetime.now(UTC)
        for pool in pools:
            body = manifest(pool, self.ns, me, stamp)
            try:
                try:
                    current = self.api.read_namespaced_lease(lease_name(pool), self.ns)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    self._create(pool, body)
                    continue
                # Never over another live serve.
                held = _held(current)
                why = claim_verdict(held, me, stamp.timestamp(), creator.alive(held.holder))
                if why:
                    raise ClaimLostError(why, fix="stop that serve, or serve another pool")
                body["metadata"]["resourceVersion"] = current.metadata.resource_version
                if held.holder == me and current.spec.acquire_time:
                    body["spec"]["acquireTime"] = current.spec.acquire_time
                self.api.replace_namespaced_lease(lease_name(pool), self.ns, body)
            except DockyardError:
                raise
            except Exception as exc:
                raise explain(exc, self.cluster, "update leases (coordination.k8s.io)") from exc

    def _create(self, pool: str, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.create_namespaced_lease(self.ns, body)
        except ApiException as exc:
            if exc.status == 409:  # two serves of one pool starting at once: one wins
                raise DockyardError(
                    f"pool {pool} was claimed by another serve a moment ago",
                    fix="stop that serve, or serve another pool",
                ) from exc
            raise

    def drop(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.delete_namespaced_lease(name, self.ns)
        except ApiException as exc:
            if exc.status != 404:
                raise explain(exc, self.cluster, "delete leases (coordination.k8s.io)") from exc

    def release(self, pools: list[str], me: str) -> None:
        """A clean stop gives the pools back at once: only the Leases this process holds."""
        for held in self.held():
            if held.pool in pools and held.holder == me:
                self.drop(held.name)


def _held(item: Any) -> Held:
    spec = item.spec
    stamp = spec.renew_time or spec.acquire_time or item.metadata.creation_timestamp
    return Held(
        name=str(item.metadata.name),
        pool=(item.metadata.labels or {}).get(POOL, ""),
        holder=str(spec.holder_identity or ""),
        renewed=stamp.timestamp() if stamp else 0.0,
        duration=int(spec.lease_duration_seconds or DURATION),
    )
