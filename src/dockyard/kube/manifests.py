"""Engine spec -> Kubernetes manifests: pure, so every field an engine pod gets is unit-tested.

The engine pod runs the same dockerd command line as on one host (``engine.spec.dockerd_args``),
behind the same start prologue (``engine.startup``: cgroup nesting so the pod's limits bind
what its jobs run, the iptables choice, stale pid files), with its TLS files from a Secret
that holds the server certificate, the engine's client issuer (dockerd trusts only it) and
the readiness probe's own client: never the CA's key. A Service gives the engine a stable
name and address, both in the server certificate's SANs.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard import config, labels
from dockyard.engine import startup
from dockyard.engine.spec import (
    DATA_ROOT,
    PROBE_TLS_DIR,
    SERVER_TLS_DIR,
    TLS_PORT,
    EngineSpec,
    dockerd_args,
)

ENGINE_CONTAINER = "engine"
CLIENT_TLS_DIR = "/etc/dockyard/client"
CLUSTER_DOMAIN = "cluster.local"
# Below the usual 1500 of a node network minus an overlay's encapsulation (VXLAN: 50 bytes).
DEFAULT_MTU = 1450


@dataclass(frozen=True)
class KubeEngine:
    """Everything decided about one engine pod before anything is applied."""

    name: str
    namespace: str
    image: str
    mtu: int = DEFAULT_MTU
    cache_claim: str | None = None  # a PVC per cache key; None: an emptyDir, gone with the pod
    cache_size: str = "10Gi"
    storage_class: str | None = None
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    cpu_limit: str | None = None
    memory_limit: str | None = None
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    probe_period: int = 1
    address: str | None = None  # the Service's cluster IP, once it has one

    @property
    def probe_name(self) -> str:
        """The name the probe calls: the Service's, so Ready also proves the path clients use
        (Service, kube-proxy rules, certificate); the pod's own name before it has a Service."""
        return f"{self.service}.{self.namespace}.svc" if self.address else self.name

    @property
    def service(self) -> str:
        return self.name

    @property
    def secret(self) -> str:
        """The engine's own TLS files: server certificate, client issuer, probe client."""
        return f"{self.name}-tls"

    @property
    def client_secret(self) -> str:
        """What a job pod mounts as DOCKER_CERT_PATH: a client of this engine only."""
        return f"{self.name}-client"

    @property
    def dns_names(self) -> tuple[str, ...]:
        """Every name a client may use for the engine: all in the server certificate."""
        svc = f"{self.service}.{self.namespace}"
        return (self.name, svc, f"{svc}.svc", f"{svc}.svc.{CLUSTER_DOMAIN}")

    def engine_spec(self) -> EngineSpec:
        """The one-host spec whose dockerd command line the pod runs."""
        from dockyard.engine.privilege import Mode

        return EngineSpec(
            name=self.name,
            image=self.image,
            network=self.namespace,
            cache_volume=self.cache_claim or "",
            mtu=self.mtu,
            privilege=Mode.PRIVILEGED,
            insecure_registries=self.insecure_registries,
            registry_mirrors=self.registry_mirrors,
        )


# One-host engine options a pod has no equivalent for (a pod's process limit is the node's).
UNSUPPORTED_OPTIONS = {"network": "--network", "pids": "--pids", "aliases": "--alias",
                       "insecure": "--insecure"}  # fmt: skip


def unsupported(given: set[str]) -> list[str]:
    """The flags of ``given`` (engine option names) an engine pod cannot honour."""
    return [flag for name, flag in UNSUPPORTED_OPTIONS.items() if name in given]


def from_options(options: config.EngineOptions, namespace: str) -> KubeEngine:
    """One-host engine options as an engine pod: ``cache`` names a PVC (a keyed cache), no
    cache means an emptyDir; cpus and memory become limits."""
    memory = f"{options.memory // (1024 * 1024)}Mi" if options.memory else None
    return KubeEngine(
        name=options.name,
        namespace=namespace,
        image=options.image or config.OFFICIAL_ENGINE_IMAGE,
        mtu=options.mtu or DEFAULT_MTU,
        cache_claim=options.cache,
        cpu_limit=f"{int(options.cpus * 1000)}m" if options.cpus else None,
        memory_limit=memory,
        insecure_registries=options.insecure_registries,
        registry_mirrors=options.registry_mirrors,
        extra_labels=dict(options.extra_labels),
    )


def object_labels(engine: KubeEngine, role: str = labels.ROLE_ENGINE) -> dict[str, str]:
    """Kubernetes labels: dockyard's vocabulary with values Kubernetes accepts."""
    found = {**engine.extra_labels, **labels.managed(role, engine=engine.name)}
    if engine.cache_claim:
        found[labels.PREFIX + "cache"] = engine.cache_claim
    return found


