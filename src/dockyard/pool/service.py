"""The pool service: carries out the lease machine's commands against Docker.

State changes happen under one lock as pure transitions (:mod:`dockyard.pool.leases`); the
commands they return run outside it, in order, and a failure stops the rest of its batch (a
later command depends on the earlier ones: a certificate is issued only once its marker is
written, markers are deleted only once their engine is gone). Engines are created in the
requesting thread (a cold lease) or by a background refill; a reaper expires leases and runs
gc. Nothing is kept on disk but certificates: a restart rebuilds everything from labels.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

from dockyard import config, docker_api, labels, pki, state
from dockyard.engine import service
from dockyard.engine.spec import TLS_PORT
from dockyard.errors import DockyardError
from dockyard.mirror import service as mirror
from dockyard.pool import gc, inventory, leases, ownership
from dockyard.pool.config import PoolConfig

log = logging.getLogger("dockyard.pool")
Clock = Callable[[], float]


class ClaimLostError(DockyardError):
    """Another live serve holds this serve's pool: refused at start, or this serve stalled past
    its claim and must stop."""


class PoolError(DockyardError):
    """A refused request, with the HTTP status that says why."""

    def __init__(self, status: int, message: str, fix: str | None = None) -> None:
        super().__init__(message, fix)
        self.status = status


@dataclass(frozen=True)
class Grant:
    """What a job gets: the lease, the docker CLI's variables and its certificate bundle."""

    lease: leases.Lease
    network: str
    environment: dict[str, str]
    certificates: dict[str, str]
    images: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**lease_dict(self.lease, self.images), "network": self.network} | {
            "environment": self.environment,
            "certificates": self.certificates,
        }


def lease_dict(lease: leases.Lease, images: Sequence[str] = ()) -> dict[str, Any]:
    """``images``: what the engine held when leased (its pool's seed)."""
    return {
        "id": lease.id,
        "pool": lease.pool,
        "engine": lease.engine,
        "cache_key": lease.cache_key,
        "expires_at": lease.expires_at,
        "owner": lease.owner,
        "images": list(images),
    }


def cert_root() -> Path:
    """Where serve writes each lease's bundle (``DOCKER_CERT_PATH``): one 0700 dir per lease."""
    return state.state_dir() / "leases"


# --- the service ---------------------------------------------------------------------------------


