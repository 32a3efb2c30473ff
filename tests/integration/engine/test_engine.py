"""Engines on the real host engine, used the way a CI container uses them."""

from __future__ import annotations

import concurrent.futures
import contextlib

import pytest
from typer.testing import CliRunner

from dockyard import config, labels, pki
from dockyard.cli import app
from dockyard.engine import client as engine_client
from dockyard.engine import disk, service
from dockyard.errors import DockyardError

pytestmark = pytest.mark.docker

DOCKERFILE = b"ARG BASE\nFROM ${BASE}\nRUN echo layer-one > /one\nRUN echo layer-two > /two\n"


def options(name, **extra):
    return config.validate(config.EngineOptions, {"name": name, **extra})


@pytest.fixture(scope="module")
def engine(docker_client, engine_image, base_image):
    import secrets

    name = f"it-{secrets.token_hex(3)}"
    created = service.create(options(name), client=docker_client)
    service.seed(name, [base_image], client=docker_client)
    yield created.info
    service.rm(name, volumes=True, client=docker_client)


@pytest.fixture
def agent(docker_client, engine, agent_image):
    cid = engine_client.start(engine.name, agent_image, client=docker_client)
    yield cid
    engine_client.remove(docker_client, cid)


def sh(docker_client, cid, script):
    return engine_client.run(docker_client, cid, ["sh", "-c", script])


def put_dockerfile(docker_client, cid, path="/work/app"):
    engine_client.put_files(docker_client, cid, {f"{path}/Dockerfile": DOCKERFILE})


