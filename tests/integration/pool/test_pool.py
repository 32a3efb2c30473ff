"""Leases on the real host engine: warm grants, isolation, revocation, keyed caches."""

from __future__ import annotations

import time

import pytest

from dockyard import docker_api
from dockyard.engine import service as engine_service
from dockyard.pool.service import PoolError

pytestmark = pytest.mark.docker

DOCKERFILE = "FROM dockyard/base:0.1\\nRUN echo cached > /layer\\n"


def test_warm_leases_are_isolated_and_revoked_on_release(
    tools, make_pool, job, docker_client, base_image
):
    svc, pool = make_pool(warm=2, max=3, ttl="10m")
    tools.wait_for(lambda: tools.idle(svc, pool) == 2, what="two warm engines")

    started = time.perf_counter()
    a = svc.lease(pool, owner="test")
    warm_ms = (time.perf_counter() - started) * 1000
    b = svc.lease(pool)
    print(f"warm lease: {warm_ms:.1f} ms")
    assert a.lease.engine != b.lease.engine
    assert a.environment["DOCKER_HOST"] == f"tcp://{a.lease.engine}:2376"
    assert a.environment["DOCKER_TLS_VERIFY"] == "1"
    assert set(a.certificates) == {"ca.pem", "cert.pem", "key.pem"}
    tools.assert_cert_files(a)
    assert {lease.id for lease in svc.list_leases()} == {a.lease.id, b.lease.id}

    engine_service.seed(a.lease.engine, [base_image], client=docker_client)
    job_a, job_b = job(a), job(b)
    made = tools.sh(
        docker_client,
        job_a,
        "docker run -d --name secret-a dockyard/base:0.1 sleep 300 && docker volume create vol-a",
    )
    assert made.code == 0, made.output
    seen = tools.sh(
        docker_client,
        job_b,
        "docker ps -a --format '{{.Names}}'; docker volume ls -q; docker images -q",
    )
    assert seen.code == 0, seen.output
    assert seen.output.strip() == ""
    # B's certificate opens only B's engine.
    cross = tools.sh(docker_client, job_b, f"DOCKER_HOST=tcp://{a.lease.engine}:2376 docker ps")
    assert cross.code != 0

    svc.release(a.lease.id)
    assert a.lease.engine not in {e.name for e in engine_service.ls(docker_client)}
    # After release, A's certificate opens nothing: not B's engine, not a refilled one.
    tools.wait_for(lambda: tools.idle(svc, pool) >= 1, what="a refill")
    for engine in (b.lease.engine, *_idle_engines(docker_client, pool)):
        probe = tools.sh(docker_client, job_a, f"DOCKER_HOST=tcp://{engine}:2376 docker ps")
        assert probe.code != 0, probe.output
    svc.release(b.lease.id)
    assert svc.list_leases() == []


def _idle_engines(docker_client, pool):
    return [
        e.name for e in engine_service.ls(docker_client) if e.name.startswith(f"dockyard-{pool}-")
    ]


def test_requests_are_refused_with_status_and_fix(make_pool):
    svc, pool = make_pool(warm=0, max=1, ttl="1m", max_ttl="5m")
    with pytest.raises(PoolError) as unknown:
        svc.lease("nope")
    assert unknown.value.status == 404
    with pytest.raises(PoolError) as long:
        svc.lease(pool, ttl=3600)
    assert long.value.status == 400
    assert "ttl_seconds" in long.value.message
    cold = svc.lease(pool)  # nothing warm: made on demand
    with pytest.raises(PoolError) as full:
        svc.lease(pool)
    assert full.value.status == 503
    assert full.value.fix
    renewed = svc.renew(cold.lease.id, 120)
    assert renewed.expires_at > cold.lease.expires_at


def test_keyed_cache_survives_the_lease_and_never_crosses_keys(
    tools, make_pool, job, docker_client, base_image
):
    svc, pool = make_pool(warm=0, max=2, cache="keyed")
    build = (
        f"mkdir -p /w && printf '{DOCKERFILE}' > /w/Dockerfile && "
        "DOCKER_BUILDKIT=0 docker build -t cached:1 /w"
    )

    first = svc.lease(pool, cache_key="org/repo")
    engine_service.seed(first.lease.engine, [base_image], client=docker_client)
    built = tools.sh(docker_client, job(first), build)
    assert built.code == 0, built.output
    svc.release(first.lease.id)

    again = svc.lease(pool, cache_key="org/repo")
    assert again.lease.engine != first.lease.engine
    other = svc.lease(pool, cache_key="org/other")
    has_it = tools.sh(
        docker_client, job(again), "docker image inspect cached:1 >/dev/null && " + build
    )
    assert has_it.code == 0, has_it.output
    assert "Using cache" in has_it.output
    lacks_it = tools.sh(docker_client, job(other), "docker image inspect cached:1")
    assert lacks_it.code != 0


def test_recovery_after_restart_keeps_leases_and_warm_engines(
    tools, make_pool, docker_client, engine_image
):
    from dockyard.pool import service
    from dockyard.pool.config import PoolConfig

    svc, pool = make_pool(warm=1, max=2)
    tools.wait_for(lambda: tools.idle(svc, pool) == 1, what="a warm engine")
    held = svc.lease(pool)
    renewed = svc.renew(held.lease.id, 7200)
    svc.stop()  # as after a crash: nothing is saved but labels

    again = service.PoolService([PoolConfig(name=pool, image=engine_image)], client=docker_client)
    again.start(background=False)
    try:
        assert again.list_leases() == [renewed]
        again.release(held.lease.id)
    finally:
        again.stop()


def test_a_release_whose_engine_removal_fails_is_retried_by_the_reaper(
    tools, make_pool, docker_client, monkeypatch
):
    svc, pool = make_pool(warm=1, max=2, ttl="10m", reap_every=3600)  # reaped by the test
    tools.wait_for(lambda: tools.idle(svc, pool) == 1, what="a warm engine")
    grant = svc.lease(pool)
    real_rm, failures = engine_service.rm, []

    def failing_once(name, **kwargs):
        if not failures:
            failures.append(name)
            raise docker_api.APIError("dockerd hiccup")
        return real_rm(name, **kwargs)

    monkeypatch.setattr(engine_service, "rm", failing_once)
    svc.release(grant.lease.id)
    assert failures == [grant.lease.engine]
    assert grant.lease.engine in {e.name for e in engine_service.ls(docker_client)}
    svc.reap()
    assert grant.lease.engine not in {e.name for e in engine_service.ls(docker_client)}
    markers = docker_client.api.volumes(filters={"name": grant.lease.marker})["Volumes"] or []
    assert markers == []


def test_two_leases_of_the_last_warm_engine_one_wins(make_pool, tools):
    """Two jobs at once, one warm engine, max 1: one gets it, the other is told why."""
    import concurrent.futures

    svc, pool = make_pool(warm=1, max=1)
    tools.wait_for(lambda: tools.idle(svc, pool) == 1, what="a warm engine")

    def ask():
        try:
            return svc.lease(pool)
        except PoolError as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        results = list(threads.map(lambda _: ask(), range(2)))
    granted = [r for r in results if not isinstance(r, PoolError)]
    refused = [r for r in results if isinstance(r, PoolError)]
    assert len(granted) == 1
    assert len(refused) == 1
    assert "at its maximum of 1 engines and none is idle" in str(refused[0])
    assert len(svc.list_leases()) == 1
    svc.release(granted[0].lease.id)
