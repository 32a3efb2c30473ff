"""The lease state machine: pure transitions from (state, event) to (new state, commands).

Nothing here touches Docker, files or clocks: callers pass ``now`` and fresh tokens, and carry
out the returned commands in order. Every rule about who may use which engine and volume lives
here, so the invariants (never more engines than ``max``, never two leases on one engine, never
two engines on one data volume, keyed volumes never cross keys) are tested without Docker.

Ordering matters for crash safety, and the commands encode it: a lease's marker is written
before its certificate is issued (so a client never holds a certificate of an engine that looks
idle after a crash), and an engine is destroyed before its markers are deleted (so an engine
that was ever leased can never look idle again and be handed to the next job).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

EngineState = Literal["creating", "ready", "leased", "broken"]
CachePolicy = Literal["ephemeral", "keyed"]
V = TypeVar("V")


@dataclass(frozen=True)
class PoolSpec:
    """What the machine needs to know about a pool (resources live in the pool's config)."""

    name: str
    warm: int = 2
    max: int = 8
    cache: CachePolicy = "ephemeral"
    default_ttl: int = 3600
    max_ttl: int = 86400


@dataclass(frozen=True)
class Engine:
    name: str
    pool: str
    state: EngineState
    volume: str
    cache_key: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Lease:
    id: str
    pool: str
    engine: str
    cache_key: str | None
    expires_at: int
    owner: str = ""

    @property
    def marker(self) -> str:
        """Each expiry has its own marker volume: renewal writes the new one before deleting
        the old, so a crash in between leaves two markers and recovery takes the latest."""
        return f"dockyard-lease-{self.id}-{self.expires_at}"


@dataclass(frozen=True)
class Pending:
    """A lease waiting for its engine to become ready (a cold lease)."""

    id: str
    pool: str
    engine: str
    cache_key: str | None
    ttl: int
    owner: str = ""


@dataclass(frozen=True)
class Cache:
    """A keyed cache volume: the data root of one engine at a time, of one key forever."""

    volume: str
    pool: str
    key: str
    index: int
    created_at: float = 0.0


@dataclass(frozen=True)
class State:
    pools: Mapping[str, PoolSpec] = field(default_factory=dict)
    engines: Mapping[str, Engine] = field(default_factory=dict)
    leases: Mapping[str, Lease] = field(default_factory=dict)
    pending: Mapping[str, Pending] = field(default_factory=dict)
    caches: Mapping[str, Cache] = field(default_factory=dict)

    def of_pool(self, pool: str) -> list[Engine]:
        return [e for e in self.engines.values() if e.pool == pool]

    def reserved(self) -> set[str]:
        return {p.engine for p in self.pending.values()}

    def idle(self, pool: str) -> list[Engine]:
        """Ready engines nobody holds, oldest first: they are handed out in creation order."""
        found = [e for e in self.of_pool(pool) if e.state == "ready"]
        return sorted(found, key=lambda e: (e.created_at, e.name))


# --- commands: plain data the I/O layer carries out in order --------------------------------


@dataclass(frozen=True)
class CreateEngine:
    name: str
    pool: str
    volume: str
    cache_key: str | None = None
    new_cache: Cache | None = None  # a keyed volume to create first


@dataclass(frozen=True)
class DestroyEngine:
    name: str
    volume: str
    keep_volume: bool


@dataclass(frozen=True)
class WriteMarker:
    lease: Lease


@dataclass(frozen=True)
class DeleteMarker:
    name: str


@dataclass(frozen=True)
class IssueCert:
    lease: Lease


@dataclass(frozen=True)
class RemoveCert:
    lease_id: str


Command = CreateEngine | DestroyEngine | WriteMarker | DeleteMarker | IssueCert | RemoveCert
REMOVALS = (DestroyEngine, DeleteMarker, RemoveCert)
"""Commands that can be carried out again until they succeed (removing what is gone is fine)."""


# --- outcomes of a request --------------------------------------------------------------------


@dataclass(frozen=True)
class Granted:
    lease: Lease


@dataclass(frozen=True)
class Waiting:
    """A cold lease: its engine is being created; :func:`created` finishes the grant."""

    lease_id: str
    engine: str


@dataclass(frozen=True)
class Refused:
    status: int  # the HTTP status that says it best: 400, 404, 503
    message: str
    fix: str = ""
    lease_id: str = ""  # the waiting lease this ends, if any


Outcome = Granted | Waiting | Refused | None


@dataclass(frozen=True)
class Step:
    state: State
    commands: tuple[Command, ...] = ()
    outcome: Outcome = None


# --- names ------------------------------------------------------------------------------------


def engine_name(pool: str, token: str) -> str:
    return f"dockyard-{pool}-{token}"


def data_volume(engine: str) -> str:
    """An ephemeral engine's own data root, destroyed with it."""
    return f"dockyard-data-{engine}"


def key_slug(key: str) -> str:
    """A readable, collision-free volume-name part: the slug plus a hash of the exact key,
    so two keys that slug alike (``a/b``, ``a-b``) never share a volume."""
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")[:24].strip("-")
    digest = hashlib.sha256(key.encode()).hexdigest()[:6]
    return f"{slug}-{digest}" if slug else digest


def cache_volume(pool: str, key: str, index: int) -> str:
    return f"dockyard-cache-{pool}-{key_slug(key)}-{index}"


# --- transitions ------------------------------------------------------------------------------


def request(
    state: State,
    pool: str,
    *,
    cache_key: str | None,
    ttl: int | None,
    now: float,
    token: str,
    owner: str = "",
) -> Step:
    """A job asks for an engine: grant an idle one, or start one (bounded by ``max``)."""
    spec = state.pools.get(pool)
    if spec is None or (spec.max == 0 and spec.warm == 0):
        known = ", ".join(sorted(n for n, p in state.pools.items() if p.max)) or "none"
        return Step(state, (), Refused(404, f"no pool named {pool!r}", f"pools: {known}"))
    ttl = spec.default_ttl if ttl is None else ttl
    problem = _check_request(spec, cache_key, ttl)
    if problem is not None:
        return Step(state, (), problem)
    if spec.cache == "ephemeral":
        idle = state.idle(pool)
        if idle:
            lease = Lease(token, pool, idle[0].name, None, int(now) + ttl, owner)
            return _grant(state, lease)
        starting = _spare_starting(state, pool)
        if starting is not None:  # a refill is already making one: wait for it
            pending = Pending(token, pool, starting.name, None, ttl, owner)
            new = replace(state, pending={**state.pending, token: pending})
            return Step(new, (), Waiting(token, starting.name))
    if len(state.of_pool(pool)) >= spec.max:
        return Step(state, (), _full(spec))
    name = engine_name(pool, token)
    new_cache: Cache | None = None
    if cache_key is None:
        volume = data_volume(name)
    else:
        found = _free_cache(state, pool, cache_key)
        if found is None:
            found = new_cache = _next_cache(state, pool, cache_key, now)
        volume = found.volume
    engine = Engine(name, pool, "creating", volume, cache_key, now)
    pending = Pending(token, pool, name, cache_key, ttl, owner)
    new = replace(
        state,
        engines={**state.engines, name: engine},
        pending={**state.pending, token: pending},
        caches=_with_cache(state.caches, new_cache),
    )
    create = CreateEngine(name, pool, volume, cache_key, new_cache)
    return Step(new, (create,), Waiting(token, name))


def created(state: State, name: str, *, ok: bool, now: float) -> Step:
    """An engine finished starting (or failed): finish the cold lease waiting for it."""
    engine = state.engines.get(name)
    if engine is None or engine.state != "creating":
        return Step(state)
    waiting = next((p for p in state.pending.values() if p.engine == name), None)
    pending = {k: v for k, v in state.pending.items() if v.engine != name}
    if not ok:
        new = replace(state, engines=_without(state.engines, name), pending=pending)
        refused = None
        if waiting is not None:
            message = f"engine {name} failed to start"
            refused = Refused(503, message, "retry; see the serve log", waiting.id)
        return Step(new, (_destroy(engine, state),), refused)
    ready = replace(state, engines={**state.engines, name: replace(engine, state="ready")})
    ready = replace(ready, pending=pending)
    if waiting is None:
        return Step(ready)
    lease = Lease(
        waiting.id, waiting.pool, name, waiting.cache_key, int(now) + waiting.ttl, waiting.owner
    )
    return _grant(ready, lease)


ADMIN = "uid:0"
"""The principal that may renew or release any lease (root on the host, who runs serve)."""


def principal(owner: str) -> str:
    """Who an owner is, without the process: ``uid:N`` or ``cn:NAME``."""
    return owner.split(" ", 1)[0]


def _not_theirs(lease: Lease, caller: str | None) -> Refused | None:
    """Refusal of a caller acting on a lease another principal took (``None``: the service
    itself, for expiry and clean-up)."""
    if caller is None or not lease.owner or principal(caller) in (principal(lease.owner), ADMIN):
        return None
    return Refused(
        403,
        f"lease {lease.id} belongs to {principal(lease.owner)}, not {principal(caller)}",
        "renew or release a lease as the user (or certificate) that took it, or as root",
    )


def renew(
    state: State, lease_id: str, *, ttl: int | None, now: float, caller: str | None = None
) -> Step:
    lease = state.leases.get(lease_id)
    if lease is None:
        return Step(state, (), _unknown(lease_id))
    refused = _not_theirs(lease, caller)
    if refused is not None:
        return Step(state, (), refused)
    spec = state.pools.get(lease.pool, PoolSpec(lease.pool))
    ttl = spec.default_ttl if ttl is None else ttl
    problem = _check_ttl(spec, ttl)
    if problem is not None:
        return Step(state, (), problem)
    renewed = replace(lease, expires_at=int(now) + ttl)
    if renewed.expires_at == lease.expires_at:
        return Step(state, (), Granted(lease))
    new = replace(state, leases={**state.leases, lease_id: renewed})
    return Step(new, (WriteMarker(renewed), DeleteMarker(lease.marker)), Granted(renewed))


def release(state: State, lease_id: str, *, caller: str | None = None) -> Step:
    """End a lease: its engine goes (with its issuer, so the certificate opens nothing)."""
    lease = state.leases.get(lease_id)
    if lease is None:
        return Step(state, (), _unknown(lease_id))
    refused = _not_theirs(lease, caller)
    if refused is not None:
        return Step(state, (), refused)
    new = replace(state, leases=_without(state.leases, lease_id))
    engine = state.engines.get(lease.engine)
    commands: list[Command] = []
    if engine is not None:
        new = replace(new, engines=_without(new.engines, engine.name))
        commands.append(_destroy(engine, state))
    commands += [DeleteMarker(lease.marker), RemoveCert(lease_id)]
    return Step(new, tuple(commands), Granted(lease))


def expire(state: State, *, now: float) -> Step:
    """Release every lease whose TTL has passed: an abandoned job's engine is reclaimed."""
    commands: list[Command] = []
    expired = sorted(lease.id for lease in state.leases.values() if lease.expires_at <= now)
    for lease_id in expired:
        step = release(state, lease_id)
        state, commands = step.state, [*commands, *step.commands]
    return Step(state, tuple(commands))


def reclaim(state: State) -> Step:
    """Destroy engines nobody can use: broken ones, leased ones whose lease is gone, idle ones
    of keyed or retired pools (a keyed engine serves one lease only)."""
    commands: list[Command] = []
    engines = dict(state.engines)
    reserved = state.reserved()
    holders = {lease.engine for lease in state.leases.values()}
    for engine in state.engines.values():
        spec = state.pools.get(engine.pool)
        useless = (
            engine.state == "broken"
            or (engine.state == "leased" and engine.name not in holders)
            or (
                engine.state == "ready"
                and engine.name not in reserved
                and (spec is None or spec.cache == "keyed" or spec.max == 0)
            )
        )
        if useless:
            del engines[engine.name]
            commands.append(_destroy(engine, state))
    return Step(replace(state, engines=engines), tuple(commands))


def refill(state: State, tokens: Iterable[str], *, now: float) -> Step:
    """Start engines until each ephemeral pool has ``warm`` idle-or-starting ones, within max."""
    fresh = iter(tokens)
    engines = dict(state.engines)
    commands: list[Command] = []
    reserved = state.reserved()
    for spec in state.pools.values():
        if spec.cache != "ephemeral":
            continue
        mine = [e for e in engines.values() if e.pool == spec.name]
        spare = sum(
            e.state == "ready" or (e.state == "creating" and e.name not in reserved) for e in mine
        )
        for _ in range(max(0, min(spec.warm - spare, spec.max - len(mine)))):
            name = engine_name(spec.name, next(fresh))
            engines[name] = Engine(name, spec.name, "creating", data_volume(name), None, now)
            commands.append(CreateEngine(name, spec.name, data_volume(name)))
    return Step(replace(state, engines=engines), tuple(commands))


def forget_engine(state: State, name: str) -> Step:
    """An engine vanished behind our back (removed by hand, died): drop it and its lease."""
    engine = state.engines.get(name)
    if engine is None:
        return Step(state)
    new = replace(state, engines=_without(state.engines, name))
    commands: list[Command] = [_destroy(engine, state)]
    for lease in [lease for lease in state.leases.values() if lease.engine == name]:
        new = replace(new, leases=_without(new.leases, lease.id))
        commands += [DeleteMarker(lease.marker), RemoveCert(lease.id)]
    return Step(new, tuple(commands))


# --- recovery from labels ------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenEngine:
    """A pool engine as its container shows it; ``ready`` means it was proven ready."""

    name: str
    pool: str
    ready: bool
    volume: str
    cache_key: str | None
    created_at: float


@dataclass(frozen=True)
class SeenMarker:
    name: str
    lease: Lease


def recover(
    pools: Iterable[PoolSpec],
    engines: Iterable[SeenEngine],
    markers: Iterable[SeenMarker],
    caches: Iterable[Cache],
    *,
    now: float,
) -> Step:
    """Rebuild the state from what Docker shows after a restart (even after kill -9).

    The latest marker of each lease wins; an engine that ever had a marker but has no live
    one is destroyed, never handed out again; an engine never proven ready is destroyed.
    Pools found only in labels are kept as retired (no new leases) until their leases end.
    """
    specs = {p.name: p for p in pools}
    seen = {e.name: e for e in engines}
    for engine in seen.values():
        specs.setdefault(engine.pool, PoolSpec(engine.pool, warm=0, max=0))
    latest: dict[str, SeenMarker] = {}
    commands: list[Command] = []
    by_engine: dict[str, list[SeenMarker]] = {}
    for marker in sorted(markers, key=lambda m: m.lease.expires_at):
        by_engine.setdefault(marker.lease.engine, []).append(marker)
        previous = latest.get(marker.lease.id)
        if previous is not None:
            commands.append(DeleteMarker(previous.name))
        latest[marker.lease.id] = marker
    live = {
        m.lease.id: m.lease
        for m in latest.values()
        if m.lease.expires_at > now
        and m.lease.engine in seen
        and seen[m.lease.engine].ready
        and m.lease.pool in specs
    }
    held = {lease.engine for lease in live.values()}
    state_engines: dict[str, Engine] = {}
    for engine in seen.values():
        if engine.name in held:
            status: EngineState = "leased"
        elif engine.ready and engine.name not in by_engine:
            status = "ready"
        else:
            status = "broken"
        state_engines[engine.name] = Engine(
            engine.name, engine.pool, status, engine.volume, engine.cache_key, engine.created_at
        )
    state = State(
        pools=specs,
        engines=state_engines,
        leases=live,
        caches={c.volume: c for c in caches},
    )
    step = reclaim(state)
    dead = [m for m in latest.values() if m.lease.id not in live]
    commands += [DeleteMarker(m.name) for m in dead]
    commands += [RemoveCert(m.lease.id) for m in dead]
    # Engines go before markers (see the module docstring).
    return Step(step.state, (*step.commands, *commands))


# --- helpers ------------------------------------------------------------------------------------


def _grant(state: State, lease: Lease) -> Step:
    engine = state.engines[lease.engine]
    new = replace(
        state,
        engines={**state.engines, engine.name: replace(engine, state="leased")},
        leases={**state.leases, lease.id: lease},
    )
    return Step(new, (WriteMarker(lease), IssueCert(lease)), Granted(lease))


def _destroy(engine: Engine, state: State) -> DestroyEngine:
    return DestroyEngine(engine.name, engine.volume, keep_volume=engine.volume in state.caches)


def _spare_starting(state: State, pool: str) -> Engine | None:
    reserved = state.reserved()
    spare = [e for e in state.of_pool(pool) if e.state == "creating" and e.name not in reserved]
    return min(spare, key=lambda e: (e.created_at, e.name), default=None)


def _free_cache(state: State, pool: str, key: str) -> Cache | None:
    used = {e.volume for e in state.engines.values()}
    free = [
        c for c in state.caches.values() if c.pool == pool and c.key == key and c.volume not in used
    ]
    return min(free, key=lambda c: c.index, default=None)


def _next_cache(state: State, pool: str, key: str, now: float) -> Cache:
    taken = [c.index for c in state.caches.values() if c.pool == pool and c.key == key]
    index = max(taken, default=0) + 1
    return Cache(cache_volume(pool, key, index), pool, key, index, now)


def _with_cache(caches: Mapping[str, Cache], cache: Cache | None) -> Mapping[str, Cache]:
    return caches if cache is None else {**caches, cache.volume: cache}


def _check_request(spec: PoolSpec, cache_key: str | None, ttl: int) -> Refused | None:
    if spec.cache == "keyed" and not cache_key:
        return Refused(
            400,
            f"cache_key: pool {spec.name} is keyed and needs a cache key",
            'pass one, e.g. the repository name (--cache-key, or "cache_key" in the body)',
        )
    if spec.cache == "ephemeral" and cache_key:
        return Refused(
            400,
            f"cache_key: pool {spec.name} is ephemeral and keeps no cache",
            "omit the cache key, or use a pool with cache: keyed",
        )
    return _check_ttl(spec, ttl)


def _check_ttl(spec: PoolSpec, ttl: int) -> Refused | None:
    if 0 < ttl <= spec.max_ttl:
        return None
    return Refused(
        400,
        f"ttl_seconds: {ttl} is outside 1..{spec.max_ttl} for pool {spec.name}",
        "ask for a shorter lease and renew it",
    )


def _full(spec: PoolSpec) -> Refused:
    return Refused(
        503,
        f"pool {spec.name} is at its maximum of {spec.max} engines and none is idle",
        "retry in a moment, release finished leases (dockyard leases; dockyard release ID), "
        "or raise the pool's max",
    )


def _unknown(lease_id: str) -> Refused:
    return Refused(404, f"no lease {lease_id!r}", "list leases with: dockyard leases")


def _without(mapping: Mapping[str, V], key: str) -> dict[str, V]:
    return {k: v for k, v in mapping.items() if k != key}
