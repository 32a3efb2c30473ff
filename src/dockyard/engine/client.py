"""Client containers: CI-like containers on an engine's network that get only `engine env`.

This is the contract a CI container has with an engine, exercised for real: DOCKER_HOST,
DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (the client bundle copied in, never a server key).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dockyard import archive, docker_api, labels, pki
from dockyard.engine import service

CERT_PATH = "/certs/client"


@dataclass(frozen=True)
class ExecResult:
    code: int
    output: str
    seconds: float


def start(
    engine: str,
    image: str,
    *,
    name: str | None = None,
    client: docker_api.DockerClient | None = None,
) -> str:
    """Start a client container for ``engine``; returns its ID. The caller removes it."""
    client = client or docker_api.shared()
    info = service.get(engine, client)
    variables = service.env(engine, client)
    files: dict[str, bytes] = {}
    if "DOCKER_CERT_PATH" in variables:
        bundle = Path(variables["DOCKER_CERT_PATH"])
        files = {
            f"{CERT_PATH}/{pem}": (bundle / pem).read_bytes()
            for pem in (pki.CA_CERT, pki.CERT, pki.KEY)
        }
        variables["DOCKER_CERT_PATH"] = CERT_PATH
    body = {
        "Image": image,
        "Entrypoint": ["sleep"],
        "Cmd": ["infinity"],
        "Env": [f"{k}={v}" for k, v in variables.items()],
        "Labels": labels.managed(labels.ROLE_CLIENT, engine=engine),
        "HostConfig": {"NetworkMode": info.network, "Init": True},
    }
    cid = str(client.api.create_container_from_config(body, name=name)["Id"])
    try:
        if files:
            put_files(client, cid, files)
        client.api.start(cid)
    except BaseException:
        client.api.remove_container(cid, force=True, v=True)
        raise
    return cid


def put_files(
    client: docker_api.DockerClient, container: str, files: dict[str, bytes], owner: int = 0
) -> None:
    """Copy files into a (created or running) container, or its volumes; keys get 0600."""
    client.api.put_archive(container, "/", archive.tar(files, owner=owner))


def put_tree(client: docker_api.DockerClient, container: str, source: Path, target: str) -> None:
    """Copy a host directory into a container at ``target``."""
    files = {
        f"{target}/{path.relative_to(source)}": path.read_bytes()
        for path in sorted(source.rglob("*"))
        if path.is_file()
    }
    put_files(client, container, files)


def run(
    client: docker_api.DockerClient, container: str, command: list[str], workdir: str | None = None
) -> ExecResult:
    """Run a command in a client container, with its environment; output combined."""
    started = time.monotonic()
    exec_id = client.api.exec_create(container, command, workdir=workdir)["Id"]
    output = client.api.exec_start(exec_id).decode(errors="replace")
    code = int(client.api.exec_inspect(exec_id).get("ExitCode") or 0)
    return ExecResult(code, output, time.monotonic() - started)


def remove(client: docker_api.DockerClient, container: str) -> None:
    client.api.remove_container(container, force=True, v=True)