def test_engine_is_listed_with_what_ci_needs(engine, docker_client):
    listed = {e.name: e for e in service.ls(docker_client)}
    info = listed[engine.name]
    assert info.state == "running"
    assert info.endpoint == f"tcp://{engine.name}:2376"
    assert info.storage_driver == "overlay2"
    assert info.privilege in ("privileged", "caps", "sysbox")
    assert info.network == f"dockyard-{engine.name}"
    inspected = docker_client.api.inspect_container(info.container)
    assert inspected["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_env_is_what_the_docker_cli_expects(engine):
    variables = service.env(engine.name)
    assert variables["DOCKER_HOST"] == f"tcp://{engine.name}:2376"
    assert variables["DOCKER_TLS_VERIFY"] == "1"
    files = {p.name: p for p in __import__("pathlib").Path(variables["DOCKER_CERT_PATH"]).iterdir()}
    assert set(files) == {"ca.pem", "cert.pem", "key.pem"}
    assert files["key.pem"].stat().st_mode & 0o077 == 0


def test_client_builds_and_runs_with_only_engine_env(docker_client, agent, base_image):
    put_dockerfile(docker_client, agent)
    built = sh(
        docker_client,
        agent,
        f"cd /work/app && docker build -q --build-arg BASE={base_image} -t app .",
    )
    assert built.code == 0, built.output
    ran = sh(docker_client, agent, "docker run --rm app cat /one /two")
    assert ran.code == 0, ran.output
    assert ran.output.split() == ["layer-one", "layer-two"]


def test_storage_driver_is_overlay2_as_the_engine_reports_it(docker_client, agent):
    result = sh(docker_client, agent, "docker info --format '{{.Driver}}'")
    assert result.code == 0, result.output
    assert result.output.strip() == "overlay2"


def test_client_without_certificate_is_refused(docker_client, agent, engine):
    url = f"https://{engine.name}:2376/version"
    ca = "--cacert /certs/client/ca.pem"
    with_cert = sh(
        docker_client, agent,
        f"curl -sS {ca} --cert /certs/client/cert.pem --key /certs/client/key.pem {url}",
    )  # fmt: skip
    assert with_cert.code == 0, with_cert.output
    assert '"ApiVersion"' in with_cert.output
    without = sh(docker_client, agent, f"curl -sS {ca} {url}")
    assert without.code != 0
    assert '"ApiVersion"' not in without.output
    plaintext = sh(
        docker_client, agent,
        f"unset DOCKER_TLS_VERIFY DOCKER_CERT_PATH; docker -H tcp://{engine.name}:2376 version",
    )  # fmt: skip
    assert plaintext.code != 0
    assert "Client sent an HTTP request to an HTTPS server" in plaintext.output


def test_client_with_certificate_from_another_ca_is_refused(docker_client, agent, engine, tmp_path):
    stranger = pki.PkiStore(tmp_path / "other-pki")
    bundle = stranger.client_bundle("stranger")
    own_ca = pki.PkiStore().ca().cert_pem
    # Trust the right server CA, present a client certificate from another CA.
    engine_client.put_files(
        docker_client,
        agent,
        {"/stranger/ca.pem": own_ca, "/stranger/cert.pem": bundle["cert.pem"],
         "/stranger/key.pem": bundle["key.pem"]},
    )  # fmt: skip
    result = sh(docker_client, agent, "DOCKER_CERT_PATH=/stranger docker version")
    assert result.code != 0
    assert "bad certificate" in result.output
    assert "Server:" not in result.output


def test_a_client_of_one_engine_cannot_open_another(docker_client, engine, agent, unique):
    """Each engine trusts only its own issuer: one tenant's certificate opens one engine."""
    other = unique("other")
    service.create(options(other, network=engine.network), client=docker_client)
    try:
        own = sh(docker_client, agent, "docker version --format '{{.Server.Version}}'")
        assert own.code == 0, own.output
        foreign = sh(docker_client, agent, f"docker -H tcp://{other}:2376 version")
        assert foreign.code != 0
        assert "bad certificate" in foreign.output
    finally:
        service.rm(other, volumes=True, client=docker_client)


def test_nothing_listens_on_2375_and_only_2376_beyond_loopback(docker_client, agent, engine):
    refused = sh(docker_client, agent, f"docker -H tcp://{engine.name}:2375 --tls=false version")
    assert refused.code != 0
    assert "Cannot connect to the Docker daemon" in refused.output
    # The engine's own socket table: every listener beyond loopback is 2376.
    raw = docker_client.api.exec_start(
        docker_client.api.exec_create(engine.container, ["cat", "/proc/net/tcp", "/proc/net/tcp6"])
    ).decode()
    ports = set()
    for line in raw.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # LISTEN
            address, port = fields[1].rsplit(":", 1)
            loopback = address in ("0100007F", "0B00007F") or address.endswith("0100007F")
            if not loopback:
                ports.add(int(port, 16))
    assert ports == {2376}


def test_docker_context_works(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    name = service.write_context(engine.name)
    meta = list((tmp_path / "contexts" / "meta").glob("*/meta.json"))
    assert len(meta) == 1
    assert f"tcp://{engine.name}:2376" in meta[0].read_text()
    tls = list((tmp_path / "contexts" / "tls").glob("*/docker/key.pem"))
    assert tls
    assert tls[0].stat().st_mode & 0o077 == 0
    assert name == f"dockyard-{engine.name}"


def test_cache_survives_recreation(docker_client, agent_image, base_image, unique):
    name = unique("cache")
    cache = f"dockyard-cache-{name}"
    try:
        outputs = []
        for _round in range(2):
            service.create(options(name, cache=cache), client=docker_client)
            service.seed(name, [base_image], client=docker_client)
            cid = engine_client.start(name, agent_image, client=docker_client)
            try:
                put_dockerfile(docker_client, cid)
                result = sh(
                    docker_client, cid,
                    f"cd /work/app && docker build --build-arg BASE={base_image} -t app .",
                )  # fmt: skip
                assert result.code == 0, result.output
                outputs.append(result.output)
            finally:
                engine_client.remove(docker_client, cid)
            service.rm(name, client=docker_client)  # keeps the cache volume
        assert outputs[0].count("Using cache") == 0
        assert outputs[1].count("Using cache") == 2  # both RUN steps
    finally:
        docker_client.api.remove_volume(cache, force=True)


def test_rm_with_volumes_removes_everything(docker_client, engine_image, unique):
    name = unique("rm")
    service.create(options(name), client=docker_client)
    service.rm(name, volumes=True, client=docker_client)
    assert (
        docker_client.api.containers(all=True, filters={"label": f"io.dockyard.engine={name}"})
        == []
    )
    assert not docker_client.api.volumes(filters={"label": f"io.dockyard.engine={name}"})["Volumes"]
    assert docker_client.api.networks(filters={"label": f"io.dockyard.engine={name}"}) == []


def test_parallel_creates_of_different_names(docker_client, engine_image, unique):
    names = [unique("par") for _ in range(3)]
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda n: service.create(options(n)), names))
        assert {r.info.name for r in results} == set(names)
        assert all(r.info.state == "running" for r in results)
    finally:
        for name in names:
            with contextlib.suppress(DockyardError):
                service.rm(name, volumes=True, client=docker_client)


