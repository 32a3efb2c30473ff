"""A pool's engines pull through the cache: the upstream serves each blob once, a seeded warm
engine holds its image before the lease, and the cache keeps serving when the upstream is gone."""

from __future__ import annotations

import pytest

from dockyard.engine import client as engine_client
from dockyard.mirror import plan, upstream
from dockyard.mirror import service as mirror

pytestmark = pytest.mark.docker

BUILD = "printf 'FROM t14:1\\nRUN echo built > /built\\n' | docker build -q -"


def in_engine(docker_client, engine, script):
    return engine_client.run(docker_client, engine, ["sh", "-c", script])


def test_ten_leases_pull_through_one_cache_and_seeded_engines_are_warm(
    hub, tools, make_pool, docker_client
):
    cache = {"upstream": hub.url, "max_size": "1g"}
    svc, pool = make_pool(warm=1, max=2, network=hub.network, mirror=cache)
    name = plan.name_of(hub.url)

    for index in range(10):
        tools.wait_for(lambda: tools.idle(svc, pool) >= 1, what="a warm engine")
        grant = svc.lease(pool)
        # Docker Hub names go through --registry-mirror: t14:1 is docker.io/library/t14:1.
        pulled = in_engine(docker_client, grant.lease.engine, f"docker pull -q t14:1 && {BUILD}")
        assert pulled.code == 0, pulled.output
        if index == 0:
            # A Hub name the mirror lacks: dockerd falls back to docker.io (unreachable here),
            # and reports that. Named through the cache, the registry's own error comes back.
            hub_name = in_engine(docker_client, grant.lease.engine, "docker pull t14:nope")
            assert hub_name.code != 0
            direct = f"docker pull {plan.address(name)}/library/t14:nope"
            missing = in_engine(docker_client, grant.lease.engine, direct)
            assert missing.code != 0
            assert "manifest unknown" in missing.output or "not found" in missing.output
            by_name = f"docker pull -q {plan.address(name)}/library/t14:1"
            assert in_engine(docker_client, grant.lease.engine, by_name).code == 0
            first = upstream.downloads(upstream.log(docker_client, hub))
        svc.release(grant.lease.id)

    downloads = upstream.downloads(upstream.log(docker_client, hub))
    assert downloads, "the upstream served nothing: the pulls did not go through it"
    # Fetched on the first miss only (distribution 2.8 fetches a missed blob twice: one copy
    # streamed to the engine, one stored), never again for the nine other leases.
    assert downloads == first, (first, downloads)
    assert max(downloads.values()) <= 2, downloads
    report = next(p for p in svc.pools() if p["name"] == pool)["mirror"]
    assert report["name"] == name
    assert report["hits"] >= 9, report
    assert report["misses"] >= 1, report
    assert 0 < report["size"] <= report["max_size"]

    # A seeded pool on the same host shares the cache: its warm engine pulls while it waits.
    seeded, seeded_pool = make_pool(
        warm=1, max=1, network=hub.network, mirror=cache, seed=["t14:1"]
    )
    tools.wait_for(lambda: tools.idle(seeded, seeded_pool) == 1, what="a seeded warm engine")
    engines = next(p for p in seeded.pools() if p["name"] == seeded_pool)["engines"]
    assert engines[0]["images"] == ["t14:1"]
    grant = seeded.lease(seeded_pool)
    assert grant.images == ("t14:1",)
    local = in_engine(docker_client, grant.lease.engine, "docker image inspect -f ok t14:1")
    assert local.code == 0, local.output
    assert upstream.downloads(upstream.log(docker_client, hub)) == first

    # The upstream goes away: what the cache holds is still served.
    upstream.remove(docker_client, hub)
    tools.wait_for(lambda: tools.idle(svc, pool) >= 1, what="a warm engine")
    late = svc.lease(pool)
    again = in_engine(docker_client, late.lease.engine, f"docker pull -q t14:1 && {BUILD}")
    assert again.code == 0, again.output
    # ... and what it does not hold fails with the registry's error, the cache still up.
    gone = in_engine(
        docker_client, late.lease.engine, f"docker pull {plan.address(name)}/library/absent:1"
    )
    assert gone.code != 0
    assert "manifest unknown" in gone.output or "not found" in gone.output, gone.output
    assert mirror.report(docker_client, name)["state"] == "running"


def test_a_stack_engine_is_seeded_through_the_hosts_cache(hub, docker_client, engine_image):
    from dockyard import config
    from dockyard.stack import apply
    from dockyard.stack import status as stack_status

    cache = {"upstream": hub.url, "max_size": "1g"}
    name = f"st-{hub.name[-6:]}"
    cfg = config.validate(
        config.StackConfig,
        {"name": name, "registry": {"enabled": False}, "mirror": cache, "seed": ["t14:1"]},
    )
    # The cache reaches the upstream on the upstream's network (on a real host: any network);
    # up joins that same cache to the stack's network.
    found = mirror.ensure(docker_client, cfg.mirror, hub.network)
    try:
        report = apply.up(cfg, client=docker_client)
        assert ("mirror", found.name, "ensured") in [
            (a.component, a.name, a.action) for a in report.actions
        ]
        held = in_engine(docker_client, f"{name}-engine", "docker image inspect -f ok t14:1")
        assert held.code == 0, held.output
        shown = stack_status.status(name, docker_client).components
        (cached,) = [c for c in shown if c.component == "mirror"]
        assert cached.name == found.name
        assert cached.health == "ok", cached
        assert hub.url in cached.detail
    finally:
        apply.down(name, volumes=True, client=docker_client)
    after = docker_client.api.inspect_container(found.name)
    assert name not in after["NetworkSettings"]["Networks"]  # detached, the cache kept
    assert after["State"]["Running"]
