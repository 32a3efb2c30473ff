import pytest

from dockyard import labels
from dockyard.engine import startup
from dockyard.engine.privilege import Mode
from dockyard.engine.spec import (
    EngineSpec,
    cgroup_summary,
    create_body,
    dockerd_args,
    probe_environment,
)


def make(**overrides):
    base = {
        "name": "ci",
        "image": "docker:dind",
        "network": "jenkins",
        "cache_volume": "dockyard-cache-ci",
        "mtu": 1450,
        "privilege": Mode.PRIVILEGED,
    }
    return EngineSpec(**(base | overrides))


def test_tls_is_the_default_and_the_only_tcp_listener():
    args = dockerd_args(make())
    tcp = [a for a in args if a.startswith("--host=tcp://")]
    assert tcp == ["--host=tcp://0.0.0.0:2376"]
    assert "--tlsverify" in args
    assert not any(a.startswith("--tls=false") for a in args)
    assert make().endpoint == "tcp://ci:2376"


def test_insecure_is_plaintext_on_2375_without_the_startup_delay():
    spec = make(insecure=True)
    args = dockerd_args(spec)
    assert "--host=tcp://0.0.0.0:2375" in args
    assert "--tls=false" in args  # dockerd 20.10 otherwise sleeps ~15 s on plaintext TCP
    assert "--tlsverify" not in args
    assert spec.endpoint == "tcp://ci:2375"
    assert probe_environment(spec) == {"DOCKER_HOST": "tcp://ci:2375"}


def test_storage_mtu_and_registries():
    args = dockerd_args(
        make(insecure_registries=("registry:5000",), registry_mirrors=("http://mirror:5000",))
    )
    assert "--storage-driver=overlay2" in args
    assert "--mtu=1450" in args
    assert "--insecure-registry=registry:5000" in args
    assert "--registry-mirror=http://mirror:5000" in args


def test_create_body_does_not_lean_on_the_image_entrypoint():
    body = create_body(make())
    # dockyard's own prologue (copied in at create), which then execs dockerd with its args.
    assert body["Entrypoint"] == ["sh", startup.PATH]
    assert body["Cmd"] == ["dockerd", *dockerd_args(make())]
    assert body["HostConfig"]["Init"] is True
    assert body["Image"] == "docker:dind"


def test_create_body_mounts_the_cache_volume_on_the_data_root():
    body = create_body(make(privilege=Mode.CAPS, cap_drop=("SYS_RESOURCE",)))
    binds = body["HostConfig"]["Binds"]
    assert "dockyard-cache-ci:/var/lib/docker" in binds
    assert "/sys/fs/cgroup:/sys/fs/cgroup:rw" in binds
    assert body["HostConfig"]["CapDrop"] == ["SYS_RESOURCE"]
    assert "Privileged" not in body["HostConfig"]


def test_create_body_joins_the_network_with_aliases_and_publishes_nothing():
    body = create_body(make(aliases=("docker",)))
    assert body["HostConfig"]["NetworkMode"] == "jenkins"
    assert body["NetworkingConfig"]["EndpointsConfig"]["jenkins"]["Aliases"] == ["ci", "docker"]
    assert "PortBindings" not in body["HostConfig"]
    assert make(aliases=("docker",)).dns_names == ("ci", "docker")  # no shared localhost


@pytest.mark.parametrize(
    ("field", "value", "key", "expected"),
    [
        ("nano_cpus", 1_500_000_000, "NanoCpus", 1_500_000_000),
        ("memory", 2 * 1024**3, "Memory", 2 * 1024**3),
        ("pids", 512, "PidsLimit", 512),
    ],
)
def test_limits_apply_to_the_engine_container(field, value, key, expected):
    assert create_body(make(**{field: value}))["HostConfig"][key] == expected
    assert key not in create_body(make())["HostConfig"]


def test_labels_carry_everything_ls_needs():
    found = create_body(make(extra_labels={"io.dockyard.stack": "s1"}))["Labels"]
    assert labels.is_managed(found)
    assert found[labels.ROLE] == labels.ROLE_ENGINE
    assert found["io.dockyard.engine"] == "ci"
    assert found["io.dockyard.privilege"] == "privileged"
    assert found["io.dockyard.endpoint"] == "tcp://ci:2376"
    assert found["io.dockyard.network"] == "jenkins"
    assert found["io.dockyard.cache"] == "dockyard-cache-ci"
    assert found["io.dockyard.storage-driver"] == "overlay2"
    assert found["io.dockyard.stack"] == "s1"


@pytest.mark.parametrize(
    ("privilege", "version", "namespace", "binding", "host_cgroup_mounted"),
    [
        (Mode.CAPS, 1, "host", "parent", True),
        (Mode.CAPS, 2, "private", "namespace", False),
        (Mode.PRIVILEGED, 1, "private", "namespace", False),
        (Mode.PRIVILEGED, 2, "private", "namespace", False),
    ],
)
def test_cgroup_namespace_and_binding_follow_the_host(
    privilege, version, namespace, binding, host_cgroup_mounted
):
    body = create_body(make(privilege=privilege, cgroup_version=version))
    assert body["HostConfig"]["CgroupnsMode"] == namespace
    assert ("/sys/fs/cgroup:/sys/fs/cgroup:rw" in body["HostConfig"]["Binds"]) is (
        host_cgroup_mounted
    )
    assert body["Labels"]["io.dockyard.cgroup-version"] == str(version)
    assert body["Labels"]["io.dockyard.cgroup-binding"] == binding


def test_cgroup_summary_says_whether_limits_bind():
    made = create_body(make(privilege=Mode.CAPS, cgroup_version=1))["Labels"]
    assert cgroup_summary(made) == "cgroup v1, limits bind (parent)"
    older = {k: v for k, v in made.items() if "cgroup" not in k}
    assert "do not bind" in cgroup_summary(older)
