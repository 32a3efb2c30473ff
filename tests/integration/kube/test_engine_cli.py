"""``dockyard engine create|ls|env|rm --backend kubernetes``: the one-host commands, for pods."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dockyard.kube import manifests

pytestmark = [pytest.mark.docker, pytest.mark.kube]
IMAGE = "dockyard/engine:0.1"


def dockyard(kubeconfig: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    where = ("--backend", "kubernetes", "--kubeconfig", kubeconfig, "--namespace", namespace)
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args, *where],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_create_ls_env_rm_an_engine_pod(kubeconfig, cluster, jobs, unique):
    name = unique("cli")
    ns = cluster.namespace
    made = dockyard(kubeconfig, ns, "engine", "create", name, "--image", IMAGE, "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["state"] == "ready"
    listed = dockyard(kubeconfig, ns, "engine", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [e["name"] for e in json.loads(listed.stdout)] == [name]
    env = dockyard(kubeconfig, ns, "engine", "env", name, "--format", "json")
    assert env.returncode == 0, env.stderr
    variables = json.loads(env.stdout)
    assert variables["DOCKER_HOST"] == created["endpoint"]
    assert variables["DOCKER_CERT_PATH"] == manifests.CLIENT_TLS_DIR
    # The printed environment is all a job pod needs, with the engine's client Secret mounted.
    code, log = jobs.run_job(
        cluster, unique("job"), "docker version -f '{{.Server.Os}}'", variables, f"{name}-client"
    )
    assert code == 0, log
    assert "linux" in log, log
    gone = dockyard(kubeconfig, ns, "engine", "rm", name)
    assert gone.returncode == 0, gone.stderr
    assert f"pod {name}" in gone.stdout
    left = cluster.core.list_namespaced_pod(ns, label_selector="io.dockyard.managed=true").items
    assert [p.metadata.name for p in left if not p.metadata.deletion_timestamp] == []
    assert (
        cluster.core.list_namespaced_secret(ns, label_selector="io.dockyard.managed=true").items
        == []
    )
    again = dockyard(kubeconfig, ns, "engine", "rm", name)
    assert again.returncode == 1
    assert f"no engine named {name} in namespace {ns}" in again.stderr


def test_options_a_pod_cannot_honour_are_refused_naming_each(kubeconfig, cluster, unique):
    name = unique("cli")
    done = dockyard(
        kubeconfig, cluster.namespace, "engine", "create", name, "--pids", "100", "--insecure"
    )
    assert done.returncode == 1
    assert "not available for engines on Kubernetes: --pids, --insecure" in done.stderr
    assert cluster.core.list_namespaced_pod(cluster.namespace).items == []
