"""Load: 20 concurrent leases on this 2-core machine, each building an image in its engine."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from dockyard.engine import service as engine_service

pytestmark = pytest.mark.docker

JOBS = 20
BUILD = (
    "printf 'FROM dockyard/base:0.1\\nRUN echo {n} > /job\\n' | "
    "DOCKER_BUILDKIT=0 docker build -q -t load:{n} - && docker run --rm load:{n} cat /job"
)


def test_twenty_concurrent_leases_each_build_an_image(
    make_pool, job, tools, docker_client, base_image
):
    svc, pool = make_pool(warm=4, max=JOBS, ttl="15m")
    tools.wait_for(lambda: tools.idle(svc, pool) == 4, what="four warm engines")

    def one(n):
        started = time.perf_counter()
        grant = svc.lease(pool)
        leased = time.perf_counter() - started
        engine_service.seed(grant.lease.engine, [base_image], client=docker_client)
        built = tools.sh(docker_client, job(grant), BUILD.format(n=n))
        svc.release(grant.lease.id)
        return n, leased, built

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(JOBS) as workers:
        results = list(workers.map(one, range(JOBS)))
    total = time.perf_counter() - started
    for n, _, built in results:
        assert built.code == 0, built.output
        assert built.output.strip().splitlines()[-1] == str(n)
    waits = sorted(leased for _, leased, _ in results)
    print(
        f"{JOBS} leases + builds in {total:.1f} s; lease wait median {waits[JOBS // 2]:.2f} s, "
        f"max {waits[-1]:.2f} s"
    )
    assert svc.list_leases() == []
