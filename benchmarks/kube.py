"""Engines as pods on the test cluster (scripts/test-cluster.sh), side by side in one run:

- dockyard: ``KubeBackend.apply``: Service, certificates issued on this host, Secrets, pod;
  ready when the pod's Ready condition turns True, i.e. its probe's TLS-verified call to its
  own name passed (watched, not polled).
- arc-style: what ARC and most CI guides run: a privileged ``docker:dind``-style pod, plaintext
  TCP on 2375 (with ``--tls=false``, so without dockerd's 15 s plaintext delay), ready when
  ``docker version`` answers in a readiness probe.

Both use the same image, node and probe period (1 s), so the difference is the design. Idle
memory is read from each pod's memory cgroup on the node (shared with this host's cgroup tree).
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from dockyard.kube import manifests
from dockyard.kube.backend import KubeBackend
from dockyard.kube.cluster import Cluster, connect

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "dockyard/engine:0.1"
CGROUP_ROOT = Path("/sys/fs/cgroup/memory") / os.environ.get(
    "DOCKYARD_TEST_CLUSTER", "dockyard-test-cluster"
)


def _kubeconfig() -> str:
    if os.environ.get("DOCKYARD_KUBECONFIG"):
        return os.environ["DOCKYARD_KUBECONFIG"]
    done = subprocess.run(
        [str(ROOT / "scripts" / "test-cluster.sh"), "up"],
        capture_output=True,
        text=True,
        check=True,
    )
    return next(x for x in done.stdout.splitlines() if x.startswith("KUBECONFIG=")).split("=")[1]


def arc_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"io.dockyard.managed": "true"}},
        "spec": {
            "containers": [
                {
                    "name": "dind",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["dockerd"],
                    "args": [
                        "--host=tcp://0.0.0.0:2375",
                        "--tls=false",
                        "--storage-driver=overlay2",
                    ],
                    "securityContext": {"privileged": True},
                    "readinessProbe": {
                        "exec": {"command": ["docker", "-H", "tcp://127.0.0.1:2375", "version"]},
                        "periodSeconds": 1,
                    },
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/docker"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 0,
        },
    }


def arc_sample(cluster: Cluster, backend: KubeBackend) -> float:
    name = f"arc-{secrets.token_hex(3)}"
    started = time.monotonic()
    cluster.core.create_namespaced_pod(cluster.namespace, arc_pod(name))
    try:
        backend.wait_ready(name, IMAGE, 120)
        return time.monotonic() - started
    finally:
        cluster.core.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)


def dockyard_sample(cluster: Cluster, backend: KubeBackend) -> float:
    name = f"eng-{secrets.token_hex(3)}"
    started = time.monotonic()
    backend.apply(manifests.KubeEngine(name=name, namespace=cluster.namespace, image=IMAGE))
    elapsed = time.monotonic() - started
    backend.rm(name)
    return elapsed


def pod_memory_mib(cluster: Cluster, name: str) -> float | None:
    """RSS + cache of the pod's memory cgroup, less inactive file pages."""
    uid = cluster.core.read_namespaced_pod(name, cluster.namespace).metadata.uid
    for found in CGROUP_ROOT.rglob(f"pod{uid}"):
        stat = dict(line.split() for line in (found / "memory.stat").read_text().splitlines())
        return (int(stat["total_rss"]) + int(stat.get("total_shmem", 0))) / 2**20
    return None


def idle_memory(cluster: Cluster, backend: KubeBackend) -> dict[str, float | None]:
    name = f"idle-{secrets.token_hex(3)}"
    backend.apply(manifests.KubeEngine(name=name, namespace=cluster.namespace, image=IMAGE))
    arc = f"arc-{secrets.token_hex(3)}"
    cluster.core.create_namespaced_pod(cluster.namespace, arc_pod(arc))
    try:
        backend.wait_ready(arc, IMAGE, 120)
        time.sleep(5)
        return {
            "dockyard": pod_memory_mib(cluster, name),
            "arc-style": pod_memory_mib(cluster, arc),
        }
    finally:
        backend.rm(name)
        cluster.core.delete_namespaced_pod(arc, cluster.namespace, grace_period_seconds=0)


def warm_leases(cluster: Cluster, runs: int) -> list[float]:
    """Lease API call to grant, from a pool kept warm (each lease waits for a warm engine)."""
    import tempfile

    from dockyard.kube.pool import KubePoolService
    from dockyard.pool.config import PoolConfig

    pool = PoolConfig(name="bench", image=IMAGE, warm=2, max=3)
    with tempfile.TemporaryDirectory() as certs:
        svc = KubePoolService([pool], cluster, certs=Path(certs), gc_grace=0)
        svc.start()
        try:
            values = []
            for index in range(runs):
                deadline = time.monotonic() + 180
                while svc.pools()[0]["idle"] < 1 and time.monotonic() < deadline:
                    time.sleep(0.2)
                started = time.monotonic()
                grant = svc.lease("bench", owner="uid:0")
                values.append(time.monotonic() - started)
                print(f"  warm lease run {index + 1}/{runs}: {values[-1]:.3f} s", flush=True)
                svc.release(grant.lease.id, caller="uid:0")
            return values
        finally:
            svc.stop()


def _stats(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"{statistics.median(values):>9.2f}{ordered[0]:>8.2f}{p99:>8.2f}{ordered[-1]:>8.2f}"


def main(runs: int) -> None:
    kubeconfig = _kubeconfig()
    probe = connect(kubeconfig, "default")
    ns = f"bench-{secrets.token_hex(3)}"
    probe.core.create_namespace(
        {"metadata": {"name": ns, "labels": {"io.dockyard.managed": "true"}}}
    )
    try:
        cluster = connect(kubeconfig, ns)
        backend = KubeBackend(cluster)
        print(f"engine pod cold start to Ready on the test cluster, {runs} runs each, {IMAGE}")
        results = {}
        for label, sample in (
            ("dockyard (mTLS)", dockyard_sample),
            ("arc-style (plain)", arc_sample),
        ):
            values = []
            for index in range(runs):
                values.append(sample(cluster, backend))
                print(f"  {label} run {index + 1}/{runs}: {values[-1]:.2f} s", flush=True)
            results[label] = values
        print(f"\n{'variant':<20}{'median s':>9}{'min s':>8}{'p99 s':>8}{'max s':>8}")
        for label, values in results.items():
            print(f"{label:<20}{_stats(values)}")
        leased = warm_leases(cluster, runs * 2)
        print(f"{'warm lease':<20}{_stats(leased)}")
        memory = idle_memory(cluster, backend)
        shown = ", ".join(
            f"{k}: {v:.0f} MiB" if v is not None else f"{k}: (no cgroup found)"
            for k, v in memory.items()
        )
        print(f"\nidle memory per engine pod (RSS of its memory cgroup): {shown}")
    finally:
        probe.core.delete_namespace(ns, grace_period_seconds=0)
