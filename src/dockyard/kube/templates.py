"""Pod templates for CI systems' Kubernetes integrations, and the RBAC serve needs: pure.

A template is the job container plus a TLS dockerd in the same pod. The engine listens on the
pod's loopback only (other pods cannot reach it even with the template's client certificate),
under the name ``docker`` (a host alias to 127.0.0.1, in the server certificate), so the job
uses ``DOCKER_HOST=tcp://docker:2376`` as every dind guide writes it. On servers from 1.29 the
engine is a native sidecar (an init container with ``restartPolicy: Always`` and a startup
probe: the job starts only once the engine answers); older servers drop that field silently, so
there the engine is a classic sidecar and the job waits for it itself.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal

from dockyard import labels
from dockyard.engine.spec import TLS_PORT
from dockyard.kube import manifests
from dockyard.kube.manifests import KubeEngine

CI = Literal["jenkins", "gitlab", "generic"]
ENGINE_NAME = "docker"
SECRET = "dockyard-dind-tls"  # noqa: S105 (a Secret object's name, not a password)
NATIVE_SIDECARS = (1, 29)
# The container name each CI system runs job steps in.
JOB_CONTAINER = {"jenkins": "docker-client", "gitlab": "build", "generic": "job"}
WAIT_FOR_ENGINE = (
    'i=0; until docker version >/dev/null 2>&1; do i=$((i+1)); [ "$i" -gt 600 ] && '
    '{ echo "dockyard: no engine at $DOCKER_HOST after 120 s" >&2; exit 1; }; sleep 0.2; done; '
)


def native_sidecars(server_version: tuple[int, int]) -> bool:
    return server_version >= NATIVE_SIDECARS


def parse_version(text: str) -> tuple[int, int]:
    """``1.29``, ``v1.20.2``, ``1.27+`` -> (major, minor)."""
    parts = text.lstrip("v").split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def template_engine(image: str, cache_key: str | None, mtu: int) -> KubeEngine:
    return KubeEngine(
        name=ENGINE_NAME, namespace="", image=image, mtu=mtu, cache_claim=cache_key, probe_period=1
    )


def secret(files: Mapping[str, bytes]) -> dict[str, Any]:
    """Server (for ``docker``), the engine's client issuer, and the job's client."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": SECRET, "labels": labels.managed(labels.ROLE_CLIENT)},
        "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }


def _engine_container(engine: KubeEngine, native: bool) -> dict[str, Any]:
    container = manifests.engine_container(engine)
    container["args"] = [
        f"--host=tcp://127.0.0.1:{TLS_PORT}" if a == f"--host=tcp://0.0.0.0:{TLS_PORT}" else a
        for a in container["args"]
    ]
    container["ports"] = []
    del container["ports"]
    probe = container.pop("readinessProbe")
    if native:
        container["restartPolicy"] = "Always"
        container["startupProbe"] = {**probe, "failureThreshold": 120}
    container["readinessProbe"] = probe
    return container


def pod(
    ci: CI,
    *,
    image: str,
    job_image: str,
    server_version: tuple[int, int],
    cache_key: str | None = None,
    mtu: int = manifests.DEFAULT_MTU,
    name: str | None = None,
) -> dict[str, Any]:
    """The job pod for ``ci``; ``cache_key`` puts the engine's data root on that PVC."""
    engine = template_engine(image, cache_key, mtu)
    native = native_sidecars(server_version)
    job_env = [
        {"name": "DOCKER_HOST", "value": f"tcp://{ENGINE_NAME}:{TLS_PORT}"},
        {"name": "DOCKER_TLS_VERIFY", "value": "1"},
        {"name": "DOCKER_CERT_PATH", "value": manifests.CLIENT_TLS_DIR},
    ]
    job: dict[str, Any] = {
        "name": JOB_CONTAINER[ci],
        "image": job_image,
        "imagePullPolicy": "IfNotPresent",
        "env": job_env,
        "volumeMounts": [
            {"name": "client", "mountPath": manifests.CLIENT_TLS_DIR, "readOnly": True}
        ],
    }
    if ci == "jenkins":
        # The kubernetes-plugin runs steps through exec: the container only has to stay up.
        job["command"] = ["sh", "-c", WAIT_FOR_ENGINE + "exec sleep 2147483647"]
        job["tty"] = True
    elif ci == "generic":
        job["command"] = ["sh", "-c", WAIT_FOR_ENGINE + 'exec sh -c "$0" "$@"']
        job["args"] = ["docker version"]
    engine_container = _engine_container(engine, native)
    tls = manifests.tls_volume(engine)
    tls["secret"]["secretName"] = SECRET
    client = {
        "name": "client",
        "secret": {
            "secretName": SECRET,
            "defaultMode": 0o400,
            "items": [{"key": f"client-{f}", "path": f} for f in ("ca.pem", "cert.pem", "key.pem")],
        },
    }
    spec: dict[str, Any] = {
        "hostAliases": [{"ip": "127.0.0.1", "hostnames": [ENGINE_NAME]}],
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "containers": [job] if native else [job, engine_container],
        "volumes": [manifests.data_volume(engine), tls, client],
    }
    if native:
        spec["initContainers"] = [engine_container]
    metadata: dict[str, Any] = {"labels": labels.managed(labels.ROLE_ENGINE, engine=ENGINE_NAME)}
    if name:
        metadata["name"] = name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def rbac(namespace: str, service_account: str = "dockyard") -> list[dict[str, Any]]:
    """Least privilege for ``dockyard serve --backend kubernetes``: one namespace, the kinds
    it makes or reads (pods, secrets, services, claims, events, coordination Leases), nothing
    cluster-wide."""
    verbs = ["get", "list", "watch", "create", "delete"]
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets", "services"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
        # which pools a live serve holds (dockyard.kube.serving)
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "create", "update", "delete"],
        },
    ]
    meta = {"name": "dockyard-serve", "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": service_account, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "dockyard-serve"},
         "subjects": [{"kind": "ServiceAccount", "name": service_account,
                       "namespace": namespace}]},
    ]  # fmt: skip
