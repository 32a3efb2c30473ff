"""The Role ``dockyard kube rbac`` prints is enough to run an engine, and nothing outside its
namespace; a PVC that never binds fails with the reason and leaves nothing."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from dockyard.cli import app
from dockyard.errors import DockyardError
from dockyard.kube import cluster as kube_cluster
from dockyard.kube.backend import KubeBackend
from dockyard.kube.manifests import KubeEngine
from dockyard.kube.pool import KubePoolService
from dockyard.pool.config import PoolConfig

pytestmark = [pytest.mark.docker, pytest.mark.kube]
IMAGE = "dockyard/engine:0.1"


def token_kubeconfig(cluster, kubeconfig, tmp_path, account="dockyard"):
    """A kubeconfig that is the service account: its token, the cluster's CA and server."""
    deadline = time.monotonic() + 30
    while True:
        sa = cluster.core.read_namespaced_service_account(account, cluster.namespace)
        if sa.secrets:
            break
        assert time.monotonic() < deadline, "the service account got no token"
        time.sleep(0.5)
    secret = cluster.core.read_namespaced_secret(sa.secrets[0].name, cluster.namespace)
    token = base64.b64decode(secret.data["token"]).decode()
    source = YAML(typ="safe").load(Path(kubeconfig).read_text())
    server = source["clusters"][0]["cluster"]
    path = tmp_path / "sa.kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{server['server']}', "
        f"certificate-authority: '{server['certificate-authority']}'}}}}]\n"
        f"users: [{{name: u, user: {{token: '{token}'}}}}]\n"
        f"contexts: [{{name: c, context: {{cluster: c, user: u, "
        f"namespace: {cluster.namespace}}}}}]\n"
        "current-context: c\n"
    )
    return str(path)


def apply_printed_role(cluster, policy: str) -> None:
    """``dockyard kube rbac`` applied, plus use of one of the test cluster's
    PodSecurityPolicies (scripts/test-cluster.sh) for the account and the engines' pods, as an
    admin of a cluster with PodSecurityPolicy grants it."""
    from kubernetes import utils

    printed = CliRunner().invoke(app, ["kube", "rbac", "--namespace", cluster.namespace])
    assert printed.exit_code == 0, printed.output
    for document in YAML(typ="safe").load_all(printed.output):
        utils.create_from_dict(cluster.api, document, namespace=cluster.namespace)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"psp-{policy}", "namespace": cluster.namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": f"dockyard-test-psp-{policy}"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": cluster.namespace}
                     for account in ("dockyard", "default")],
    }  # fmt: skip
    utils.create_from_dict(cluster.api, binding, namespace=cluster.namespace)


def test_the_printed_role_runs_an_engine_and_nothing_elsewhere(cluster, kubeconfig, tmp_path):
    apply_printed_role(cluster, "privileged")
    limited = token_kubeconfig(cluster, kubeconfig, tmp_path)
    backend = KubeBackend(kube_cluster.connect(limited, cluster.namespace))
    made = backend.apply(KubeEngine(name="rbac-eng", namespace=cluster.namespace, image=IMAGE))
    assert made.state == "ready"
    assert backend.rm("rbac-eng")
    # What the role is for: serve under it, from its Lease to a lease, a release and gc.
    pools = [PoolConfig(name="rbac", image=IMAGE, warm=0, max=1)]
    svc = KubePoolService(pools, backend.cluster, certs=tmp_path / "certs", gc_grace=0)
    svc.start()
    try:
        grant = svc.lease("rbac", owner="uid:0")
        svc.release(grant.lease.id, caller="uid:0")
        svc.gc()
    finally:
        svc.stop()
    with pytest.raises(DockyardError) as refused:
        kube_cluster.connect(limited, "default")
    assert "refused to list pods in namespace default" in str(refused.value)
    assert "dockyard kube rbac" in str(refused.value)


def test_a_namespace_that_forbids_privileged_pods_is_named_and_left_clean(
    cluster, kubeconfig, tmp_path
):
    apply_printed_role(cluster, "restricted")
    limited = token_kubeconfig(cluster, kubeconfig, tmp_path)
    backend = KubeBackend(kube_cluster.connect(limited, cluster.namespace))
    with pytest.raises(DockyardError) as refused:
        backend.apply(KubeEngine(name="psp-eng", namespace=cluster.namespace, image=IMAGE))
    message = str(refused.value)
    assert "the cluster's PodSecurityPolicy forbids the engine pod's privilege" in message
    assert "Privileged containers are not allowed" in message
    assert "use of a policy with privileged: true" in message
    sel = "io.dockyard.managed=true"
    for kind in ("pod", "service", "secret"):
        items = getattr(cluster.core, f"list_namespaced_{kind}")(
            cluster.namespace, label_selector=sel
        ).items
        assert [i.metadata.name for i in items if not i.metadata.deletion_timestamp] == []


def test_a_claim_that_never_binds_fails_naming_it_and_leaves_nothing(cluster):
    backend = KubeBackend(cluster)
    engine = KubeEngine(
        name="unbound",
        namespace=cluster.namespace,
        image=IMAGE,
        cache_claim="never-binds",
        storage_class="no-such-class",
    )
    with pytest.raises(DockyardError) as failed:
        backend.apply(engine, timeout=8)
    assert "unbound" in str(failed.value).lower()
    claims = cluster.core.list_namespaced_persistent_volume_claim(cluster.namespace).items
    assert [c.metadata.name for c in claims if not c.metadata.deletion_timestamp] == []
    pods = cluster.core.list_namespaced_pod(cluster.namespace).items
    assert [p.metadata.name for p in pods if not p.metadata.deletion_timestamp] == []