def _meta(engine: KubeEngine, name: str, role: str = labels.ROLE_ENGINE) -> dict[str, Any]:
    return {"name": name, "namespace": engine.namespace, "labels": object_labels(engine, role)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def service(engine: KubeEngine) -> dict[str, Any]:
    """A ClusterIP Service: the engine's stable DNS name and address (both in its SANs)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(engine, engine.service),
        "spec": {
            "type": "ClusterIP",
            "selector": {labels.ENGINE: engine.name, labels.ROLE: labels.ROLE_ENGINE},
            "ports": [{"name": "docker", "port": TLS_PORT, "targetPort": TLS_PORT}],
            # The readiness probe goes through the Service: it must route before Ready.
            "publishNotReadyAddresses": True,
        },
    }


def tls_secret(
    engine: KubeEngine, server: Mapping[str, bytes], probe: Mapping[str, bytes]
) -> dict[str, Any]:
    """Server cert + key + client issuer (``server``) and the probe's client (``probe``)."""
    data = {f"server-{k}": _b64(v) for k, v in server.items()}
    data |= {f"probe-{k}": _b64(v) for k, v in probe.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(engine, engine.secret),
        "data": data,
    }


def client_secret(engine: KubeEngine, client: Mapping[str, bytes]) -> dict[str, Any]:
    """One client of the engine (ca.pem, cert.pem, key.pem), for a job pod to mount."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(engine, engine.client_secret, labels.ROLE_CLIENT),
        "data": {k: _b64(v) for k, v in client.items()},
    }


def cache_claim(engine: KubeEngine) -> dict[str, Any]:
    """The PVC of a cache key: one data root, mounted by one live engine at a time (RWO)."""
    assert engine.cache_claim is not None
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": engine.cache_size}},
    }
    if engine.storage_class is not None:
        spec["storageClassName"] = engine.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(engine, engine.cache_claim, labels.ROLE_ENGINE_DATA),
        "spec": spec,
    }


def probe_command(engine: KubeEngine) -> list[str]:
    """A TLS-verified API call to the engine's own name (the pod's /etc/hosts has it)."""
    return [
        "docker",
        f"--host=tcp://{engine.probe_name}:{TLS_PORT}",
        "--tlsverify",
        f"--tlscacert={PROBE_TLS_DIR}/ca.pem",
        f"--tlscert={PROBE_TLS_DIR}/cert.pem",
        f"--tlskey={PROBE_TLS_DIR}/key.pem",
        "info",
        "--format",
        "{{.Driver}}",
    ]


def security_context() -> dict[str, Any]:
    """Privileged, always: an explicit capability set starts dockerd in a pod but runs no
    container inside it (the pod's device cgroup refuses runc; docs/KUBERNETES.md)."""
    return {"privileged": True}


def _resources(engine: KubeEngine) -> dict[str, Any]:
    found: dict[str, Any] = {
        "requests": {"cpu": engine.cpu_request, "memory": engine.memory_request}
    }
    limits = {k: v for k, v in (("cpu", engine.cpu_limit), ("memory", engine.memory_limit)) if v}
    if limits:
        found["limits"] = limits
    return found


def _tls_items() -> list[dict[str, str]]:
    items = [{"key": f"server-{f}", "path": f"tls/{f}"} for f in ("ca.pem", "cert.pem", "key.pem")]
    items += [
        {"key": f"probe-{f}", "path": f"probe/{f}"} for f in ("ca.pem", "cert.pem", "key.pem")
    ]
    return items


def engine_container(engine: KubeEngine) -> dict[str, Any]:
    """The dockerd container: shared by the engine pod and the CI pod templates."""
    return {
        "name": ENGINE_CONTAINER,
        "image": engine.image,
        "imagePullPolicy": "IfNotPresent",
        # The prologue inline (sh -c TEXT NAME ARGS): no ConfigMap to create, grant or leak.
        "command": ["sh", "-c", startup.script().decode(), "dockyard-start"],
        "args": ["dockerd", *dockerd_args(engine.engine_spec())],
        "ports": [{"name": "docker", "containerPort": TLS_PORT}],
        "securityContext": security_context(),
        "resources": _resources(engine),
        "readinessProbe": {
            "exec": {"command": probe_command(engine)},
            "periodSeconds": engine.probe_period,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_ROOT},
            {"name": "tls", "mountPath": SERVER_TLS_DIR, "subPath": "tls", "readOnly": True},
            {"name": "tls", "mountPath": PROBE_TLS_DIR, "subPath": "probe", "readOnly": True},
        ],
    }


def data_volume(engine: KubeEngine) -> dict[str, Any]:
    if engine.cache_claim:
        return {"name": "data", "persistentVolumeClaim": {"claimName": engine.cache_claim}}
    return {"name": "data", "emptyDir": {}}


def tls_volume(engine: KubeEngine) -> dict[str, Any]:
    return {
        "name": "tls",
        "secret": {"secretName": engine.secret, "defaultMode": 0o400, "items": _tls_items()},
    }


def pod(engine: KubeEngine) -> dict[str, Any]:
    """The engine pod: hostname = the engine's name, so the probe's name resolves to itself."""
    metadata = _meta(engine, engine.name)
    notes = dict(engine.annotations)
    if notes:
        metadata["annotations"] = notes
    spec: dict[str, Any] = {
        "hostname": engine.name,
        "subdomain": engine.service,
        "restartPolicy": "Always",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 10,
        "containers": [engine_container(engine)],
        "volumes": [data_volume(engine), tls_volume(engine)],
    }
    if engine.address:
        # The Service's names resolve to its address inside the pod with or without cluster
        # DNS (the test cluster has none): the probe calls the engine as clients do.
        spec["hostAliases"] = [{"ip": engine.address, "hostnames": list(engine.dns_names[1:])}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def job_environment(engine: KubeEngine, address: str) -> dict[str, str]:
    """What a job pod with the client Secret mounted at CLIENT_TLS_DIR needs."""
    return {
        "DOCKER_HOST": f"tcp://{address}:{TLS_PORT}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": CLIENT_TLS_DIR,
    }
