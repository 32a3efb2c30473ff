"""Per-job engines from a warm pool, side by side with a fresh engine per job, in one run.

- warm lease: ``PoolService.lease`` when an idle engine waits (marker + certificate), p50/p99;
- cold lease: a pool with nothing warm (the engine is created for the request);
- baseline: ``engine create`` + ``engine rm`` per job, the way a fresh-DinD-per-job CI does it;
- idle memory of one pool engine (RSS of its processes, from the host's /proc);
- reclaim: 50 pool engines left without leases or serve (a crashed control plane), timed gc.

Standalone: ``python -m benchmarks.pool_lease [--runs N]``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from pathlib import Path

from dockyard import config, docker_api
from dockyard.engine import host, service
from dockyard.images import builder
from dockyard.pool import gc
from dockyard.pool.config import PoolConfig
from dockyard.pool.service import PoolService, cert_root

LEAKED = 50


def _wait_idle(svc: PoolService, pool: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while next(p for p in svc.pools() if p["name"] == pool)["idle"] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pool {pool} did not reach {count} idle engines")
        time.sleep(0.05)


def lease_latencies(
    client: docker_api.DockerClient, image: str, runs: int, *, warm: int
) -> list[float]:
    """Time ``runs`` leases from a pool keeping ``warm`` engines idle (0: every lease cold)."""
    pool = f"b{'w' if warm else 'c'}{secrets.token_hex(3)}"
    svc = PoolService([PoolConfig(name=pool, image=image, warm=warm, max=4)], client=client)
    svc.start()
    samples = []
    try:
        for _ in range(runs):
            if warm:
                _wait_idle(svc, pool, 1)
            started = time.perf_counter()
            grant = svc.lease(pool)
            samples.append(time.perf_counter() - started)
            svc.release(grant.lease.id)
    finally:
        _drain(client, svc, pool)
    return samples


def fresh_engine_per_job(client: docker_api.DockerClient, image: str, runs: int) -> list[float]:
    """The baseline: create an engine for the job, remove it (and its volume) after."""
    samples = []
    for _ in range(runs):
        name = f"bench-job-{secrets.token_hex(3)}"
        started = time.perf_counter()
        service.create(config.EngineOptions(name=name, image=image), client=client)
        samples.append(time.perf_counter() - started)
        service.rm(name, volumes=True, client=client)
    return samples


def idle_memory_mib(client: docker_api.DockerClient, image: str) -> float:
    pool = f"bm{secrets.token_hex(3)}"
    svc = PoolService([PoolConfig(name=pool, image=image, warm=1, max=1)], client=client)
    svc.start()
    try:
        _wait_idle(svc, pool, 1)
        time.sleep(5)  # let start-up transients settle
        (engine,) = [e for e in service.ls(client) if e.name.startswith(f"dockyard-{pool}-")]
        top = client.api.top(engine.container, ps_args="-eo pid,comm")
        kib = 0
        for pid, _ in top["Processes"]:
            status = Path(f"/proc/{pid}/status").read_text()
            kib += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
        return kib / 1024
    finally:
        _drain(client, svc, pool)


def reclaim_leaked(client: docker_api.DockerClient, image: str) -> tuple[float, int]:
    """50 pool engines whose serve is gone: how long gc takes to remove them all."""
    pool = f"br{secrets.token_hex(3)}"
    svc = PoolService(
        [PoolConfig(name=pool, image=image, warm=LEAKED, max=LEAKED)], client=client, workers=4
    )
    svc.start()
    try:
        _wait_idle(svc, pool, LEAKED, timeout=900)
    finally:
        svc.stop()  # as if killed: the engines stay, nobody serves the pool
    started = time.perf_counter()
    removed = gc.run(client, now=time.time(), certs=cert_root(), pool=pool, grace=0)
    return time.perf_counter() - started, sum(r.kind == "engine" for r in removed)


def _drain(client: docker_api.DockerClient, svc: PoolService, pool: str) -> None:
    for lease in svc.list_leases():
        svc.release(lease.id)
    svc.stop()
    gc.run(client, now=time.time(), certs=cert_root(), pool=pool, grace=0)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(runs: int) -> None:
    client = docker_api.connect()
    image = builder.ensure("engine")
    host.privilege_decision(client, image)  # probe once outside the timings
    samples = max(runs, 5)
    print(f"per-job engines: {samples * 4} warm leases, {samples} cold, {samples} fresh engines")
    warm = lease_latencies(client, image, samples * 4, warm=2)
    cold = lease_latencies(client, image, samples, warm=0)
    fresh = fresh_engine_per_job(client, image, samples)
    rows = [
        ("warm lease", warm),
        ("cold lease (nothing idle)", cold),
        ("fresh engine per job", fresh),
    ]
    print(f"\n{'way to get an engine':<28}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for label, values in rows:
        print(
            f"{label:<28}{_pct(values, 0.5) * 1000:>10.1f}{_pct(values, 0.99) * 1000:>10.1f}"
            f"{max(values) * 1000:>10.1f}"
        )
    p50 = _pct(warm, 0.5)
    print(
        f"fresh engine per job / warm lease (p50): {statistics.median(fresh) / p50:.0f}x; "
        f"cold / warm: {statistics.median(cold) / p50:.0f}x"
    )
    print(f"target: warm lease <= 50 ms: {'met' if _pct(warm, 0.99) <= 0.05 else 'NOT met'} (p99)")
    print(f"\nidle memory of one pool engine: {idle_memory_mib(client, image):.0f} MiB RSS")
    seconds, count = reclaim_leaked(client, image)
    print(
        f"gc reclaimed {count} leaked engines in {seconds:.1f} s "
        f"({seconds / max(count, 1) * 1000:.0f} ms each)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="samples (warm: 4x as many)")
    main(parser.parse_args().runs)
