"""The one adapter to the host's Engine API (the docker SDK), shared by every service.

It honours the user's conventions (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
``DOCKER_CERT_PATH``, the current docker context is left to ``DOCKER_HOST``) and turns the
SDK's exceptions into :class:`~dockyard.errors.DockyardError` with a cause and a fix.
"""

from __future__ import annotations

import functools
import os

import docker
import docker.errors
from docker import DockerClient
from docker.errors import APIError, NotFound

from dockyard.errors import DockyardError

__all__ = ["APIError", "DockerClient", "NotFound", "connect", "shared"]


def connect(timeout: int = 120) -> DockerClient:
    """A client of the host engine, or a one-line error saying none answers and what to do."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client: DockerClient = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockyardError(
            f"no Docker engine answers at {where}: {_short(exc)}",
            fix="start dockerd (make engine-up installs and starts one), or set DOCKER_HOST",
        ) from exc
    return client


@functools.lru_cache(maxsize=1)
def shared() -> DockerClient:
    """One client per process: connection set-up is paid once."""
    return connect()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
