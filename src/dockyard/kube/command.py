"""``dockyard kube pod-template`` and ``dockyard kube rbac``: print manifests to apply."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from dockyard import ui
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.kube.backend import KubeBackend

BackendOption = Annotated[
    Literal["docker", "kubernetes"],
    typer.Option(
        "--backend",
        envvar="DOCKYARD_BACKEND",
        help="where engines live: this Docker host, or pods in a Kubernetes namespace",
    ),
]
KubeconfigOption = Annotated[
    str | None, typer.Option(help="kubernetes: the kubeconfig \\[default: $KUBECONFIG]")
]
NamespaceOption = Annotated[
    str | None, typer.Option(help="kubernetes: the namespace \\[default: the context's]")
]

app = typer.Typer(
    help="Engines on Kubernetes: pod templates for CI systems, the RBAC dockyard needs.",
    no_args_is_help=True,
)


def _yaml(documents: list[dict[str, Any]]) -> str:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump_all(documents, stream)
    return stream.getvalue()


def template_secret_files(issuer_name: str) -> dict[str, bytes]:
    """The template's TLS: a server certificate for ``docker`` from this host's CA, a fresh
    client issuer only that engine trusts, its probe client and the job's client. The CA's key
    stays on this host."""
    from dockyard import pki
    from dockyard.kube.templates import ENGINE_NAME

    store = pki.PkiStore()
    server = store.server_bundle(issuer_name, (ENGINE_NAME,), ("127.0.0.1",))
    issuer = store.issuer(issuer_name)
    now = datetime.now(UTC)
    ca = store.ca().cert_pem
    files = {f"server-{k}": v for k, v in server.items()}
    for role in ("probe", "client"):
        pair = pki.issue_client(issuer, f"{role}@{issuer_name}", now=now)
        files |= {f"{role}-ca.pem": ca, f"{role}-cert.pem": pair.cert_pem,
                  f"{role}-key.pem": pair.key_pem}  # fmt: skip
    return files


@app.command("pod-template")
def pod_template(
    ci: Annotated[str, typer.Option("--for", help="jenkins, gitlab or generic")] = "generic",
    cache_key: Annotated[
        str | None, typer.Option(help="keep the engine's data root on this PVC")
    ] = None,
    server_version: Annotated[
        str, typer.Option(help="the cluster's version: 1.29+ gets a native sidecar")
    ] = "1.29",
    image: Annotated[str, typer.Option(help="engine image")] = "docker:dind",
    job_image: Annotated[str, typer.Option(help="the job container's image")] = "docker:cli",
    mtu: Annotated[int, typer.Option(help="inner MTU: the pod network's, minus nothing")] = 1450,
    name: Annotated[str | None, typer.Option(help="the pod's name (CI systems set it)")] = None,
) -> None:
    """Print a Secret and a job pod: the job container plus a TLS dind engine with readiness.

    Apply the Secret once (kubectl apply -f -); give the pod to the CI system's Kubernetes
    integration (Jenkins podTemplate yaml, GitLab pod_spec, or kubectl).
    """
    from dockyard.kube import templates

    ui.run(lambda: _check_ci(ci))
    version = ui.run(lambda: _version(server_version))
    files = ui.run(lambda: template_secret_files(f"template-{ci}"))
    pod = templates.pod(
        ci,  # type: ignore[arg-type]
        image=image,
        job_image=job_image,
        server_version=version,
        cache_key=cache_key,
        mtu=mtu,
        name=name,
    )
    # Plain stdout, not rich: a console would wrap long lines of YAML.
    typer.echo(_yaml([templates.secret(files), pod]), nl=False)


def _check_ci(ci: str) -> None:
    from dockyard.kube import templates

    if ci not in templates.JOB_CONTAINER:
        raise DockyardError(f"unknown CI system {ci!r}", fix="use jenkins, gitlab or generic")


def _version(text: str) -> tuple[int, int]:
    from dockyard.kube import templates

    try:
        return templates.parse_version(text)
    except (ValueError, IndexError):
        raise DockyardError(
            f"--server-version {text!r} is not a version", fix="use MAJOR.MINOR, e.g. 1.29"
        ) from None


@app.command("rbac")
def rbac(
    namespace: Annotated[str, typer.Option(help="the namespace engines live in")] = "default",
    service_account: Annotated[str, typer.Option(help="who runs dockyard serve")] = "dockyard",
) -> None:
    """Print the ServiceAccount, Role and RoleBinding `dockyard serve --backend kubernetes`
    needs: pods, secrets, services, PVCs, events and coordination Leases in one namespace,
    nothing cluster-wide."""
    from dockyard.kube import templates

    docs = templates.rbac(namespace, service_account)
    typer.echo(_yaml(docs), nl=False)


def backend(kubeconfig: str | None, namespace: str | None) -> KubeBackend:
    """The Kubernetes backend of the namespace asked for, checked reachable and readable."""
    from dockyard.kube import cluster
    from dockyard.kube.backend import KubeBackend

    return KubeBackend(cluster.connect(kubeconfig, namespace))


def check_options(given: set[str]) -> None:
    """Refuse the one-host options an engine pod cannot honour, naming each."""
    from dockyard.kube import manifests

    refused = manifests.unsupported(given)
    if refused:
        raise DockyardError(
            f"not available for engines on Kubernetes: {', '.join(refused)}",
            fix="drop them (engine pods join the namespace's pod network, always with TLS), "
            "or use --backend docker",
        )
