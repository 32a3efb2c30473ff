"""Connecting to a cluster, with errors that say what is wrong: the kubeconfig, the server, the
namespace or RBAC. Everything else in dockyard.kube gets its API objects from here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError


@dataclass
class Cluster:
    """The API clients of one cluster, scoped to one namespace."""

    core: Any  # kubernetes.client.CoreV1Api
    api: Any  # kubernetes.client.ApiClient
    namespace: str
    kubeconfig: str


def connect(kubeconfig: str | None = None, namespace: str | None = None) -> Cluster:
    """Load a kubeconfig (or the in-cluster service account) and check the namespace exists."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    from yaml import YAMLError

    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        if Path(path).exists():
            api = config.new_client_from_config(config_file=path)
            _, active = config.list_kube_config_contexts(config_file=path)
            default_ns = str(active.get("context", {}).get("namespace") or "default")
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            api = client.ApiClient()
            default_ns = (
                Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
            )
        else:
            raise DockyardError(
                f"no kubeconfig at {path} and not running inside a cluster",
                fix="pass --kubeconfig FILE or set KUBECONFIG",
            )
    except DockyardError:
        raise
    except (ConfigException, ValueError, TypeError, KeyError, AttributeError, YAMLError) as exc:
        raise DockyardError(
            f"kubeconfig {path} is not usable: {exc}", fix="check the file with kubectl config view"
        ) from exc
    cluster = Cluster(client.CoreV1Api(api), api, namespace or default_ns, path)
    check_namespace(cluster)
    return cluster


def check_namespace(cluster: Cluster) -> None:
    """Cheap reads that tell an unreachable server, a missing namespace and missing RBAC
    apart. Listing pods of a missing namespace succeeds (empty): the namespace is read first,
    which a namespaced Role may not allow (then only the listing is checked)."""
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.core.read_namespace(cluster.namespace, _request_timeout=10)
    except ApiException as exc:
        if exc.status == 404:
            raise DockyardError(
                f"namespace {cluster.namespace} does not exist",
                fix=f"kubectl create namespace {cluster.namespace}, or choose one with --namespace",
            ) from exc
        if exc.status != 403:
            raise explain(exc, cluster, "read the namespace") from exc
    except Exception as exc:
        raise explain(exc, cluster, "read the namespace") from exc
    try:
        cluster.core.list_namespaced_pod(cluster.namespace, limit=1, _request_timeout=10)
    except Exception as exc:
        raise explain(exc, cluster, "list pods") from exc


def explain(exc: Exception, cluster: Cluster, action: str) -> DockyardError:
    """A Kubernetes client failure as a one-line cause and fix."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    ns = cluster.namespace
    if isinstance(exc, ApiException):
        reason = _message(exc)
        if exc.status == 404 and "namespaces" in reason and ns in reason:
            return DockyardError(
                f"namespace {ns} does not exist",
                fix=f"kubectl create namespace {ns}, or --namespace",
            )
        if exc.status == 403:
            return DockyardError(
                f"the cluster refused to {action} in namespace {ns}: {reason}",
                fix="grant dockyard's role: dockyard kube rbac --namespace "
                f"{ns} | kubectl apply -f -",
            )
        if exc.status == 401:
            return DockyardError(
                f"the cluster did not accept the credentials in {cluster.kubeconfig}",
                fix="refresh the kubeconfig (kubectl get pods should work with it)",
            )
        return DockyardError(f"cannot {action} in namespace {ns}: {reason}")
    if isinstance(exc, (HTTPError, OSError)):
        return DockyardError(
            f"cannot reach the cluster of {cluster.kubeconfig}: {exc}",
            fix="check that the API server runs and the kubeconfig's server address is right",
        )
    return DockyardError(f"cannot {action} in namespace {ns}: {exc}")


def _message(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