def test_foreign_name_is_refused_and_left_alone(docker_client, base_image, engine_image, unique):
    name = unique("foreign")
    foreign = docker_client.api.create_container(base_image, ["true"], name=name)
    try:
        with pytest.raises(DockyardError, match="dockyard did not create"):
            service.create(options(name), client=docker_client)
        assert docker_client.api.inspect_container(foreign["Id"])["Name"] == f"/{name}"
        assert docker_client.api.networks(filters={"label": f"io.dockyard.engine={name}"}) == []
    finally:
        docker_client.api.remove_container(foreign["Id"], force=True)


def test_shared_cache_with_a_live_engine_is_refused(docker_client, engine, unique):
    name = unique("share")
    with pytest.raises(DockyardError, match="never share a data root"):
        service.create(options(name, cache=engine.cache_volume), client=docker_client)
    assert docker_client.api.containers(all=True, filters={"name": name}) == []
    assert docker_client.api.networks(filters={"label": f"io.dockyard.engine={name}"}) == []


def test_missing_network_is_named(docker_client, unique):
    with pytest.raises(DockyardError, match=r"network nope-\w+ does not exist"):
        service.create(options(unique("net"), network=unique("nope")), client=docker_client)


def test_unknown_image_is_named(docker_client, unique):
    with pytest.raises(DockyardError, match="cannot be pulled"):
        service.create(options(unique("img"), image="no/such-image:1"), client=docker_client)


def test_engine_that_dies_is_reported_with_its_log_and_removed(docker_client, base_image, unique):
    name = unique("dies")
    # The base image has no dockerd: the engine cannot start.
    with pytest.raises(DockyardError) as caught:
        service.create(options(name, image=base_image, ready_timeout=10), client=docker_client)
    assert "dockerd" in str(caught.value)
    assert (
        docker_client.api.containers(all=True, filters={"label": f"io.dockyard.engine={name}"})
        == []
    )
    assert not docker_client.api.volumes(filters={"label": f"io.dockyard.engine={name}"})["Volumes"]


def test_seed_of_a_missing_image_is_named(engine):
    with pytest.raises(DockyardError, match="cannot seed"):
        service.seed(engine.name, ["no/such-image:1"])


def test_a_full_data_root_is_named_by_engine_ls(docker_client, engine_image, unique):
    """A build on a full cache fails with a bare I/O error: engine ls says it is full first."""
    name, volume = unique("full"), unique("full-cache")
    docker_client.api.create_volume(
        volume,
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=400m"},
        labels=labels.managed(labels.ROLE_ENGINE_DATA),
    )
    try:
        service.create(options(name, cache=volume), client=docker_client)
        (roomy,) = [e for e in service.ls(docker_client, disk=True) if e.name == name]
        assert roomy.disk is not None
        assert roomy.disk.size == 400 * 1024**2
        assert not disk.summary(roomy.disk).startswith("FULL")
        filled = engine_client.run(
            docker_client, roomy.container, ["dd", "if=/dev/zero", "of=/var/lib/docker/x",
                                             "bs=1M", "count=300"],
        )  # fmt: skip
        assert filled.code == 0, filled.output
        (full,) = [e for e in service.ls(docker_client, disk=True) if e.name == name]
        assert disk.summary(full.disk).startswith("FULL: ")
        assert "DATA ROOT" in CliRunner().invoke(app, ["engine", "ls"]).output
    finally:
        with contextlib.suppress(DockyardError):
            service.rm(name, client=docker_client)
        docker_client.api.remove_volume(volume, force=True)
