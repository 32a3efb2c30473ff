"""The reaper: remove what dockyard created that no live lease, served pool or stack owns.

:func:`plan` decides over listed objects (pure); :func:`run` lists, plans and removes (thin).
Never touched: anything of a stack (``io.dockyard.stack``), standalone engines (no pool
label) that became ready and their cache volumes, objects outside ``DOCKYARD_LABELS``, and
anything younger than ``grace`` that another process may still be creating (a half-made
engine, a network waiting for its engine) unless it is plainly dead.

Reclaimed whatever their owner: objects whose creator label names a process that is gone
(demo's verify engine of a killed demo), and standalone engines that never became ready (a
killed ``engine create``) once past the grace period and no create of them holds its lock.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from dockyard import creator, docker_api, exclusive, labels
from dockyard.engine import service
from dockyard.errors import DockyardError
from dockyard.pool import inventory, ownership
from dockyard.pool.config import KeyedLimits
from dockyard.pool.inventory import Container, Inventory, Network, Volume

Kind = Literal["engine", "container", "volume", "network", "certs", "serve"]
DEFAULT_GRACE = 300.0


@dataclass(frozen=True)
class Removal:
    kind: Kind
    ident: str  # what the API (or the filesystem) removes by
    name: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.reason}"


@dataclass(frozen=True)
class CertDir:
    lease: str
    modified: float


def plan(
    found: Inventory,
    *,
    now: float,
    served: frozenset[str] = frozenset(),
    keep: frozenset[str] = frozenset(),
    limits: Mapping[str, KeyedLimits] | None = None,
    grace: float = DEFAULT_GRACE,
    pool: str | None = None,
    cert_dirs: Iterable[CertDir] = (),
    orphaned: frozenset[str] = frozenset(),
    creating: frozenset[str] = frozenset(),
) -> list[Removal]:
    """What to remove, containers first (volumes and networks in use cannot go).

    ``orphaned``: creator tags whose process is gone; ``creating``: engines a live create on
    this host holds the lock of.
    """
    ours = _Scope(pool, keep)
    containers = [c for c in found.containers if ours.has(c.name, c.labels)]
    engines = {c.labels.get(labels.ENGINE, c.name): c for c in inventory.pool_engines(found)}
    removals = _orphans(found, orphaned, keep) if pool is None else []
    removals += _never_ready(containers, creating, now, grace) if pool is None else []
    dropped = {r.name for r in removals if r.kind in ("engine", "container")}
    every_engine = {
        c.labels.get(labels.ENGINE)
        for c in found.containers
        if c.labels.get(labels.ROLE) == labels.ROLE_ENGINE and c.name not in dropped
    }
    live, leased, dead_markers = _markers(found, now, set(engines))
    marked = {m.labels.get(labels.ENGINE) for m in found.role(inventory.ROLE_LEASE)}
    containers = [c for c in containers if c.name not in dropped]
    removals += _helpers(containers, every_engine, now, grace)
    for engine in (c for c in containers if c in engines.values()):
        name = engine.labels.get(labels.ENGINE, engine.name)
        old = now - engine.created_at > grace
        why = _engine_verdict(engine, name, leased=leased, marked=marked, served=served, old=old)
        if why:
            removals.append(Removal("engine", name, engine.name, why))
    doomed = {r.ident for r in removals if r.kind == "engine"}
    removals += [
        Removal("volume", m.name, m.name, why)
        for m, why in dead_markers
        if ours.has(m.name, m.labels)
    ]
    surviving = {name: c for name, c in engines.items() if name not in doomed}
    for volume in found.role(inventory.ROLE_POOL_DATA):
        owner = volume.labels.get(labels.ENGINE, "")
        old = now - volume.created_at > grace
        if (
            ours.has(volume.name, volume.labels)
            and owner not in surviving
            and (old or owner in doomed)
        ):
            removals.append(Removal("volume", volume.name, volume.name, f"engine {owner} is gone"))
    in_use = {
        v for c in found.containers if c.labels.get(labels.ENGINE) in surviving for v in c.volumes
    }
    removals += _caches(found, ours, in_use | keep, limits or {}, now)
    gone = {r.ident for r in removals if r.kind == "container"}
    gone |= {c.id for name, c in engines.items() if name in doomed}
    gone |= {c.id for c in found.containers if c.name in dropped}
    taken = {r.ident for r in removals if r.kind in ("volume", "network")}
    pools_left = {c.labels.get(inventory.POOL) for c in surviving.values()} | served
    removals += [
        Removal("network", n.id, n.name, why)
        for n in found.networks
        if ours.has(n.name, n.labels) and not set(n.attached) - gone and n.id not in taken
        for why in [_network_verdict(n, pools_left, every_engine, old=now - n.created_at > grace)]
        if why
    ]
    if pool is None:
        removals += [
            Removal("certs", d.lease, d.lease, "lease has ended")
            for d in cert_dirs
            if d.lease not in live and d.lease not in keep and now - d.modified > grace
        ]
    return removals


def _orphans(found: Inventory, orphaned: frozenset[str], keep: frozenset[str]) -> list[Removal]:
    """Everything labelled with a creator that is gone, a stack's too: it was made for one
    run of one command, and that run is over."""

    def dead(name: str, own: Mapping[str, str]) -> bool:
        return own.get(creator.CREATOR) in orphaned and name not in keep

    def why(own: Mapping[str, str]) -> str:
        return f"its creator {own.get(creator.CREATOR)} is gone"

    removals = [
        Removal(
            "engine" if c.labels.get(labels.ROLE) == labels.ROLE_ENGINE else "container",
            c.labels.get(labels.ENGINE, c.name)
            if c.labels.get(labels.ROLE) == labels.ROLE_ENGINE
            else c.id,
            c.name,
            why(c.labels),
        )
        for c in found.containers
        if dead(c.name, c.labels)
    ]
    removals += [
        Removal("volume", v.name, v.name, why(v.labels))
        for v in found.volumes
        if dead(v.name, v.labels)
    ]
    attached = {c.id for c in found.containers if not dead(c.name, c.labels)}
    removals += [
        Removal("network", n.id, n.name, why(n.labels))
        for n in found.networks
        if dead(n.name, n.labels) and not set(n.attached) & attached
    ]
    return removals


def _never_ready(
    containers: list[Container], creating: frozenset[str], now: float, grace: float
) -> list[Removal]:
    """Standalone engines that never became ready: their create was killed (a live one
    holds its lock, and the grace period covers a create on another host)."""
    return [
        Removal("engine", name, c.name, "never became ready (its create was killed)")
        for c in containers
        if c.labels.get(labels.ROLE) == labels.ROLE_ENGINE
        and not c.labels.get(inventory.POOL)
        and not c.ready
        and creator.CREATOR not in c.labels
        and (name := c.labels.get(labels.ENGINE, c.name)) not in creating
        and now - c.created_at > grace
    ]


def _network_verdict(
    network: Network,
    pools_left: set[str | None] | frozenset[str],
    engines: set[str | None],
    *,
    old: bool,
) -> str | None:
    """A pool's network goes with its last engine (unless served); an engine's own network
    goes once its engine is gone and the grace period has passed."""
    if network.labels.get(labels.ROLE) != labels.ROLE_NETWORK:
        return None
    owner_pool = network.labels.get(inventory.POOL)
    owner_engine = network.labels.get(labels.ENGINE)
    if owner_pool and owner_pool not in pools_left:
        return f"pool {owner_pool} has no engines and no serve"
    if owner_engine and owner_engine not in engines and old:
        return f"engine {owner_engine} is gone"
    return None


class _Scope:
    """Objects gc may consider: not a stack's, not kept by the caller, of ``pool`` if given."""

    def __init__(self, pool: str | None, keep: frozenset[str]) -> None:
        self.pool, self.keep = pool, keep

    def has(self, name: str, own: Mapping[str, str]) -> bool:
        if labels.STACK in own or name in self.keep:
            return False
        return self.pool is None or own.get(inventory.POOL) == self.pool


