"""Leases from warm engine pods on the real test cluster, through the same pool service."""

from __future__ import annotations

import time

import pytest

from dockyard import labels
from dockyard.kube.pool import KubePoolService
from dockyard.pool.config import PoolConfig

pytestmark = [pytest.mark.docker, pytest.mark.kube]
IMAGE = "dockyard/engine:0.1"
MARK = "mkdir -p /tmp/b && cd /tmp/b && echo {0} >f && printf 'FROM scratch\\nCOPY f /f\\n' >D"
BUILD = MARK + " && DOCKER_BUILDKIT=0 docker build -q -f D -t {0}:1 . >/dev/null"


def managed_left(cluster) -> list[str]:
    found = []
    for kind in ("pod", "service", "secret", "persistent_volume_claim"):
        items = getattr(cluster.core, f"list_namespaced_{kind}")(
            cluster.namespace, label_selector=f"{labels.MANAGED}=true"
        ).items
        found += [f"{kind}/{i.metadata.name}" for i in items if not i.metadata.deletion_timestamp]
    return found


@pytest.fixture
def pool(cluster, tmp_path):
    made = []

    def start(**settings) -> KubePoolService:
        config = PoolConfig(name=settings.pop("name", "ci"), image=IMAGE, **settings)
        svc = KubePoolService([config], cluster, certs=tmp_path / "certs", gc_grace=0)
        svc.start()
        made.append(svc)
        return svc

    yield start
    for svc in made:
        svc.stop()


def wait_warm(svc, pool="ci", count=1, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.pools()[0]["idle"] >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"pool {pool} never had {count} warm engine(s): {svc.pools()}")


def job_env(grant):
    return {k: v for k, v in grant.environment.items() if k.startswith("DOCKER_")}


def test_warm_lease_job_builds_stranger_refused_release_closes(cluster, pool, jobs, unique):
    svc = pool(warm=2, max=3)
    wait_warm(svc, count=2)
    started = time.monotonic()
    first = svc.lease("ci", owner="uid:0")
    took = time.monotonic() - started
    assert took < 1.0, f"a warm lease took {took:.2f} s"
    second = svc.lease("ci", owner="uid:0")
    assert first.lease.engine != second.lease.engine
    secret = first.environment["DOCKYARD_CLIENT_SECRET"]
    code, log = jobs.run_job(cluster, unique("job"), BUILD.format("one"), job_env(first), secret)
    assert code == 0, log
    # Two leases are isolated: the first lease's certificate does not open the second engine.
    crossed = job_env(first) | {"DOCKER_HOST": second.environment["DOCKER_HOST"]}
    code, log = jobs.run_job(cluster, unique("cross"), "docker version", crossed, secret)
    assert code != 0
    assert "certificate" in log.lower() or "tls" in log.lower() or "bad" in log.lower(), log
    # No certificate at all: refused.
    plain = {"DOCKER_HOST": first.environment["DOCKER_HOST"]}
    code, _ = jobs.run_job(cluster, unique("plain"), "docker version", plain, None)
    assert code != 0
    # A job that kept its certificate (here: a copy in a Secret of its own) after release.
    kept = unique("kept")
    cluster.core.create_namespaced_secret(
        cluster.namespace, {"metadata": {"name": kept}, "stringData": first.certificates}
    )
    svc.release(first.lease.id, caller="uid:0")
    svc.release(second.lease.id, caller="uid:0")
    # Released: the engine is gone and its issuer with it, so the certificate opens nothing.
    code, _ = jobs.run_job(cluster, unique("after"), "docker version", job_env(first), kept)
    assert code != 0


