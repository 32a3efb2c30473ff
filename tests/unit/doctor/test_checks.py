"""Each doctor check against hand-made facts: a healthy stack, then each way it breaks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dockyard import pki
from dockyard.doctor import checks
from dockyard.doctor.checks import (
    CertFile,
    Container,
    DaemonInfo,
    EngineTLS,
    Facts,
    Network,
    Run,
    SocketStat,
)
from dockyard.engine.privilege import Mode
from dockyard.engine.spec import EngineSpec, dockerd_args

NOW = datetime(2030, 1, 1, tzinfo=UTC)
BEFORE = NOW - timedelta(days=1)
CA = pki.new_ca(now=BEFORE)  # the host's: signs engines, in the CI's ca.pem
ISSUER = pki.new_ca("dockyard clients of s-engine", now=BEFORE)  # the engine's --tlscacert
CLIENT = pki.issue_client(ISSUER, "ci", now=BEFORE)
SERVER = pki.issue_server(CA, "s-engine", dns_names=("s-engine", "docker"), now=BEFORE)
ENGINE_TLS = EngineTLS(client_ca=ISSUER.cert_pem, server_cert=SERVER.cert_pem)
STACK = "s"


def engine_args(**spec: object) -> tuple[str, ...]:
    """The command line dockyard really gives an engine, so doctor is tested against it."""
    fields: dict[str, object] = {
        "name": "s-engine",
        "image": "dockyard/engine:0.1",
        "network": STACK,
        "cache_volume": "s-engine-cache",
        "mtu": 1500,
        "privilege": Mode.CAPS,
        "insecure_registries": ("registry:5000",),
        "aliases": ("docker",),
    } | spec
    return tuple(dockerd_args(EngineSpec(**fields)))  # type: ignore[arg-type]


def certs(ca: bytes = CA.cert_pem, cert: bytes = CLIENT.cert_pem, key: bytes = CLIENT.key_pem):
    return (
        CertFile("/certs/client/ca.pem", ca),
        CertFile("/certs/client/cert.pem", cert),
        CertFile("/certs/client/key.pem", key),
    )


ENGINE = Container(
    "s-engine",
    status="running",
    labels={"io.dockyard.endpoint": "tcp://s-engine:2376", "io.dockyard.network": STACK},
    args=engine_args(),
    networks={STACK: ("s-engine", "docker", "0123456789ab")},
    log_tail='level=info msg="API listen on [::]:2376"',
)
CI = Container(
    "s-ci",
    status="running",
    env={
        "DOCKER_HOST": "tcp://docker:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/certs/client",
    },
    networks={STACK: ("ci",)},
)
REGISTRY = Container("s-registry", status="running", networks={STACK: ("registry",)})


def dind(**changes: object) -> Facts:
    """A healthy engine-mode stack, with ``changes``."""
    healthy = Facts(
        stack=STACK,
        now=NOW,
        network=Network(STACK, exists=True),
        engine=ENGINE,
        registry=REGISTRY,
        ci=CI,
        host_ca=CA.cert_pem,
        engine_tls=ENGINE_TLS,
        resolve=Run(0, "192.168.0.2     docker"),
        api=Run(0, "20.10.24"),
        info=DaemonInfo("overlay2", ("registry:5000",)),
        registry_http=Run(0, "200"),
        certs=certs(),
    )
    return replace(healthy, **changes)


def socket_mode(**changes: object) -> Facts:
    """A healthy socket-mode stack, with ``changes``."""
    healthy = Facts(
        stack=STACK,
        now=NOW,
        network=Network(STACK, exists=True),
        engine=Container("s-engine"),
        registry=REGISTRY,
        ci=replace(CI, env={"DOCKER_HOST": "unix:///var/run/docker.sock"}),
        api=Run(0, "20.10.24"),
        info=DaemonInfo("overlay2"),
        registry_http=Run(0, "200"),
        socket=SocketStat("/var/run/docker.sock", uid=0, gid=999, mode=0o660, user=0),
    )
    return replace(healthy, **changes)


def finding(facts: Facts, check: str) -> checks.Finding:
    found = {f.check: f for f in checks.diagnose(facts)}
    assert check in found, f"no {check} finding in {sorted(found)}"
    return found[check]


def problems(facts: Facts) -> dict[str, checks.Finding]:
    return {f.check: f for f in checks.diagnose(facts) if f.status != "ok"}


# --- healthy stacks --------------------------------------------------------------------------


def test_a_healthy_engine_stack_has_no_problem():
    findings = checks.diagnose(dind())
    assert [f for f in findings if f.status != "ok"] == []
    assert checks.healthy(findings)
    assert {f.check for f in findings} >= {
        "network", "engine", "ci", "ci-network", "docker-host", "tls-env", "certificates",
        "engine-api", "storage-driver", "mtu", "registry", "registry-trust",
    }  # fmt: skip


def test_a_healthy_socket_stack_has_no_problem_and_no_engine_checks():
    findings = checks.diagnose(socket_mode())
    assert [f for f in findings if f.status != "ok"] == []
    names = {f.check for f in findings}
    assert "socket" in names
    assert names.isdisjoint({"engine", "ci-network", "docker-host", "tls-env", "certificates"})


def test_an_unanswering_host_engine_is_the_only_finding():
    facts = Facts(stack=STACK, now=NOW, host_error="connection refused")
    [only] = checks.diagnose(facts)
    assert (only.check, only.status) == ("host-engine", "fail")
    assert "connection refused" in only.cause


def test_a_missing_network_fails():
    found = finding(dind(network=Network(STACK)), "network")
    assert found.status == "fail"
    assert "network s does not exist" in found.cause


# --- containers ------------------------------------------------------------------------------


def test_a_stopped_engine_fails_with_its_exit_code_and_log_tail():
    engine = replace(ENGINE, status="exited", exit_code=1, log_tail="failed to start daemon")
    facts = dind(engine=engine, api=Run(1, "lookup docker: no such host"))
    found = finding(facts, "engine")
    assert found.status == "fail"
    assert "s-engine is not running (it exited with code 1)" in found.cause
    assert found.detail == "failed to start daemon"
    assert "docker logs s-engine" in found.fix
    assert "start the engine" in finding(facts, "engine-api").fix


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ({"status": "restarting", "exit_code": 1}, "keeps crashing"),
        ({"status": "exited", "exit_code": 137, "oom_killed": True}, "ran out of memory"),
        ({"status": "paused"}, "paused"),
        ({"status": "created"}, "never started"),
        ({"status": "exited", "exit_code": 128, "error": "no such image"}, "no such image"),
    ],
)
def test_each_way_an_engine_is_down_is_named(state, says):
    found = finding(dind(engine=replace(ENGINE, **state)), "engine")
    assert found.status == "fail"
    assert says in found.cause


def test_a_missing_engine_fails():
    found = finding(dind(engine=Container("s-engine")), "engine")
    assert found.status == "fail"
    assert "s-engine does not exist" in found.cause


@pytest.mark.parametrize("ci", [Container("s-ci"), replace(CI, status="exited", exit_code=0)])
def test_a_missing_or_stopped_ci_container_fails(ci):
    found = finding(dind(ci=ci, resolve=None, api=None, certs=()), "ci")
    assert found.status == "fail"
    assert "CI container s-ci" in found.cause


# --- the network and the name 'docker' -------------------------------------------------------


def test_ci_off_the_engine_network_is_named_with_the_command_that_fixes_it():
    facts = dind(
        ci=replace(CI, networks={}),
        resolve=Run(2, ""),
        api=Run(124, "docker did not finish within 10 s"),
        registry_http=Run(124, "curl did not finish within 10 s"),
    )
    found = problems(facts)
    assert "not on the engine's network s" in found["ci-network"].cause
    assert found["ci-network"].fix.startswith("docker network connect --alias ci s s-ci")
    assert "ci-network" in found["engine-api"].fix
    assert "ci-network" in found["registry"].fix


def test_a_name_that_does_not_resolve_because_the_engine_is_down_says_so():
    facts = dind(engine=replace(ENGINE, status="exited"), resolve=Run(2, ""))
    assert "only for running containers" in finding(facts, "ci-network").cause


def test_an_engine_without_the_docker_alias_is_named():
    engine = replace(ENGINE, networks={STACK: ("s-engine",)})
    found = finding(dind(engine=engine, resolve=Run(2, "")), "ci-network")
    assert "without the alias 'docker'" in found.cause


# --- DOCKER_HOST and TLS variables -----------------------------------------------------------


def with_env(**env: str) -> Container:
    merged = {**CI.env, **env}
    return replace(CI, env={k: v for k, v in merged.items() if v})


def test_docker_host_on_2375_against_a_tls_engine_fails():
    facts = dind(
        ci=with_env(DOCKER_HOST="tcp://docker:2375"),
        api=Run(1, "Cannot connect to the Docker daemon at tcp://docker:2375."),
    )
    found = problems(facts)
    assert "uses port 2375, but the engine serves TLS on 2376" in found["docker-host"].cause
    assert "DOCKER_HOST=tcp://docker:2376" in found["docker-host"].fix
    assert found["engine-api"].fix == "see the docker-host finding"


def test_docker_host_on_2376_against_a_plaintext_engine_fails():
    plain = replace(
        ENGINE,
        args=engine_args(insecure=True),
        labels={**ENGINE.labels, "io.dockyard.endpoint": "tcp://s-engine:2375"},
    )
    found = problems(dind(engine=plain))
    assert "uses port 2376, but the engine serves plaintext on 2375" in found["docker-host"].cause
    assert "HTTPS client" in found["tls-env"].cause  # and the CLI still asks for TLS


def test_the_port_is_read_from_the_endpoint_label_when_the_command_line_has_none():
    engine = replace(ENGINE, args=())
    facts = dind(engine=engine, ci=with_env(DOCKER_HOST="tcp://docker:2375"))
    assert "serves TLS on 2376" in finding(facts, "docker-host").cause


def test_an_unset_docker_host_fails():
    found = finding(dind(ci=with_env(DOCKER_HOST="")), "docker-host")
    assert "DOCKER_HOST is not set" in found.cause


def test_docker_host_naming_another_host_fails():
    found = finding(dind(ci=with_env(DOCKER_HOST="tcp://dind:2376")), "docker-host")
    assert "names dind, which is not the engine" in found.cause


@pytest.mark.parametrize("missing", ["DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"])
def test_a_missing_tls_variable_fails(missing):
    found = finding(dind(ci=with_env(**{missing: ""})), "tls-env")
    assert found.status == "fail"
    assert missing in found.cause
    assert "DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH=/certs/client" in found.fix


# --- certificates ----------------------------------------------------------------------------


def cert_problem(**files: object) -> str:
    found = finding(dind(**files), "certificates")
    assert found.status == "fail"
    return found.cause


def test_a_missing_certificate_fails():
    files = (CertFile("/certs/client/ca.pem", error="no such file or directory"), *certs()[1:])
    assert "/certs/client/ca.pem: no such file or directory" in cert_problem(certs=files)


def test_an_unreadable_key_fails():
    files = (*certs()[:2], CertFile("/certs/client/key.pem", error="permission denied"))
    assert "key.pem: permission denied" in cert_problem(certs=files)


def test_an_expired_certificate_fails():
    old = pki.issue_client(ISSUER, "ci", now=NOW - timedelta(days=30), days=10)
    assert "expired" in cert_problem(certs=certs(cert=old.cert_pem, key=old.key_pem))


def test_a_key_of_another_certificate_fails():
    other = pki.issue_client(ISSUER, "other", now=BEFORE)
    assert "key.pem is not the key of cert.pem" in cert_problem(certs=certs(key=other.key_pem))


def test_a_client_certificate_from_another_issuer_is_refused_as_the_engine_would():
    other_engine = pki.new_ca("dockyard clients of t-engine", now=BEFORE)
    client = pki.issue_client(other_engine, "ci", now=BEFORE)
    cause = cert_problem(certs=certs(cert=client.cert_pem, key=client.key_pem))
    assert "cert.pem (as the engine judges it)" in cause
    assert "issued by 'CN=dockyard clients of t-engine" in cause


def test_a_ca_pem_of_another_ca_does_not_verify_the_engine():
    foreign = pki.new_ca("dockyard CA", now=BEFORE)  # same name, other key
    cause = cert_problem(certs=certs(ca=foreign.cert_pem))
    assert "the engine's certificate, checked with ca.pem" in cause
    assert "signature does not verify" in cause


def test_an_engine_certificate_without_the_docker_host_name_fails():
    server = pki.issue_server(CA, "s-engine", dns_names=("s-engine",), now=BEFORE)
    cause = cert_problem(engine_tls=replace(ENGINE_TLS, server_cert=server.cert_pem))
    assert "not valid for 'docker'" in cause


def test_without_the_engine_files_ca_pem_is_compared_with_the_host_ca():
    foreign = pki.new_ca(now=BEFORE)
    assert finding(dind(engine_tls=None), "certificates").status == "ok"
    cause = cert_problem(engine_tls=None, certs=certs(ca=foreign.cert_pem))
    assert "ca.pem is not this host's dockyard CA" in cause


def test_certificates_are_not_checked_for_a_plaintext_engine():
    plain = replace(ENGINE, args=engine_args(insecure=True))
    facts = dind(engine=plain, certs=certs(cert=b"junk"), ci=with_env(DOCKER_TLS_VERIFY=""))
    assert "certificates" not in {f.check for f in checks.diagnose(facts)}


# --- the engine answering --------------------------------------------------------------------


def test_an_engine_that_runs_but_does_not_answer_is_not_ready_and_the_error_is_named():
    error = 'error during connect: Get "https://docker:2376/v1.24/version": connection refused'
    found = finding(dind(api=Run(1, f"Client:\n Version: 20.10\n{error}")), "engine-api")
    assert found.status == "fail"
    assert "does not answer yet" in found.cause
    assert error in found.cause
    assert found.detail == ENGINE.log_tail


def test_a_ci_image_without_the_docker_cli_is_named():
    error = "timeout: failed to run command 'docker': No such file or directory"
    found = finding(dind(api=Run(127, error)), "engine-api")
    assert error in found.cause
    assert "install the docker CLI" in found.fix


def test_a_tls_handshake_failure_nothing_else_explains_is_named():
    error = "x509: certificate is valid for s-engine, not docker"
    found = finding(dind(api=Run(1, error)), "engine-api")
    assert "TLS handshake" in found.cause
    assert error in found.cause


# --- storage driver, MTU, plaintext delay ----------------------------------------------------


def test_vfs_is_a_warning():
    found = finding(dind(info=DaemonInfo("vfs", ("registry:5000",))), "storage-driver")
    assert found.status == "warn"
    assert "vfs" in found.cause
    assert checks.healthy(checks.diagnose(dind(info=DaemonInfo("vfs", ("registry:5000",)))))


def test_the_driver_comes_from_the_command_line_when_the_engine_does_not_answer():
    engine = replace(ENGINE, args=(*ENGINE.args, "--storage-driver=vfs"))
    assert finding(dind(engine=engine, info=None), "storage-driver").status == "warn"


def test_an_inner_mtu_larger_than_the_network_fails():
    found = finding(dind(network=Network(STACK, exists=True, mtu=1400)), "mtu")
    assert found.status == "fail"
    assert "MTU 1500 is larger than network s's 1400" in found.cause
    assert "--mtu 1400" in found.fix


def test_the_mtu_label_is_used_when_the_command_line_has_none():
    engine = replace(ENGINE, args=(), labels={**ENGINE.labels, "io.dockyard.mtu": "9000"})
    assert finding(dind(engine=engine), "mtu").status == "fail"


@pytest.mark.parametrize(
    ("args", "delayed"),
    [
        (("--host=tcp://0.0.0.0:2375",), True),
        (("-H", "tcp://0.0.0.0:2375"), True),
        (("--host=tcp://0.0.0.0:2375", "--tls=false"), False),
        (("--host=tcp://127.0.0.1:2375",), False),
        (("--host=tcp://0.0.0.0:2376", "--tlsverify"), False),
        (("--host=unix:///var/run/docker.sock",), False),
    ],
)
def test_the_plaintext_start_up_delay_is_predicted_from_the_command_line(args, delayed):
    assert checks.daemon_flags(args).startup_delay is delayed
    engine = replace(ENGINE, args=args)
    assert ("plaintext-delay" in problems(dind(engine=engine))) is delayed


def test_dockyards_own_plaintext_engine_has_no_delay():
    assert not checks.daemon_flags(engine_args(insecure=True)).startup_delay


def test_daemon_flags_reads_both_spellings():
    flags = checks.daemon_flags(
        ["-H", "tcp://0.0.0.0:2376", "--tlsverify=true", "--mtu", "1400", "-s", "vfs",
         "--insecure-registry", "a:5000", "--insecure-registry=b:5000"]
    )  # fmt: skip
    assert flags.tcp_ports == (2376,)
    assert flags.serves_tls
    assert (flags.mtu, flags.storage_driver) == (1400, "vfs")
    assert flags.insecure_registries == ("a:5000", "b:5000")
    assert checks.daemon_flags(engine_args()).tlscacert == "/etc/dockyard/tls/ca.pem"


# --- socket mode -----------------------------------------------------------------------------


def test_a_missing_socket_fails():
    sock = SocketStat("/var/run/docker.sock", error="No such file or directory")
    found = finding(socket_mode(socket=sock, api=Run(1, "Cannot connect")), "socket")
    assert "missing" in found.cause
    assert "-v /var/run/docker.sock:/var/run/docker.sock" in found.fix
    assert finding(socket_mode(socket=sock, api=Run(1, "x")), "engine-api").fix.endswith(
        "socket finding"
    )


def test_a_directory_where_the_socket_should_be_fails():
    sock = SocketStat("/var/run/docker.sock", kind="directory")
    assert "is a directory, not a socket" in finding(socket_mode(socket=sock), "socket").cause


def test_a_ci_user_outside_the_socket_group_is_denied():
    sock = SocketStat("/var/run/docker.sock", gid=999, mode=0o660, user=1000, groups=(1000,))
    found = finding(socket_mode(socket=sock), "socket")
    assert found.status == "fail"
    assert "permission denied" in found.cause
    assert "--group-add 999" in found.fix


def test_a_ci_user_in_the_socket_group_may_use_it():
    sock = SocketStat("/var/run/docker.sock", gid=999, mode=0o660, user=1000, groups=(1000, 999))
    assert finding(socket_mode(socket=sock), "socket").status == "ok"


# --- the registry ----------------------------------------------------------------------------


def test_a_removed_registry_fails_when_the_engine_expects_one():
    found = finding(dind(registry=Container("s-registry"), registry_http=None), "registry")
    assert found.status == "fail"
    assert "s-registry does not exist" in found.cause


def test_no_registry_finding_when_the_stack_has_none():
    engine = replace(ENGINE, args=engine_args(insecure_registries=()))
    facts = dind(engine=engine, registry=Container("s-registry"), registry_http=None)
    assert "registry" not in {f.check for f in checks.diagnose(facts)}


def test_a_registry_off_the_network_is_unreachable():
    registry = replace(REGISTRY, networks={"bridge": ()})
    http = Run(6, "000\ncurl: (6) Could not resolve host: registry")
    found = finding(dind(registry=registry, registry_http=http), "registry")
    assert "unreachable" in found.cause
    assert "Could not resolve host: registry" in found.cause
    assert found.fix == "docker network connect --alias registry s s-registry"


def test_a_registry_asking_for_credentials_answers():
    assert finding(dind(registry_http=Run(0, "401")), "registry").status == "ok"


def test_an_engine_that_does_not_trust_the_registry_fails():
    found = finding(dind(info=DaemonInfo("overlay2")), "registry-trust")
    assert found.status == "fail"
    assert "--insecure-registry registry:5000" in found.fix


# --- half-made stacks, the base image, the data root -------------------------------------------


def test_a_failed_first_up_blames_the_engine_not_the_ci():
    facts = Facts(
        stack=STACK,
        now=NOW,
        network=Network(STACK, exists=True),
        engine=Container("s-engine"),
        registry=Container("s-registry"),
        ci=Container("s-ci"),
        parts=frozenset({"engine-cache", "certs", "ci-home"}),
    )
    found = problems(facts)
    assert "the last dockyard up stopped before it was ready" in found["engine"].cause
    assert "read its error" in found["engine"].fix
    assert found["ci"].fix == "see the engine finding"


def test_an_engine_without_the_base_image_fails_and_up_is_the_fix():
    found = finding(
        dind(base_image=Run(1, "Error: No such image: dockyard/base:0.1")), "base-image"
    )
    assert found.status == "fail"
    assert "lacks dockyard/base:0.1" in found.cause
    assert "dockyard up" in found.fix
    assert finding(dind(base_image=Run(0, "sha256:1")), "base-image").status == "ok"


@pytest.mark.parametrize(
    ("size", "free", "status", "says"),
    [
        (50 * 2**30, 20 * 2**30, "ok", "20.0 GiB free of 50.0 GiB (40%)"),
        (50 * 2**30, 2 * 2**30, "warn", "nearly full"),
        (50 * 2**30, 100 * 2**20, "fail", "is full: 100 MiB free"),
    ],
)
def test_the_data_root_shows_its_free_space_and_names_a_full_one(size, free, status, says):
    found = finding(dind(data_root=checks.DiskUse("/var/lib/docker", size, free)), "data-root")
    assert found.status == status
    assert says in found.cause
    assert (found.fix != "") == (status != "ok")


# --- pull-through caches ---------------------------------------------------------------------

MIRROR = checks.MirrorState(
    "dockyard-mirror-ab12cd34", "https://hub.example", status="running", networks=(STACK,)
)
MIRRORED = replace(
    ENGINE,
    args=engine_args(
        registry_mirrors=("http://dockyard-mirror-ab12cd34:5000",),
        insecure_registries=("registry:5000", "dockyard-mirror-ab12cd34:5000"),
    ),
)


def test_no_cache_no_mirror_finding():
    assert "mirror" not in {f.check for f in checks.diagnose(dind())}


def test_a_healthy_cache_is_ok():
    found = checks.check_mirror(dind(engine=MIRRORED, mirrors=(MIRROR,)))
    assert found is not None
    assert found.status == "ok"
    assert "https://hub.example" in found.cause


@pytest.mark.parametrize(
    ("mirrors", "says", "fix"),
    [
        ((), "mirror dockyard-mirror-ab12cd34 is missing", "dockyard up"),
        ((replace(MIRROR, status="exited"),), "is exited", "dockyard up"),
        ((replace(MIRROR, networks=("other",)),), "is not on network s", "network connect"),
        (
            (
                replace(
                    MIRROR,
                    problem=(
                        "cannot reach its upstream",
                        "dial tcp: no such host",
                        "check mirror.upstream",
                    ),
                ),
            ),
            "(https://hub.example) cannot reach its upstream: dial tcp",
            "mirror.upstream",
        ),
        (
            (
                replace(
                    MIRROR,
                    problem=(
                        "was refused by its upstream (credentials)",
                        "unauthorized",
                        "check mirror.username",
                    ),
                ),
            ),
            "refused by its upstream (credentials)",
            "mirror.username",
        ),
    ],
)
def test_a_broken_cache_is_named_with_its_cause(mirrors, says, fix):
    found = checks.check_mirror(dind(engine=MIRRORED, mirrors=mirrors))
    assert found is not None
    assert found.status == "fail"
    assert says in found.cause
    assert fix in found.fix


def test_another_stacks_or_pools_broken_cache_is_not_this_stacks_finding():
    theirs = replace(
        MIRROR,
        name="dockyard-mirror-00000000",
        networks=("dockyard-pool-ci",),
        problem=("cannot reach its upstream", "dial tcp", "check mirror.upstream"),
    )
    assert checks.check_mirror(dind(mirrors=(theirs,))) is None
    assert checks.healthy(checks.diagnose(dind(mirrors=(theirs,))))
    # the stack's own cache beside it is still judged, alone
    found = checks.check_mirror(dind(engine=MIRRORED, mirrors=(MIRROR, theirs)))
    assert found is not None
    assert found.status == "ok"
    assert "dockyard-mirror-00000000" not in found.cause