def _markers(
    found: Inventory, now: float, engines: set[str]
) -> tuple[set[str], set[str], list[tuple[Volume, str]]]:
    """Live lease ids, their engines, and the markers to remove with why."""
    latest: dict[str, tuple[int, Volume]] = {}
    dead: list[tuple[Volume, str]] = []
    for seen, volume in zip(
        inventory.seen_markers(found), found.role(inventory.ROLE_LEASE), strict=True
    ):
        lease = seen.lease
        previous = latest.get(lease.id)
        if previous is None or previous[0] < lease.expires_at:
            if previous is not None:
                dead.append((previous[1], "superseded by a renewal"))
            latest[lease.id] = (lease.expires_at, volume)
        else:
            dead.append((volume, "superseded by a renewal"))
    live, leased = set(), set()
    for lease_id, (expires, volume) in latest.items():
        engine = volume.labels.get(labels.ENGINE, "")
        if expires <= now:
            dead.append((volume, "lease expired"))
        elif engine not in engines:
            dead.append((volume, "its engine is gone"))
        else:
            live.add(lease_id)
            leased.add(engine)
    return live, leased, dead


def _engine_verdict(
    engine: Container,
    name: str,
    *,
    leased: set[str],
    marked: set[str | None],
    served: frozenset[str],
    old: bool,
) -> str | None:
    """Why a pool engine goes, or None. An engine that was ever leased never idles again."""
    if name in leased:
        return None
    if name in marked:
        return "its lease has ended"
    if engine.running and engine.ready:
        if engine.labels.get(inventory.POOL) in served:
            return None
        return "idle, and no serve holds its pool"
    if old:
        return "never became ready (its creator died)" if engine.running else "not running"
    return None


def _helpers(
    containers: list[Container], engines: set[str | None], now: float, grace: float
) -> list[Removal]:
    """Probe and client containers whose engine is gone, once past the grace period."""
    found = []
    for container in containers:
        role = container.labels.get(labels.ROLE)
        if (
            role not in (labels.ROLE_PROBE, labels.ROLE_CLIENT)
            or now - container.created_at <= grace
        ):
            continue
        owner = container.labels.get(labels.ENGINE)
        if role == labels.ROLE_PROBE or owner not in engines:
            found.append(
                Removal(
                    "container",
                    container.id,
                    container.name,
                    f"{role} of engine {owner} left behind",
                )
            )
    return found


