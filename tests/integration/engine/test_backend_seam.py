"""The Docker backend behind the engine seam: the one-host engine, listed by labels."""

from __future__ import annotations

import secrets

import pytest

from dockyard import config, labels
from dockyard.engine.backend import Backend, DockerBackend

pytestmark = pytest.mark.docker


def test_docker_backend_creates_lists_by_labels_and_removes(docker_client, engine_image):
    backend: Backend = DockerBackend(docker_client)
    name = f"seam-{secrets.token_hex(3)}"
    options = config.validate(
        config.EngineOptions, {"name": name, "extra_labels": {"io.dockyard.pool": "seam"}}
    )
    made = backend.create(options)
    try:
        assert made.name == name
        assert made.endpoint == f"tcp://{name}:2376"
        assert made.state == "running"
        backend.ready(name, timeout=30)
        assert [e.name for e in backend.ls({"io.dockyard.pool": "seam"})] == [name]
        assert backend.ls({"io.dockyard.pool": "none-such"}) == []
        assert backend.env(name)["DOCKER_TLS_VERIFY"] == "1"
        assert made.labels[labels.ENGINE] == name
    finally:
        removed = backend.rm(name, volumes=True)
    assert any(name in item for item in removed)
    assert backend.ls({labels.ENGINE: name}) == []
