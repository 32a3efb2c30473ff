"""The real test cluster (scripts/test-cluster.sh): started once per session, or skipped with
the reason it could not be. Run these tests in one pytest process (``-n 0``): the cluster is
one container shared by every test, and the session that started it removes it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from dockyard.kube import manifests

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "test-cluster.sh"


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("the Kubernetes tests share one cluster: run them with -n 0")
    if os.environ.get("DOCKYARD_KUBECONFIG"):
        yield os.environ["DOCKYARD_KUBECONFIG"]
        return
    started = time.monotonic()
    done = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        subprocess.run([str(SCRIPT), "down"], capture_output=True, check=False)
        tail = " | ".join(done.stderr.strip().splitlines()[-6:])
        # asked for with -n 0 (make test-kube): a cluster that cannot start is a failure
        pytest.fail(f"the test cluster could not be started: {tail}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("KUBECONFIG="))
    print(f"test cluster up in {time.monotonic() - started:.1f} s")
    yield line.split("=", 1)[1]
    if not os.environ.get("DOCKYARD_TEST_CLUSTER_KEEP"):
        subprocess.run([str(SCRIPT), "down"], capture_output=True, check=False)


@pytest.fixture
def namespace(kubeconfig, unique):
    """A namespace of its own per test; deleting it is the last word on leftovers."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    name = unique("dy")
    core.create_namespace({"metadata": {"name": name, "labels": {"io.dockyard.managed": "true"}}})
    yield name
    core.delete_namespace(name, grace_period_seconds=0)


@pytest.fixture
def cluster(kubeconfig, namespace):
    from dockyard.kube import cluster as kube_cluster

    return kube_cluster.connect(kubeconfig, namespace)


@pytest.fixture
def jobs():
    """run_job / run_pod: how the tests act as a CI job in the cluster."""
    return Jobs


JOB_IMAGE = "dockyard/engine:0.1"  # it has the docker CLI


def run_job(
    cluster: Any,
    name: str,
    script: str,
    env: dict[str, str],
    client_secret: str | None,
    timeout: float = 120,
) -> tuple[int, str]:
    """A pod running ``sh -c script`` with ``env`` and the client Secret at DOCKER_CERT_PATH."""
    container: dict[str, Any] = {
        "name": "job",
        "image": JOB_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    volumes = []
    if client_secret:
        container["volumeMounts"] = [
            {"name": "client", "mountPath": manifests.CLIENT_TLS_DIR, "readOnly": True}
        ]
        volumes = [{"name": "client", "secret": {"secretName": client_secret}}]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"io.dockyard.managed": "true"}},
        "spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes},
    }
    return run_pod(cluster, pod, timeout)


def run_pod(cluster: Any, pod: dict[str, Any], timeout: float = 120) -> tuple[int, str]:
    """Create ``pod``, wait for it to finish, return (exit code of its first container, log)."""
    core = cluster.core
    name = pod["metadata"]["name"]
    core.create_namespaced_pod(cluster.namespace, pod)
    container = pod["spec"]["containers"][0]["name"]
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = core.read_namespaced_pod(name, cluster.namespace)
            for status in found.status.container_statuses or []:
                if status.name == container and status.state.terminated:
                    log = core.read_namespaced_pod_log(name, cluster.namespace, container=container)
                    return status.state.terminated.exit_code, str(log)
            time.sleep(0.5)
        log = core.read_namespaced_pod_log(name, cluster.namespace, container=container)
        raise AssertionError(f"job {name} did not finish in {timeout} s: {log}")
    finally:
        core.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)


class Jobs:
    run_job = staticmethod(run_job)
    run_pod = staticmethod(run_pod)