def _caches(
    found: Inventory,
    ours: _Scope,
    in_use: set[str],
    limits: Mapping[str, KeyedLimits],
    now: float,
) -> list[Removal]:
    """Keyed caches beyond their pool's age and per-key count limits (config, else labels)."""
    by_key: dict[tuple[str, str], list[Volume]] = {}
    for volume in found.role(inventory.ROLE_POOL_CACHE):
        if ours.has(volume.name, volume.labels):
            pool_key = (
                volume.labels.get(inventory.POOL, ""),
                volume.labels.get(inventory.CACHE_KEY, ""),
            )
            by_key.setdefault(pool_key, []).append(volume)
    removals = []
    for (pool, key), volumes in by_key.items():
        newest_first = sorted(volumes, key=_created, reverse=True)
        for rank, volume in enumerate(newest_first):
            if volume.name in in_use:
                continue
            limit = limits.get(pool) or _labelled_limits(volume)
            if now - _created(volume) > limit.max_age:
                removals.append(
                    Removal(
                        "volume",
                        volume.name,
                        volume.name,
                        f"cache of key {key!r} is older than {limit.max_age}s",
                    )
                )
            elif rank >= limit.max_count:
                removals.append(
                    Removal(
                        "volume",
                        volume.name,
                        volume.name,
                        f"more than {limit.max_count} caches of key {key!r}",
                    )
                )
    return removals


def _created(volume: Volume) -> float:
    return float(volume.labels.get(inventory.CREATED) or volume.created_at)


def _labelled_limits(volume: Volume) -> KeyedLimits:
    defaults = KeyedLimits()
    try:
        return KeyedLimits(
            max_age=int(volume.labels.get(inventory.MAX_AGE) or defaults.max_age),
            max_count=int(volume.labels.get(inventory.MAX_COUNT) or defaults.max_count),
        )
    except ValueError:
        return defaults


# --- I/O ----------------------------------------------------------------------------------------


def cert_dirs(root: Path) -> list[CertDir]:
    if not root.is_dir():
        return []
    return [CertDir(p.name, p.stat().st_mtime) for p in root.iterdir() if p.is_dir()]


def run(
    client: docker_api.DockerClient,
    *,
    now: float,
    certs: Path,
    keep: frozenset[str] = frozenset(),
    limits: Mapping[str, KeyedLimits] | None = None,
    grace: float = DEFAULT_GRACE,
    pool: str | None = None,
    dry_run: bool = False,
) -> list[Removal]:
    """List, plan, remove (unless ``dry_run``); returns what was (or would be) removed."""
    found = inventory.gather(client)
    pools = {c.labels.get(inventory.POOL, "") for c in inventory.pool_engines(found)}
    pools |= {n.labels.get(inventory.POOL, "") for n in found.networks}
    served = frozenset(p for p in pools if p and ownership.served(p))
    removals = plan(
        found,
        now=now,
        served=served,
        keep=keep,
        limits=limits,
        grace=grace,
        pool=pool,
        cert_dirs=cert_dirs(certs),
        orphaned=frozenset(tag for tag in _creators(found) if creator.alive(tag) is False),
        creating=frozenset(_being_made(found, now)),
    )
    if not dry_run:
        for removal in removals:
            _remove(client, removal, certs)
    return removals


def _creators(found: Inventory) -> set[str]:
    objects: list[Mapping[str, str]] = [o.labels for o in found.containers]
    objects += [v.labels for v in found.volumes] + [n.labels for n in found.networks]
    return {tag for own in objects if (tag := own.get(creator.CREATOR))}


def _being_made(found: Inventory, now: float) -> list[str]:
    """Never-ready standalone engines a live process may still be making: its create holds
    the lock here, or its maker lives (on another host: not yet long abandoned)."""
    return [
        name
        for c in found.containers
        if c.labels.get(labels.ROLE) == labels.ROLE_ENGINE
        and not c.labels.get(inventory.POOL)
        and not c.ready
        and (name := c.labels.get(labels.ENGINE, c.name))
        and (
            exclusive.is_held("engine", name)
            or not creator.abandoned(c.labels.get(creator.MAKER), now - c.created_at)
        )
    ]


def _remove(client: docker_api.DockerClient, removal: Removal, certs: Path) -> None:
    api = client.api
    with contextlib.suppress(docker_api.NotFound, docker_api.APIError, DockyardError):
        match removal.kind:
            case "engine":  # with its issuer: no certificate it signed opens anything again
                with exclusive.held("engine", removal.ident):  # not while it is being created
                    service.rm(removal.ident, client=client)
            case "container":
                api.remove_container(removal.ident, force=True, v=True)
            case "volume":
                api.remove_volume(removal.ident, force=True)
            case "network":
                docker_api.remove_network(client, removal.ident)
            case "certs":
                shutil.rmtree(certs / removal.ident, ignore_errors=True)
