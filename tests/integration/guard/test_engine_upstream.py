"""The guard in front of a dockyard engine (mutual TLS upstream): tenants of one engine apart."""

from __future__ import annotations

import secrets

import pytest

from dockyard import config
from dockyard.engine import service
from dockyard.guard.upstream import parse_upstream

from .conftest import start_guard

pytestmark = pytest.mark.docker


@pytest.fixture
def engine(docker_client, engine_image, base_image):
    name = f"gu-{secrets.token_hex(3)}"
    service.create(config.EngineOptions(name=name), client=docker_client)
    service.seed(name, [base_image], client=docker_client)
    yield name
    service.rm(name, volumes=True, client=docker_client)


def test_two_tenants_of_one_engine_are_kept_apart(engine, base_image):
    address, name, cert_dir = service.host_endpoint(engine)
    tenants = [f"t1-{secrets.token_hex(2)}", f"t2-{secrets.token_hex(2)}"]
    running = start_guard(tenants, upstream=parse_upstream(f"{address}?name={name}", cert_dir))
    try:
        version = running.docker(tenants[0], "version", "--format", "{{.Server.Version}}")
        assert version.stdout.strip()  # through TLS to the engine, name checked
        ran = running.docker(tenants[0], "run", "--name", "mine", base_image, "echo", "inner")
        assert ran.stdout == b"inner\n"
        listed = running.docker(tenants[1], "ps", "-a", "--format", "{{.Names}}").stdout
        assert b"mine" not in listed
        refused = running.docker(tenants[1], "rm", "mine", check=False)
        assert refused.returncode != 0
        assert b"dockyard guard:" in refused.stderr
        escape = running.docker(tenants[1], "run", "--privileged", base_image, "true", check=False)
        assert b"dockyard guard: privileged" in escape.stderr
    finally:
        running.stop()


def test_a_wrong_certificate_name_is_refused(engine):
    address, _name, cert_dir = service.host_endpoint(engine)
    running = start_guard(["t"], upstream=parse_upstream(f"{address}?name=impostor", cert_dir))
    try:
        failed = running.docker("t", "version", check=False)
        assert failed.returncode != 0
    finally:
        running.stop()
