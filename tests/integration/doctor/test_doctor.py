"""Doctor on real stacks: healthy says so, and each way of breaking one is named.

Each test stands a stack up with the real ``dockyard up``, breaks it the way users do (stop
the engine, leave the network, the wrong port, a foreign certificate, ...) and asserts that
doctor names the cause. ``down --volumes`` in a finally block removes everything, including
containers a test recreated (they keep the stack's labels).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from dockyard import config, pki
from dockyard.doctor import checks, gather
from dockyard.doctor.command import doctor
from dockyard.stack import apply
from dockyard.stack.plan import Names

pytestmark = pytest.mark.docker

NOW = datetime.now(UTC)


@contextlib.contextmanager
def stack(docker_client, **fields):
    cfg = config.validate(config.StackConfig, {"name": f"dr-{secrets.token_hex(3)}", **fields})
    try:
        apply.up(cfg, client=docker_client)
        yield Names(cfg.name)
    finally:
        apply.down(cfg.name, volumes=True, client=docker_client)


@pytest.fixture
def dind(docker_client, agent_image, engine_image, base_image):
    with stack(docker_client) as names:
        yield names


def diagnose(docker_client, names: Names) -> dict[str, checks.Finding]:
    return {f.check: f for f in checks.diagnose(gather.gather(names.stack, docker_client))}


def problems(docker_client, names: Names) -> dict[str, checks.Finding]:
    return {k: f for k, f in diagnose(docker_client, names).items() if f.status != "ok"}


def recreate(docker_client, name: str, *, keep: tuple[str, ...] = (), **changes) -> None:
    """Replace a container by one made from its own settings with ``changes``, carrying the
    files under ``keep`` over (the engine's TLS files live in its container)."""
    old = docker_client.api.inspect_container(name)
    conf = old["Config"]
    network, endpoint = next(iter(old["NetworkSettings"]["Networks"].items()))
    aliases = [a for a in endpoint.get("Aliases") or [] if not old["Id"].startswith(a)]
    body = {
        "Image": conf["Image"],
        "Entrypoint": conf["Entrypoint"],
        "Cmd": conf["Cmd"],
        "Env": conf["Env"],
        "Labels": conf["Labels"],
        "Hostname": conf["Hostname"],
        "WorkingDir": conf["WorkingDir"],
        "User": conf["User"],
        "HostConfig": old["HostConfig"],
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": aliases}}},
    } | changes
    saved = {path: b"".join(docker_client.api.get_archive(name, path)[0]) for path in keep}
    docker_client.api.remove_container(name, force=True, v=True)
    docker_client.api.create_container_from_config(body, name=name)
    for path, archive in saved.items():
        docker_client.api.put_archive(name, path.rsplit("/", 1)[0] or "/", archive)
    docker_client.api.start(name)


def put_certs(docker_client, names: Names, files: dict[str, bytes]) -> None:
    """Overwrite files of the certs volume the CI container mounts read-only."""
    apply.write_volume(docker_client, names.certs, files, stack=names.stack)


def with_env(docker_client, name: str, **env: str) -> list[str]:
    current = dict(
        e.partition("=")[::2] for e in docker_client.api.inspect_container(name)["Config"]["Env"]
    )
    return [f"{k}={v}" for k, v in (current | env).items() if v]


def engine_cmd(docker_client, names: Names) -> list[str]:
    return list(docker_client.api.inspect_container(names.engine)["Config"]["Cmd"])


def wait_until_answering(docker_client, names: Names, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while diagnose(docker_client, names)["engine-api"].status != "ok":
        assert time.monotonic() < deadline, "the engine never answered the CI container"
        time.sleep(0.5)


# --- healthy ---------------------------------------------------------------------------------


def test_a_fresh_engine_stack_is_healthy_and_the_command_says_so(docker_client, dind):
    found = diagnose(docker_client, dind)
    assert [f for f in found.values() if f.status != "ok"] == []
    assert set(found) >= {"engine", "ci-network", "docker-host", "certificates", "engine-api"}
    app = typer.Typer()
    app.command()(doctor)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["doctor", "--stack", dind.stack, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["healthy"] is True


def test_a_fresh_socket_stack_is_healthy(docker_client, agent_image, base_image):
    with stack(docker_client, docker="socket") as names:
        found = diagnose(docker_client, names)
        assert [f for f in found.values() if f.status != "ok"] == []
        assert found["socket"].status == "ok"


# --- broken ----------------------------------------------------------------------------------


def test_a_stopped_engine_is_named_with_its_log(docker_client, dind):
    docker_client.api.stop(dind.engine, timeout=5)
    found = problems(docker_client, dind)
    assert "engine container" in found["engine"].cause
    assert "is not running" in found["engine"].cause
    assert "Processing signal 'terminated'" in found["engine"].detail  # its log tail
    assert "only for running containers" in found["ci-network"].cause
    assert "start the engine" in found["engine-api"].fix


def test_a_ci_container_off_the_network_is_named(docker_client, dind):
    docker_client.api.disconnect_container_from_network(dind.ci, dind.network)
    found = problems(docker_client, dind)
    assert "not on the engine's network" in found["ci-network"].cause
    assert found["ci-network"].fix.startswith(f"docker network connect --alias ci {dind.network}")
    assert found["engine-api"].fix == "see the ci-network finding"
    assert "registry" in found


def test_docker_host_on_2375_against_the_tls_engine_is_named(docker_client, dind):
    recreate(
        docker_client,
        dind.ci,
        Env=with_env(docker_client, dind.ci, DOCKER_HOST="tcp://docker:2375"),
    )
    found = problems(docker_client, dind)
    assert "uses port 2375, but the engine serves TLS on 2376" in found["docker-host"].cause
    assert found["engine-api"].fix == "see the docker-host finding"


def test_a_client_certificate_from_another_ca_is_named(docker_client, dind):
    foreign = pki.issue_client(pki.new_ca("some other CA", now=NOW), "ci", now=NOW)
    put_certs(docker_client, dind, {pki.CERT: foreign.cert_pem, pki.KEY: foreign.key_pem})
    found = problems(docker_client, dind)
    cause = found["certificates"].cause
    assert (
        "cert.pem (as the engine judges it): certificate was issued by 'CN=some other CA" in cause
    )
    assert found["engine-api"].fix == "see the certificates finding"
    assert "tls" in found["engine-api"].cause.lower()  # the error the CLI printed


def test_a_ca_pem_of_another_ca_is_named(docker_client, dind):
    put_certs(docker_client, dind, {pki.CA_CERT: pki.new_ca(now=NOW).cert_pem})
    found = problems(docker_client, dind)
    assert "the engine's certificate, checked with ca.pem" in found["certificates"].cause
    assert "x509" in found["engine-api"].cause


def test_an_engine_that_runs_but_does_not_serve_yet_is_not_ready(docker_client, dind):
    # dockerd's own command line, after a long pause: what a slow start looks like from CI.
    recreate(
        docker_client, dind.engine, keep=("/etc/dockyard",),
        Entrypoint=["sh", "-c", 'sleep 600; exec dockerd "$@"', "dockerd"],
        Cmd=engine_cmd(docker_client, dind),
    )  # fmt: skip
    found = problems(docker_client, dind)
    assert set(found) == {"engine-api"}
    assert "the engine runs but does not answer yet" in found["engine-api"].cause
    assert "Cannot connect to the Docker daemon at tcp://docker:2376" in found["engine-api"].cause


def test_the_plaintext_start_up_delay_is_named_while_it_happens(docker_client, dind):
    plain = [a.replace(":2376", ":2375") for a in engine_cmd(docker_client, dind) if "tls" not in a]
    env = with_env(
        docker_client, dind.ci,
        DOCKER_HOST="tcp://docker:2375", DOCKER_TLS_VERIFY="", DOCKER_CERT_PATH="",
    )  # fmt: skip
    recreate(docker_client, dind.ci, Env=env)
    started = time.monotonic()
    recreate(docker_client, dind.engine, keep=("/etc/dockyard",), Cmd=plain)
    found = problems(docker_client, dind)
    assert found["plaintext-delay"].status == "warn"
    assert "does not answer yet" in found["engine-api"].cause
    wait_until_answering(docker_client, dind)
    assert time.monotonic() - started > 10  # the sleep doctor warned about was real


def test_the_vfs_storage_driver_is_named(docker_client, dind):
    cmd = engine_cmd(docker_client, dind)
    vfs = [a.replace("--storage-driver=overlay2", "--storage-driver=vfs") for a in cmd]
    recreate(docker_client, dind.engine, keep=("/etc/dockyard",), Cmd=vfs)
    wait_until_answering(docker_client, dind)
    found = problems(docker_client, dind)
    assert found["storage-driver"].status == "warn"
    assert "vfs" in found["storage-driver"].cause


def test_an_inner_mtu_larger_than_the_network_is_named(
    docker_client, agent_image, engine_image, base_image
):
    with stack(docker_client, network_mtu=1400, engine={"mtu": 1500}) as names:
        found = problems(docker_client, names)
        assert "MTU 1500 is larger than network" in found["mtu"].cause
        assert "--mtu 1400" in found["mtu"].fix


def test_a_removed_registry_is_named(docker_client, dind):
    docker_client.api.remove_container(dind.registry, force=True, v=True)
    found = problems(docker_client, dind)
    assert f"registry container {dind.registry} does not exist" in found["registry"].cause


def test_a_missing_host_socket_and_a_user_it_refuses_are_named(
    docker_client, agent_image, base_image
):
    with stack(docker_client, docker="socket-unsafe") as names:
        host = docker_client.api.inspect_container(names.ci)["HostConfig"]
        recreate(docker_client, names.ci, User="1000:1000")
        denied = problems(docker_client, names)
        assert "permission denied" in denied["socket"].cause
        assert "--group-add" in denied["socket"].fix
        assert "permission denied" in denied["engine-api"].cause
        binds = [b for b in host["Binds"] if "docker.sock" not in b]
        recreate(docker_client, names.ci, User="", HostConfig=host | {"Binds": binds})
        missing = problems(docker_client, names)
        assert "is missing" in missing["socket"].cause
        assert missing["engine-api"].fix == "see the socket finding"