class PoolService:
    def __init__(
        self,
        pools: Sequence[PoolConfig],
        *,
        client: docker_api.DockerClient | None = None,
        certs: Path | None = None,
        clock: Clock = time.time,
        workers: int = 2,
        reap_every: float = 5.0,
        gc_every: float = 60.0,
        gc_grace: float = 300.0,
    ) -> None:
        self.configs = {p.name: p for p in pools}
        self.client = client or docker_api.shared()
        self.certs = certs or cert_root()
        self.clock = clock
        self.reap_every, self.gc_every, self.gc_grace = reap_every, gc_every, gc_grace
        self._state = leases.State(pools={p.name: p.spec() for p in pools})
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._workers = ThreadPoolExecutor(workers, thread_name_prefix="pool-create")
        self._threads: list[threading.Thread] = []
        self._claims: list[IO[str]] = []
        self._images: dict[str, str] = {}
        self._mirrors: dict[str, mirror.Mirror] = {}
        self._held: dict[str, tuple[str, ...]] = {}  # engine -> seed images it pulled
        self._retry_at = 0.0
        self._waiting: dict[str, Future[Grant]] = {}
        self._abandoned: set[str] = set()  # leases whose requester gave up waiting
        self._retries: list[leases.Command] = []
        """Removals that failed (a released engine still running, its marker still there):
        retried by the reaper, so a released certificate does not keep opening an engine."""
        self._retries_lock = threading.Lock()
        self.lost: str | None = None
        """Why this service stopped serving: another serve took its pools."""
        self.on_lost: Callable[[str], None] = lambda _why: None

    # lifecycle

    def start(self, *, background: bool = True) -> list[str]:
        """Claim the pools, recover them from labels, gc, then refill and reap in threads.
        Returns what recovery and gc removed."""
        self._claim()
        for pool in self.configs.values():
            self._images[pool.name] = self._image(pool)
            self._ensure_network(pool)
            if pool.insecure_registries:
                log.warning(
                    "pool %s: its engines reach %s over plain HTTP (insecure_registries)",
                    pool.name,
                    ", ".join(pool.insecure_registries),
                )
            if pool.mirror is not None:
                self._mirrors[pool.name] = mirror.ensure(
                    self.client, pool.mirror, pool.network_name
                )
        removed = self.recover()
        removed += [str(r) for r in self.gc()]
        if background:
            for target in (self._refill_loop, self._reap_loop):
                thread = threading.Thread(target=target, name=target.__name__, daemon=True)
                thread.start()
                self._threads.append(thread)
        return removed

    def stop(self) -> None:
        """Stop the threads; engines and leases stay (a restart recovers them)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        self._workers.shutdown(wait=True)
        self._unclaim()

    # who else serves: a held file lock on one host (dockyard.pool.ownership)

    def _claim(self) -> None:
        """Refuse to start while another serve holds one of these pools."""
        self._claims = [ownership.claim(name) for name in self.configs]

    def _unclaim(self) -> None:
        for handle in self._claims:
            handle.close()

    def _heartbeat(self) -> None:
        """Renew the claim, where it needs renewing (a file lock does not)."""

    def _served_elsewhere(self, pools: set[str]) -> set[str]:
        return {p for p in pools if ownership.served(p)}

    def recover(self) -> list[str]:
        found = self._gather()
        mine = set(self.configs)
        # Another serve's pools are its business; pools nobody serves are retired here.
        pools = {e.pool for e in inventory.seen_engines(found)}
        theirs = self._served_elsewhere(pools - mine)
        step = leases.recover(
            self._state.pools.values(),
            [e for e in inventory.seen_engines(found) if e.pool not in theirs],
            [m for m in inventory.seen_markers(found) if m.lease.pool not in theirs],
            [c for c in inventory.caches(found) if c.pool not in theirs],
            now=self.clock(),
        )
        with self._lock:
            self._state = step.state
        self._run(step.commands)
        return [describe(c) for c in step.commands]

    # requests

    def lease(
        self,
        pool: str,
        *,
        cache_key: str | None = None,
        ttl: int | None = None,
        owner: str = "",
    ) -> Grant:
        token = secrets.token_hex(6)
        waiter: Future[Grant] = Future()
        self._waiting[token] = waiter  # before the request: a refill may finish the grant
        step = self._transition(
            lambda s: leases.request(
                s, pool, cache_key=cache_key, ttl=ttl, now=self.clock(), token=token, owner=owner
            )
        )
        if isinstance(step.outcome, leases.Waiting):
            for command in step.commands:
                assert isinstance(command, leases.CreateEngine)
                self._settle(command)
            try:
                return waiter.result(timeout=self.configs[pool].ready_timeout + 30)
            except FutureTimeout:
                # Nobody will take this lease: release it as soon as its engine is granted.
                if self._waiting.pop(token, None) is not None:
                    self._abandoned.add(token)
                raise PoolError(
                    503,
                    f"no engine of pool {pool} became ready in time",
                    fix="retry; if it persists, see the serve log (the host may be overloaded)",
                ) from None
        del self._waiting[token]
        return self._finish(step)

    def _finish(self, step: leases.Step) -> Grant:
        """Write the marker, issue the certificate: the grant the requester gets."""
        outcome = step.outcome
        if isinstance(outcome, leases.Refused):
            self._run(step.commands)
            raise PoolError(outcome.status, outcome.message, outcome.fix or None)
        assert isinstance(outcome, leases.Granted)
        self._wake.set()  # the pool lost a warm engine
        try:
            bundle = self._run(step.commands, strict=True)
        except Exception:
            with contextlib.suppress(PoolError):
                self.release(outcome.lease.id)
            raise
        return self._grant(outcome.lease, bundle)

    def renew(
        self, lease_id: str, ttl: int | None = None, *, caller: str | None = None
    ) -> leases.Lease:
        step = self._transition(
            lambda s: leases.renew(s, lease_id, ttl=ttl, now=self.clock(), caller=caller)
        )
        self._run(step.commands, strict=True)
        return self._lease_of(step)

    def release(self, lease_id: str, *, caller: str | None = None) -> leases.Lease:
        """End a lease; ``caller`` (a client of the API) must be its owner or root."""
        step = self._transition(lambda s: leases.release(s, lease_id, caller=caller))
        self._run(step.commands)
        self._wake.set()
        return self._lease_of(step)

    def list_leases(self) -> list[leases.Lease]:
        with self._lock:
            return sorted(self._state.leases.values(), key=lambda lease: lease.id)

    def get(self, lease_id: str) -> leases.Lease:
        with self._lock:
            found = self._state.leases.get(lease_id)
        if found is None:
            raise PoolError(404, f"no lease {lease_id!r}", "list leases with: dockyard leases")
        return found

    def pools(self) -> list[dict[str, Any]]:
        with self._lock:
            current = self._state
        reserved = current.reserved()
        report = []
        for spec in current.pools.values():
            engines = current.of_pool(spec.name)
            count = {s: sum(e.state == s for e in engines) for s in ("ready", "leased", "creating")}
            cfg = self.configs.get(spec.name)
            report.append(
                {
                    "name": spec.name,
                    "cache": spec.cache,
                    "warm": spec.warm,
                    "max": spec.max,
                    "idle": count["ready"],
                    "leased": count["leased"],
                    "creating": count["creating"],
                    "cold_starts": sum(e.name in reserved for e in engines),
                    "network": cfg.network_name if cfg else None,
                    "image": self._images.get(spec.name),
                    "retired": cfg is None,
                    "seed": list(cfg.seed) if cfg else [],
                    "engines": [
                        {"name": e.name, "state": e.state, "images": list(self.held(e.name))}
                        for e in sorted(engines, key=lambda e: e.name)
                    ],
                    "mirror": self._mirror_report(spec.name),
                }
            )
        return report

    def held(self, engine: str) -> tuple[str, ...]:
        """The seed images ``engine`` pulled (empty after a restart: not kept in labels)."""
        return self._held.get(engine, ())

    def _mirror_report(self, pool: str) -> dict[str, Any] | None:
        found = self._mirrors.get(pool)
        return None if found is None else mirror.report(self.client, found.name)

    def gc(self, *, dry_run: bool = False) -> list[gc.Removal]:
        """Remove what no lease, pool or stack owns, leaving this service's own objects alone."""
        with self._lock:
            current = self._state
        keep = set(current.engines) | {lease.marker for lease in current.leases.values()}
        keep |= {e.volume for e in current.engines.values()}
        keep |= set(current.leases) | {cfg.network_name for cfg in self.configs.values()}
        return gc.run(
            self.client,
            keep=frozenset(keep),
            limits={n: c.keyed for n, c in self.configs.items() if c.cache == "keyed"},
            grace=self.gc_grace,
            now=self.clock(),
            dry_run=dry_run,
            certs=self.certs,
        )

    def refill(self) -> list[str]:
        """Start the engines the pools lack (in the background workers); their names."""
        if self.clock() < self._retry_at:
            return []
        step = self._transition(lambda s: leases.refill(s, _tokens(), now=self.clock()))
        for command in step.commands:
            assert isinstance(command, leases.CreateEngine)
            self._workers.submit(self._settle, command)
        return [c.name for c in step.commands if isinstance(c, leases.CreateEngine)]

    def reap(self) -> list[str]:
        """Retry failed removals, expire leases past their TTL and destroy engines nobody can
        use."""
        with self._retries_lock:
            retried, self._retries = self._retries, []
        self._run(retried)
        expired = self._transition(lambda s: leases.expire(s, now=self.clock()))
        reclaimed = self._transition(leases.reclaim)
        commands = (*expired.commands, *reclaimed.commands)
        self._run(commands)
        if commands:
            self._wake.set()
        return [describe(c) for c in commands]

    def check_engines(self) -> list[str]:
        """Forget engines that vanished behind our back (removed by hand, crashed)."""
        present = {e.name for e in inventory.seen_engines(self._gather())}
        with self._lock:
            gone = [
                e.name
                for e in self._state.engines.values()
                if e.state != "creating" and e.name not in present
            ]
        for name in gone:
            step = self._transition(partial(leases.forget_engine, name=name))
            self._run(step.commands)
        return gone

    # internals

    def _gather(self) -> inventory.Inventory:
        """Every object in scope, from labels (the seam another backend overrides)."""
        return inventory.gather(self.client)

    def _transition(self, change: Callable[[leases.State], leases.Step]) -> leases.Step:
        with self._lock:
            step = change(self._state)
            self._state = step.state
        return step

    @staticmethod
    def _lease_of(step: leases.Step) -> leases.Lease:
        if isinstance(step.outcome, leases.Refused):
            raise PoolError(step.outcome.status, step.outcome.message, step.outcome.fix or None)
        assert isinstance(step.outcome, leases.Granted)
        return step.outcome.lease

    def _grant(self, lease: leases.Lease, bundle: dict[str, bytes]) -> Grant:
        environment = {
            "DOCKER_HOST": f"tcp://{lease.engine}:{TLS_PORT}",
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(self.certs / lease.id),
        }
        pems = {name: data.decode() for name, data in bundle.items()}
        network = self.configs[lease.pool].network_name
        return Grant(lease, network, environment, pems, self.held(lease.engine))

    def _refill_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refill()
            except Exception:
                log.exception("refill failed")
            self._wake.wait(timeout=2.0)
            self._wake.clear()

    def _reap_loop(self) -> None:
        last_gc = self.clock()
        while not self._stop.wait(self.reap_every):
            try:
                self._heartbeat()
            except ClaimLostError as exc:
                log.error("stopping: %s", exc)
                self.lost = str(exc)
                self._stop.set()
                self.on_lost(self.lost)
                return
            try:
                self.reap()
                if self.clock() - last_gc >= self.gc_every:
                    last_gc = self.clock()
                    self.check_engines()
                    self.gc()
            except Exception:
                log.exception("reaper failed")

    def _settle(self, command: leases.CreateEngine) -> None:
        """Create an engine, then finish the lease waiting for it (if any) or let it idle."""
        ok = self._create(command)
        if not ok:
            self._retry_at = self.clock() + 10.0  # a host that cannot start engines: back off
        step = self._transition(lambda s: leases.created(s, command.name, ok=ok, now=self.clock()))
        outcome = step.outcome
        lease_id = outcome.lease.id if isinstance(outcome, leases.Granted) else None
        lease_id = outcome.lease_id if isinstance(outcome, leases.Refused) else lease_id
        waiter = self._waiting.pop(lease_id or "", None)
        if waiter is None:
            self._run(step.commands)
            if lease_id in self._abandoned:
                self._abandoned.discard(lease_id)
                self.release(lease_id)
        else:
            try:
                waiter.set_result(self._finish(step))
            except Exception as exc:
                waiter.set_exception(exc)
        self._wake.set()

    def _run(self, commands: Sequence[leases.Command], *, strict: bool = False) -> dict[str, bytes]:
        """Carry out commands in order; a failure stops the batch (and raises if strict).
        Returns the certificate bundle an IssueCert made, if any."""
        bundle: dict[str, bytes] = {}
        for index, command in enumerate(commands):
            try:
                bundle |= self._apply(command)
            except (DockyardError, docker_api.APIError, OSError) as exc:
                log.error("%s failed: %s", describe(command), exc)
                if strict:
                    raise PoolError(500, f"{describe(command)} failed: {exc}") from exc
                rest = commands[index:]
                if all(isinstance(c, leases.REMOVALS) for c in rest):
                    log.warning("will retry: %s", ", ".join(describe(c) for c in rest))
                    with self._retries_lock:
                        self._retries.extend(rest)
                break
        return bundle

    def _apply(self, command: leases.Command) -> dict[str, bytes]:
        api = self.client.api
        match command:
            case leases.CreateEngine():
                self._settle(command)
            case leases.DestroyEngine(name=name, volume=volume, keep_volume=keep):
                self._held.pop(name, None)
                with contextlib.suppress(DockyardError):
                    service.rm(name, client=self.client)
                pki.PkiStore().remove_issuer(name)
                if not keep:
                    _quietly(api.remove_volume, volume, force=True)
            case leases.WriteMarker(lease=lease):
                api.create_volume(lease.marker, labels=inventory.marker_labels(lease))
            case leases.DeleteMarker(name=name):
                _quietly(api.remove_volume, name, force=True)
            case leases.IssueCert(lease=lease):
                return self._issue(lease)
            case leases.RemoveCert(lease_id=lease_id):
                shutil.rmtree(self.certs / lease_id, ignore_errors=True)
        return {}

    def _issue(self, lease: leases.Lease) -> dict[str, bytes]:
        """A client certificate only the lease's engine trusts (its own issuer signs it)."""
        bundle = lease_bundle(lease, lease.engine)
        write_bundle(self.certs / lease.id, bundle)
        return bundle

    def _create(self, command: leases.CreateEngine) -> bool:
        """Make the engine (and its data volume); False when it could not start."""
        pool = self.configs.get(command.pool)
        if pool is None:
            return False
        api = self.client.api
        now = str(int(self.clock()))
        try:
            if command.new_cache is not None:
                cache = command.new_cache
                api.create_volume(
                    cache.volume,
                    labels=labels.managed(
                        inventory.ROLE_POOL_CACHE,
                        pool=cache.pool,
                        cache_key=cache.key,
                        index=str(cache.index),
                        created=now,
                        max_age=str(pool.keyed.max_age),
                        max_count=str(pool.keyed.max_count),
                    ),
                )
            elif command.cache_key is None:
                api.create_volume(
                    command.volume,
                    labels=labels.managed(
                        inventory.ROLE_POOL_DATA, pool=pool.name, engine=command.name
                    ),
                )
            extra = inventory.engine_labels(
                pool.name, warm=pool.warm, created=now, cache_key=command.cache_key
            )
            options = config.validate(
                config.EngineOptions,
                {
                    "name": command.name,
                    "network": pool.network_name,
                    "cache": command.volume,
                    "image": self._images.get(pool.name),
                    "cpus": pool.cpus,
                    "memory": pool.memory,
                    "pids": pool.pids,
                    "ready_timeout": pool.ready_timeout,
                    "extra_labels": extra,
                    **engine_registries(pool, self._mirrors.get(pool.name)),
                },
            )
            service.create(options, client=self.client)
            self._seed(pool, command.name)
        except Exception as exc:  # any failure must settle the engine as failed
            # Left uncaught, the engine would stay "creating" for good and count against max.
            log.error("engine %s of pool %s failed to start: %s", command.name, pool.name, exc)
            return False
        return True

    def _seed(self, pool: PoolConfig, engine: str) -> None:
        """Pull the pool's seed into a warm engine before it is ready; an engine a lease is
        already waiting for (a cold start) goes out unseeded, so no lease waits for a pull."""
        with self._lock:
            waited_for = engine in self._state.reserved()
        if pool.seed and not waited_for:
            self._held[engine] = tuple(mirror.pull(self.client, engine, pool.seed))

    def _image(self, pool: PoolConfig) -> str:
        """Resolved once per pool, not per engine: a failed pull must not slow every lease."""
        from dockyard.images import resolve

        return resolve.image(
            self.client,
            pool.image or os.environ.get("DOCKYARD_ENGINE_IMAGE"),
            official=config.OFFICIAL_ENGINE_IMAGE,
            role="engine",
            progress=log.info,
        )

    def _ensure_network(self, pool: PoolConfig) -> None:
        try:
            self.client.api.inspect_network(pool.network_name)
        except docker_api.NotFound:
            self.client.api.create_network(
                pool.network_name,
                driver="bridge",
                labels=labels.managed(labels.ROLE_NETWORK, pool=pool.name),
            )