def registry_pod(cluster, name: str, timeout: float = 120) -> str:
    """dockyard's registry image as a pod behind a Service; returns HOST:PORT by cluster IP
    (the test cluster runs no DNS add-on)."""
    own = {labels.MANAGED: "true", "app": name}
    cluster.core.create_namespaced_pod(
        cluster.namespace,
        {
            "metadata": {"name": name, "labels": own},
            "spec": {
                "containers": [
                    {
                        "name": "registry",
                        "image": "dockyard/registry:0.1",
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": 5000}],
                        "readinessProbe": {"tcpSocket": {"port": 5000}, "periodSeconds": 1},
                    }
                ]
            },
        },
    )
    svc = cluster.core.create_namespaced_service(
        cluster.namespace,
        {
            "metadata": {"name": name, "labels": {labels.MANAGED: "true"}},
            "spec": {"selector": {"app": name}, "ports": [{"port": 5000, "targetPort": 5000}]},
        },
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cluster.core.read_namespaced_pod(name, cluster.namespace)
        if any(c.type == "Ready" and c.status == "True" for c in found.status.conditions or []):
            return f"{svc.spec.cluster_ip}:5000"
        time.sleep(0.5)
    raise AssertionError(f"registry pod {name} never became ready: {found.status}")


def test_a_job_builds_and_pushes_to_a_registry_pod_another_lease_pulls_it(
    cluster, pool, jobs, unique
):
    registry = registry_pod(cluster, unique("registry"))
    svc = pool(warm=2, max=2, insecure_registries=(registry,))
    wait_warm(svc, count=2)
    pusher = svc.lease("ci", owner="uid:0")
    tag = f"{registry}/pushed:1"
    push = MARK.format("pushed") + f" && DOCKER_BUILDKIT=0 docker build -q -f D -t {tag} ."
    push += f" && docker push {tag}"
    secret = pusher.environment["DOCKYARD_CLIENT_SECRET"]
    code, log = jobs.run_job(cluster, unique("push"), push, job_env(pusher), secret)
    assert code == 0, log
    # Another engine has never seen the image: it can only come from the registry pod.
    puller = svc.lease("ci", owner="uid:0")
    assert puller.lease.engine != pusher.lease.engine
    pull = f"docker pull -q {tag} && docker image inspect -f '{{{{.Id}}}}' {tag}"
    secret = puller.environment["DOCKYARD_CLIENT_SECRET"]
    code, log = jobs.run_job(cluster, unique("pull"), pull, job_env(puller), secret)
    assert code == 0, log
    assert "sha256:" in log, log
    svc.release(pusher.lease.id, caller="uid:0")
    svc.release(puller.lease.id, caller="uid:0")


def test_keyed_cache_reused_by_the_same_key_only(cluster, pool, jobs, unique):
    svc = pool(warm=0, max=2, cache="keyed")
    check = (
        "docker image ls --format '{{{{.Repository}}}}' | grep -x {0} && echo FOUND || echo NONE"
    )
    grant = svc.lease("ci", cache_key="repo-a", owner="uid:0")
    secret = grant.environment["DOCKYARD_CLIENT_SECRET"]
    code, log = jobs.run_job(cluster, unique("a1"), BUILD.format("keep"), job_env(grant), secret)
    assert code == 0, log
    svc.release(grant.lease.id, caller="uid:0")
    again = svc.lease("ci", cache_key="repo-a", owner="uid:0")
    secret = again.environment["DOCKYARD_CLIENT_SECRET"]
    code, log = jobs.run_job(cluster, unique("a2"), check.format("keep"), job_env(again), secret)
    assert "FOUND" in log, log
    other = svc.lease("ci", cache_key="repo-b", owner="uid:0")
    secret = other.environment["DOCKYARD_CLIENT_SECRET"]
    code, log = jobs.run_job(cluster, unique("b1"), check.format("keep"), job_env(other), secret)
    assert "NONE" in log, log
    svc.release(again.lease.id, caller="uid:0")
    svc.release(other.lease.id, caller="uid:0")


def test_restart_recovers_a_lease_and_gc_after_a_crash_leaves_nothing(cluster, pool, tmp_path):
    svc = pool(warm=1, max=2)
    wait_warm(svc)
    grant = svc.lease("ci", owner="uid:0")
    # The service stops with nothing cleaned up: like kill -9, only labels remain.
    svc.stop()
    again = pool(warm=1, max=2)
    assert [x.id for x in again.list_leases()] == [grant.lease.id]
    assert again.get(grant.lease.id).engine == grant.lease.engine
    again.release(grant.lease.id, caller="uid:0")
    again.stop()
    # The pools are gone from the config: gc removes everything of theirs in the namespace.
    last = KubePoolService([], cluster, certs=tmp_path / "certs", gc_grace=0)
    last.start(background=False)
    deadline = time.monotonic() + 30
    while managed_left(cluster) and time.monotonic() < deadline:
        last.gc()
        time.sleep(1)
    assert managed_left(cluster) == []
