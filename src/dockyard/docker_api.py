"""The one adapter to the host's Engine API (the docker SDK), shared by every service.

It honours the user's conventions (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
``DOCKER_CERT_PATH``, the current docker context is left to ``DOCKER_HOST``) and turns the
SDK's exceptions into :class:`~dockyard.errors.DockyardError` with a cause and a fix.

dockyard's host engine is not always the one ``DOCKER_HOST`` names: after ``eval "$(dockyard
engine env ci)"`` that is an engine dockyard made for CI jobs, which cannot hold dockyard's
own objects. ``DOCKYARD_DOCKER_HOST`` names the host engine outright; without it, a
``DOCKER_HOST`` whose certificates are one of dockyard's engine clients is recognised, said
so, and passed over for the default socket.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker import DockerClient
from docker.errors import APIError, NotFound

from dockyard.errors import DockyardError

__all__ = ["APIError", "DockerClient", "NotFound", "connect", "copy_out", "shared"]

HOST_ENV = "DOCKYARD_DOCKER_HOST"
DEFAULT_HOST = "unix:///var/run/docker.sock"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """Which engine dockyard talks to: ``base_url`` None means the docker SDK's own
    ``from_env`` (DOCKER_HOST and its TLS variables); ``note`` says why another was chosen."""

    where: str
    base_url: str | None = None
    note: str = ""


def host_target(environ: Mapping[str, str], state: Path) -> Target:
    """Pure: dockyard's host engine from the environment. ``state`` is dockyard's state
    directory, where ``engine env`` and ``lease`` point DOCKER_CERT_PATH."""
    explicit = environ.get(HOST_ENV)
    if explicit:
        return Target(explicit, explicit)
    docker_host = environ.get("DOCKER_HOST", "")
    cert_path = Path(environ.get("DOCKER_CERT_PATH") or "/nonexistent").absolute()
    own = {
        (state / "pki" / "clients").absolute(): "engine",
        (state / "leases").absolute(): "lease",
    }
    kind = own.get(cert_path.parent)
    if docker_host.startswith("tcp://") and kind:
        what = f"dockyard engine {cert_path.name.removeprefix('engine-')} (from dockyard "
        what += "engine env)" if kind == "engine" else f"the engine of lease {cert_path.name}"
        return Target(
            DEFAULT_HOST,
            DEFAULT_HOST,
            f"DOCKER_HOST={docker_host} is {what}, not dockyard's host engine: using "
            f"{DEFAULT_HOST} (set {HOST_ENV} to choose)",
        )
    return Target(docker_host or DEFAULT_HOST)


def connect(timeout: int = 120) -> DockerClient:
    """A client of the host engine, or a one-line error saying none answers and what to do."""
    from dockyard import state

    target = host_target(os.environ, state.state_dir())
    if target.note:
        log.warning("note: %s", target.note)
    try:
        client: DockerClient = (
            docker.DockerClient(base_url=target.base_url, timeout=timeout)
            if target.base_url
            else docker.from_env(timeout=timeout)
        )
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockyardError(
            f"no Docker engine answers at {target.where}: {_short(exc)}"
            + (f" ({target.note})" if target.note else ""),
            fix="start dockerd (make engine-up installs and starts one), or set "
            f"{HOST_ENV} to dockyard's host engine",
        ) from exc
    return client


@functools.lru_cache(maxsize=1)
def shared() -> DockerClient:
    """One client per process: connection set-up is paid once."""
    return connect()


def remove_network(client: DockerClient, ident: str, settle: float = 10.0) -> None:
    """Remove a network whose containers were just removed. The daemon releases a removed
    container's endpoint a moment after it answers (seen on a nested engine under load:
    "has active endpoints", then gone), so that refusal is retried for ``settle`` seconds;
    a network that still has endpoints after that is refused as the daemon said."""
    deadline = time.monotonic() + settle
    while True:
        try:
            client.api.remove_network(ident)
            return
        except APIError as exc:
            if "active endpoints" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.25)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def copy_out(client: DockerClient, container: str, path: str) -> bytes | None:
    """One file's bytes from a container (created or running), or None where it is not."""
    try:
        stream, _ = client.api.get_archive(container, path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.next()
            found = archive.extractfile(member) if member is not None else None
            return found.read() if found is not None else None
    except (APIError, tarfile.TarError):
        return None
