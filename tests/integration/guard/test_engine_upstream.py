"""The guard in front of a dockyard engine (mutual TLS upstream): tenants of one engine apart."""

from __future__ import annotations

import secrets

import pytest

from dockyard import config
from dockyard.engine import service
from dockyard.guard.upstream import parse_upstream

pytestmark = pytest.mark.docker


@pytest.fixture
def engine(docker_client, engine_image, base_image):
    name = f"gu-{secrets.token_hex(3)}"
    service.create(config.EngineOptions(name=name), client=docker_client)
    service.seed(name, [base_image], client=docker_client)
    yield name
    service.rm(name, volumes=True, client=docker_client)


def test_two_tenants_of_one_engine_are_kept_apart(engine, base_image, guard_factory):
    address, name, cert_dir = service.host_endpoint(engine)
    tenants = [f"t1-{secrets.token_hex(2)}", f"t2-{secrets.token_hex(2)}"]
    running = guard_factory(tenants, upstream=parse_upstream(f"{address}?name={name}", cert_dir))
    version = running.docker(tenants[0], "version", "--format", "{{.Server.Version}}")
    assert version.stdout.strip()  # through TLS to the engine, name checked
    ran = running.docker(tenants[0], "run", "--name", "mine", base_image, "echo", "inner")
    assert ran.stdout == b"inner\n"
    text = b"".join(b"line %d\n" % n for n in range(500))
    echoed = running.docker(tenants[0], "run", "-i", "--rm", base_image, "cat", stdin=text)
    assert echoed.stdout == text  # half-close crosses the guard's TLS upstream too
    listed = running.docker(tenants[1], "ps", "-a", "--format", "{{.Names}}").stdout
    assert b"mine" not in listed
    refused = running.docker(tenants[1], "rm", "mine", check=False)
    assert refused.returncode != 0
    assert b"dockyard guard:" in refused.stderr
    escape = running.docker(tenants[1], "run", "--privileged", base_image, "true", check=False)
    assert b"dockyard guard: privileged" in escape.stderr


def test_a_wrong_certificate_name_is_refused(engine, guard_factory):
    address, _name, cert_dir = service.host_endpoint(engine)
    running = guard_factory(["t"], upstream=parse_upstream(f"{address}?name=impostor", cert_dir))
    failed = running.docker("t", "version", check=False)
    assert failed.returncode != 0