def engine_registries(pool: PoolConfig, cache: mirror.Mirror | None) -> dict[str, Any]:
    """A pool engine's registry options: the pool's plain-HTTP registries and its mirror's."""
    found = mirror.engine_settings(cache)
    trusted = (*pool.insecure_registries, *found.get("insecure_registries", ()))
    return found | ({"insecure_registries": trusted} if trusted else {})


def lease_bundle(lease: leases.Lease, issuer: str) -> dict[str, bytes]:
    """The lease's client directory: the host CA, and a certificate from ``issuer`` (the
    lease's engine's own, so it opens that engine only)."""
    store = pki.PkiStore()
    issued = pki.issue_client(store.issuer(issuer), f"lease-{lease.id}", now=datetime.now(UTC))
    return {pki.CA_CERT: store.ca().cert_pem, pki.CERT: issued.cert_pem, pki.KEY: issued.key_pem}


def write_bundle(directory: Path, bundle: dict[str, bytes]) -> None:
    """A DOCKER_CERT_PATH: directory 0700, key 0600, the key written first."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    for name in sorted(bundle, key=lambda n: n != pki.KEY):
        state.write_private(directory / name, bundle[name], 0o600 if name == pki.KEY else 0o644)


def describe(command: leases.Command) -> str:
    match command:
        case leases.CreateEngine(name=name, pool=pool):
            return f"create engine {name} (pool {pool})"
        case leases.DestroyEngine(name=name, volume=volume, keep_volume=keep):
            return f"remove engine {name}" + ("" if keep else f" and volume {volume}")
        case leases.WriteMarker(lease=lease):
            return f"write lease marker {lease.marker}"
        case leases.DeleteMarker(name=name):
            return f"remove lease marker {name}"
        case leases.IssueCert(lease=lease):
            return f"issue certificate of lease {lease.id}"
        case leases.RemoveCert(lease_id=lease_id):
            return f"remove certificates of lease {lease_id}"
    raise AssertionError(command)


def _tokens() -> Iterator[str]:
    while True:
        yield secrets.token_hex(6)


def _quietly(action: Callable[..., object], *args: object, **kwargs: object) -> None:
    with contextlib.suppress(docker_api.NotFound):
        action(*args, **kwargs)
