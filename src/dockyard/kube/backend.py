"""Engines as pods: applies dockyard.kube.manifests, waits for Ready by watching, undoes a
failed create, reads state back from labels. The one-host backend is dockyard.engine.service.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from dockyard import config, labels, pki
from dockyard.engine import startup
from dockyard.engine.backend import Engine, Progress
from dockyard.errors import DockyardError
from dockyard.kube import manifests
from dockyard.kube.cluster import Cluster, explain
from dockyard.kube.manifests import KubeEngine

log = logging.getLogger("dockyard.kube")
LOG_LINES = 12
# Waiting reasons after which an engine pod will not become ready by itself.
HOPELESS = {
    "ErrImagePull": "the node cannot get image {image}",
    "ImagePullBackOff": "the node cannot get image {image}",
    "ErrImageNeverPull": "image {image} is not on the node",
    "InvalidImageName": "{image} is not a valid image name",
    "CreateContainerConfigError": "the engine container cannot be configured",
    "CrashLoopBackOff": "dockerd keeps exiting",
}


@dataclass(frozen=True)
class PodEngine:
    """One engine as read back from its pod and Service."""

    name: str
    namespace: str
    endpoint: str
    state: str
    image: str
    cache_claim: str
    privilege: str
    labels: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _noop(_: str) -> None:
    return None


class KubeBackend:
    """Where engines live when they live in a Kubernetes namespace."""

    kind = "kubernetes"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.core = cluster.core
        self.ns = cluster.namespace

    # --- create -----------------------------------------------------------------------------

    def create(self, options: config.EngineOptions, *, progress: Progress = _noop) -> Engine:
        """The Backend interface: an engine from one-host options (see manifests.from_options)."""
        engine = manifests.from_options(options, self.ns)
        self.apply(engine, timeout=options.ready_timeout, progress=progress)
        return self._one(options.name)

    def ready(self, name: str, timeout: float) -> None:
        self.wait_ready(name, self.get(name).image, timeout)

    def apply(
        self, engine: KubeEngine, *, timeout: float = 120.0, progress: Progress = _noop
    ) -> PodEngine:
        """Apply Service, Secrets, PVC and pod; return once the pod is Ready. On any failure
        nothing this call made is left in the namespace (a reused cache PVC stays)."""
        self._refuse_taken(engine.name)
        with ExitStack() as undo:
            if engine.cache_claim:
                progress(f"checking cache claim {engine.cache_claim}")
                self._refuse_shared_claim(engine.cache_claim)
                if self._ensure_claim(engine):
                    undo.callback(self._undo, "persistent_volume_claim", engine.cache_claim)
            progress(f"creating service {engine.service}")
            svc = self._call("create services", self.core.create_namespaced_service, self.ns,
                             manifests.service(engine))  # fmt: skip
            undo.callback(self._undo, "service", engine.service)
            address = str(svc.spec.cluster_ip)
            engine = dataclasses.replace(engine, address=address)
            undo.callback(pki.PkiStore().remove_issuer, self.issuer(engine.name))
            server, probe, client = self._bundles(engine, address)
            self._call("create secrets", self.core.create_namespaced_secret, self.ns,
                       manifests.tls_secret(engine, server, probe))  # fmt: skip
            undo.callback(self._undo, "secret", engine.secret)
            self._call("create secrets", self.core.create_namespaced_secret, self.ns,
                       manifests.client_secret(engine, client))  # fmt: skip
            undo.callback(self._undo, "secret", engine.client_secret)
            progress(f"creating engine pod {engine.name}")
            self._call("create pods", self.core.create_namespaced_pod, self.ns,
                       manifests.pod(engine))  # fmt: skip
            undo.callback(self._undo, "pod", engine.name)
            progress(f"waiting for {engine.name} to answer a TLS-verified call to its own name")
            self.wait_ready(engine.name, engine.image, timeout)
            undo.pop_all()
        return self.get(engine.name)

    def _bundles(
        self, engine: KubeEngine, address: str
    ) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, bytes]]:
        """Server cert (every name + the Service address), probe client, job client. The CA's
        key stays in this host's PKI store: only certificates and leaf keys enter the cluster."""
        store = pki.PkiStore()
        issuer_name = self.issuer(engine.name)
        server = store.server_bundle(issuer_name, engine.dns_names, (address,))
        now = datetime.now(UTC)
        issuer = store.issuer(issuer_name)
        probe_pair = pki.issue_client(issuer, f"probe@{engine.name}", now=now)
        job_pair = pki.issue_client(issuer, f"job@{engine.name}", now=now)
        ca = store.ca().cert_pem
        probe = {"ca.pem": ca, "cert.pem": probe_pair.cert_pem, "key.pem": probe_pair.key_pem}
        client = {"ca.pem": ca, "cert.pem": job_pair.cert_pem, "key.pem": job_pair.key_pem}
        return server, probe, client

    def issuer(self, name: str) -> str:
        """Issuers are per engine and per namespace: names repeat across namespaces."""
        return f"kube-{self.ns}-{name}"[:64]

    def _refuse_taken(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.core.read_namespaced_pod(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise explain(exc, self.cluster, "read pods") from exc
        except Exception as exc:
            raise explain(exc, self.cluster, "read pods") from exc
        if labels.is_managed(found.metadata.labels):
            raise DockyardError(
                f"engine {name} already exists in namespace {self.ns}",
                fix=f"use it, or remove it: dockyard engine rm {name}",
            )
        raise DockyardError(
            f"pod {name} exists in namespace {self.ns} and dockyard did not create it",
            fix="choose another engine name",
        )

    def _refuse_shared_claim(self, claim: str) -> None:
        """Two live daemons on one data root corrupt it."""
        users = self._pods({labels.PREFIX + "cache": claim})
        live = [p.metadata.name for p in users if not p.metadata.deletion_timestamp]
        if live:
            raise DockyardError(
                f"cache {claim} is in use by engine {live[0]}: two engines never share a data root",
                fix="release that engine first, or use another cache key",
            )

    def _ensure_claim(self, engine: KubeEngine) -> bool:
        from kubernetes.client.exceptions import ApiException

        assert engine.cache_claim is not None
        try:
            self.core.read_namespaced_persistent_volume_claim(engine.cache_claim, self.ns)
            return False
        except ApiException as exc:
            if exc.status != 404:
                raise explain(exc, self.cluster, "read persistentvolumeclaims") from exc
        self._call("create persistentvolumeclaims",
                   self.core.create_namespaced_persistent_volume_claim, self.ns,
                   manifests.cache_claim(engine))  # fmt: skip
        return True

    # --- ready ------------------------------------------------------------------------------

    def wait_ready(self, name: str, image: str, timeout: float) -> None:
        """Watch the pod until its Ready condition is True (the probe's TLS call passed)."""
        from kubernetes import watch

        deadline = time.monotonic() + timeout
        seen: Any = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.core.list_namespaced_pod,
                    self.ns,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, int(remaining)),
                    _request_timeout=remaining + 5,
                ):
                    seen = event["object"]
                    if event["type"] == "DELETED":
                        raise DockyardError(f"engine pod {name} was deleted while starting")
                    if is_ready(seen):
                        stream.stop()
                        return
                    hopeless = _hopeless(seen, image)
                    if hopeless:
                        stream.stop()
                        raise DockyardError(
                            f"engine {name} cannot start: {hopeless}; {self.diagnosis(name)}",
                            fix=_fix_for(hopeless),
                        )
                    if time.monotonic() >= deadline:
                        stream.stop()
                        break
            except DockyardError:
                raise
            except Exception as exc:
                raise explain(exc, self.cluster, "watch pods") from exc
        raise DockyardError(
            f"engine {name} was not ready within {timeout:g} s ({_state(seen)}); "
            + self.diagnosis(name),
            fix=f"raise the ready timeout on a slow cluster, or see: kubectl -n {self.ns} "
            f"describe pod {name}",
        )

    def diagnosis(self, name: str) -> str:
        """The engine container's last log lines and the pod's events, on one line."""
        try:
            log = self.core.read_namespaced_pod_log(
                name, self.ns, container=manifests.ENGINE_CONTAINER, tail_lines=LOG_LINES
            )
            log_text = " | ".join(line.strip() for line in str(log).splitlines() if line.strip())
        except Exception:
            log_text = ""
        try:
            events = self.core.list_namespaced_event(
                self.ns, field_selector=f"involvedObject.name={name}"
            ).items
            event_text = " | ".join(f"{e.reason}: {e.message}" for e in events[-LOG_LINES:])
        except Exception:
            event_text = ""
        return f"engine log: {log_text or '(empty)'}; pod events: {event_text or '(none)'}"

    # --- read -------------------------------------------------------------------------------

    def _pods(self, selector: Mapping[str, str]) -> list[Any]:
        query = ",".join(f"{k}={v}" for k, v in {labels.MANAGED: "true", **selector}.items())
        try:
            return list(self.core.list_namespaced_pod(self.ns, label_selector=query).items)
        except Exception as exc:
            raise explain(exc, self.cluster, "list pods") from exc

    def pods(self, selector: Mapping[str, str] | None = None) -> list[PodEngine]:
        """Engine pods whose labels match ``selector`` (all engines when None)."""
        found = self._pods({labels.ROLE: labels.ROLE_ENGINE, **(selector or {})})
        return sorted((self._describe(p) for p in found), key=lambda e: e.name)

    def ls(self, selector: Mapping[str, str] | None = None) -> list[Engine]:
        return [
            Engine(e.name, e.endpoint, e.state, e.cache_claim, e.labels)
            for e in self.pods(selector)
        ]

    def _one(self, name: str) -> Engine:
        return self.ls({labels.ENGINE: name})[0]

    def get(self, name: str) -> PodEngine:
        found = self._pods({labels.ROLE: labels.ROLE_ENGINE, labels.ENGINE: name})
        if not found:
            raise DockyardError(
                f"no engine named {name} in namespace {self.ns}",
                fix="list them: dockyard engine ls",
            )
        return self._describe(found[0])

    def _describe(self, pod: Any) -> PodEngine:
        found = dict(pod.metadata.labels or {})
        name = found.get(labels.ENGINE, pod.metadata.name)
        container = pod.spec.containers[0]
        privileged = bool(container.security_context and container.security_context.privileged)
        return PodEngine(
            name=name,
            namespace=self.ns,
            endpoint=self.env(name)["DOCKER_HOST"],
            state="ready" if is_ready(pod) else str(pod.status.phase or "Pending").lower(),
            image=str(container.image),
            cache_claim=found.get(labels.PREFIX + "cache", ""),
            privilege="privileged" if privileged else "caps",
            labels=found,
        )

    def env(self, name: str) -> dict[str, str]:
        """What a job pod that mounts Secret NAME-client at DOCKER_CERT_PATH needs."""
        try:
            svc = self.core.read_namespaced_service(name, self.ns)
        except Exception as exc:
            raise explain(exc, self.cluster, "read services") from exc
        engine = KubeEngine(name=name, namespace=self.ns, image="")
        return manifests.job_environment(engine, str(svc.spec.cluster_ip))

    def client_bundle(self, name: str) -> dict[str, bytes]:
        """The job client's files (for a client outside the cluster, or a test)."""
        import base64

        try:
            secret = self.core.read_namespaced_secret(f"{name}-client", self.ns)
        except Exception as exc:
            raise explain(exc, self.cluster, "read secrets") from exc
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    # --- remove -----------------------------------------------------------------------------

    def rm(self, name: str, *, volumes: bool = False) -> list[str]:
        """Remove the engine's pod, Service and Secrets (and its cache PVC if asked); its
        issuer goes too, so no client certificate of it opens anything again."""
        engine = KubeEngine(name=name, namespace=self.ns, image="")
        claim = ""
        with suppress(DockyardError):
            claim = self.get(name).cache_claim
        removed = []
        for kind, ident in (
            ("pod", name),
            ("service", engine.service),
            ("secret", engine.secret),
            ("secret", engine.client_secret),
        ):
            if self._delete(kind, ident):
                removed.append(f"{kind} {ident}")
        if volumes and claim and self._delete("persistent_volume_claim", claim):
            removed.append(f"persistentvolumeclaim {claim}")
        pki.PkiStore().remove_issuer(self.issuer(name))
        return removed

    def _delete(self, kind: str, name: str) -> bool:
        """Delete one object; False when it was already gone. Pods go at once (no grace): an
        engine's state is its data root, which dockerd keeps consistent on SIGKILL's restart."""
        from kubernetes.client.exceptions import ApiException

        delete = getattr(self.core, f"delete_namespaced_{kind}")
        extra: dict[str, Any] = {"grace_period_seconds": 0} if kind == "pod" else {}
        try:
            # Unparsed: v1.20 answers a Service delete with a Status the client reads as a
            # Service and fails on.
            delete(name, self.ns, _preload_content=False, **extra)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise explain(exc, self.cluster, f"delete {kind}s") from exc

    def _undo(self, kind: str, name: str) -> None:
        """An undo step must not mask the failure that made it run."""
        try:
            self._delete(kind, name)
        except DockyardError as exc:
            log.warning("could not remove %s %s: %s", kind, name, exc)

    def _call(self, action: str, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except Exception as exc:
            raise _refusal(exc, action) or explain(exc, self.cluster, action) from exc


def _refusal(exc: Exception, action: str) -> DockyardError | None:
    """A pod refused for its privilege: name the admission rule that said no."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException) or exc.status not in (400, 403, 422):
        return None
    body = str(exc.body or "")
    if "privileged" not in body.lower() and "capabilit" not in body.lower():
        return None
    # Engine pods must be privileged (docs/KUBERNETES.md): the fix is where they may be.
    where = "or run engines in a namespace that allows privileged pods"
    # v1.20 says "PodSecurityPolicy: unable to admit pod", older ones "pod security policy"
    if "podsecuritypolicy" in body.lower().replace(" ", ""):
        rule = "PodSecurityPolicy"
        fix = (
            f"grant serve's account and the engines' use of a policy with privileged: true, {where}"
        )
    elif "PodSecurity" in body or "violates" in body:
        rule = "PodSecurity"
        fix = f"label the namespace pod-security.kubernetes.io/enforce=privileged, {where}"
    else:
        rule = "admission control"
        fix = f"allow privileged pods in this namespace, {where}"
    return DockyardError(
        f"the cluster's {rule} forbids the engine pod's privilege ({action}): "
        + body.replace("\n", " ")[:300],
        fix=fix,
    )


def is_ready(pod: Any) -> bool:
    conditions = (pod.status and pod.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _hopeless(pod: Any, image: str) -> str | None:
    if pod.status and pod.status.phase in ("Failed", "Succeeded"):
        return f"the pod {pod.status.phase.lower()}"
    for status in (pod.status and pod.status.container_statuses) or []:
        ended = (status.state and status.state.terminated) or (
            status.last_state and status.last_state.terminated
        )
        if ended and ended.exit_code == startup.REFUSED:
            return "its start prologue refused to start dockerd (the log says why)"
        waiting = status.state and status.state.waiting
        if waiting and waiting.reason in HOPELESS:
            return HOPELESS[waiting.reason].format(image=image) + f" ({waiting.reason})"
    return None


def _fix_for(cause: str) -> str:
    if "image" in cause:
        return "import the image into the cluster's nodes or a registry they pull from"
    return "see the engine log above"


def _state(pod: Any) -> str:
    if pod is None:
        return "no pod seen"
    parts = [str(pod.status.phase)]
    for cond in pod.status.conditions or []:
        if cond.status != "True" and cond.message:
            parts.append(f"{cond.type}: {cond.message}")
    return "; ".join(parts)
