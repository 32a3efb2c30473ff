"""Integration fixtures: the real host engine, dockyard's images, unique names."""

from __future__ import annotations

import secrets

import pytest

from dockyard import docker_api


@pytest.fixture(scope="session")
def docker_client() -> docker_api.DockerClient:
    return docker_api.connect()


@pytest.fixture(scope="session")
def agent_image(docker_client) -> str:
    from dockyard.images import builder

    return builder.ensure("agent")


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    from dockyard.images import builder

    return builder.ensure("base")


@pytest.fixture(scope="session")
def engine_image(docker_client) -> str:
    from dockyard.images import builder

    return builder.ensure("engine")


@pytest.fixture
def unique():
    """A short unique suffix, so parallel workers never collide on names."""
    return lambda prefix: f"{prefix}-{secrets.token_hex(3)}"
