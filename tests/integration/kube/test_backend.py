"""Engines as pods on the real test cluster: ready means a TLS call works, jobs use only the
environment, strangers are refused, failures leave nothing behind."""

from __future__ import annotations

import time

import pytest

from dockyard import labels
from dockyard.errors import DockyardError
from dockyard.kube.backend import KubeBackend
from dockyard.kube.manifests import KubeEngine

pytestmark = [pytest.mark.docker, pytest.mark.kube]
IMAGE = "dockyard/engine:0.1"
BUILD = (
    "mkdir /tmp/b && cd /tmp/b && echo hi >hi"
    " && printf 'FROM scratch\\nCOPY hi /hi\\n' >Dockerfile"
    " && DOCKER_BUILDKIT=0 docker build -q -t built:1 ."
    " && docker image ls --format '{{.Repository}}'"
)


def leftovers(cluster) -> list[str]:
    sel = "io.dockyard.managed=true,io.dockyard.role!=client-job"
    found = []
    for kind in ("pod", "service", "secret", "persistent_volume_claim"):
        items = getattr(cluster.core, f"list_namespaced_{kind}")(
            cluster.namespace, label_selector=sel
        ).items
        found += [f"{kind}/{i.metadata.name}" for i in items if not i.metadata.deletion_timestamp]
    return found


def test_engine_pod_ready_and_a_job_builds_with_only_the_environment(cluster, unique, jobs):
    backend = KubeBackend(cluster)
    started = time.monotonic()
    engine = backend.apply(KubeEngine(name="eng", namespace=cluster.namespace, image=IMAGE))
    ready_after = time.monotonic() - started
    assert engine.state == "ready"
    assert ready_after < 60
    env = backend.env("eng")
    assert env["DOCKER_TLS_VERIFY"] == "1"
    code, log = jobs.run_job(cluster, unique("job"), BUILD, env, "eng-client")
    assert code == 0, log
    assert "built" in log
    # The same engine by its Service's DNS name is in the certificate too: checked by name.
    assert [e.name for e in backend.ls({labels.ENGINE: "eng"})] == ["eng"]
    # A client with no certificate, and one with another engine's, are refused.
    plain = {"DOCKER_HOST": env["DOCKER_HOST"]}
    code, log = jobs.run_job(cluster, unique("stranger"), "docker version", plain, None)
    assert code != 0
    removed = backend.rm("eng")
    assert "pod eng" in removed
    assert leftovers(cluster) == []


# A one-binary image made in the job pod (nothing can be pulled): dash, its loader and libc.
MINI = (
    "tar -C / -chf - usr/bin/dash lib64/ld-linux-x86-64.so.2 usr/lib/x86_64-linux-gnu/libc.so.6"
    " | docker import - mini:1 >/dev/null"
)
# Memory doubling without bound: only a limit stops it.
HOG = "a=0123456789; while :; do a=$a$a; done"


def test_the_pod_memory_limit_binds_its_jobs_and_the_engine_survives(cluster, unique, jobs):
    backend = KubeBackend(cluster)
    name = "lim"
    backend.apply(
        KubeEngine(name=name, namespace=cluster.namespace, image=IMAGE, memory_limit="400Mi")
    )
    script = (
        f"{MINI} && docker run --rm mini:1 /usr/bin/dash -c '{HOG}'; echo rc=$?;"
        " docker run --rm mini:1 /usr/bin/dash -c 'echo alive'"
    )
    code, log = jobs.run_job(cluster, unique("hog"), script, backend.env(name), f"{name}-client")
    assert code == 0, log
    assert "rc=137" in log, log  # OOM-killed inside the engine's limit
    assert "alive" in log, log  # and the engine still runs jobs
    pod = cluster.core.read_namespaced_pod(name, cluster.namespace)
    assert pod.status.container_statuses[0].restart_count == 0
    backend.rm(name)


def test_an_image_the_node_cannot_get_fails_fast_and_leaves_nothing(cluster):
    backend = KubeBackend(cluster)
    started = time.monotonic()
    with pytest.raises(DockyardError) as failed:
        backend.apply(
            KubeEngine(name="nope", namespace=cluster.namespace, image="dockyard/missing:9"),
            timeout=90,
        )
    assert "cannot get image dockyard/missing:9" in str(failed.value)
    assert "pod events:" in str(failed.value)
    assert time.monotonic() - started < 60
    assert leftovers(cluster) == []


def test_a_dockerd_that_cannot_start_times_out_quoting_its_log(cluster):
    backend = KubeBackend(cluster)
    engine = KubeEngine(
        name="broken", namespace=cluster.namespace, image=IMAGE, insecure_registries=("bad://x",)
    )
    with pytest.raises(DockyardError) as failed:
        backend.apply(engine, timeout=20)
    message = str(failed.value)
    assert "engine log:" in message
    assert "should not contain" in message
    assert leftovers(cluster) == []


def test_missing_namespace_is_one_line_naming_it(kubeconfig):
    from dockyard.kube import cluster as kube_cluster

    with pytest.raises(DockyardError) as failed:
        kube_cluster.connect(kubeconfig, "no-such-namespace-x")
    assert "namespace no-such-namespace-x does not exist" in str(failed.value)


def test_unreachable_cluster_and_bad_kubeconfig(tmp_path):
    from dockyard.kube import cluster as kube_cluster

    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "
        "'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
    )
    with pytest.raises(DockyardError) as failed:
        kube_cluster.connect(str(path), "default")
    assert "cannot reach the cluster" in str(failed.value)
    path.write_text("this: [is not a kubeconfig")
    with pytest.raises(DockyardError) as failed:
        kube_cluster.connect(str(path), "default")
    assert "kubeconfig" in str(failed.value)
