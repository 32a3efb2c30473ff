"""The stack plan: every wiring decision, without Docker."""

import dataclasses

import pytest

from dockyard import config, labels
from dockyard.stack import presets
from dockyard.stack.apply import _action
from dockyard.stack.plan import Facts, Names, ci_environment, plan, registry_ref


def facts(preset="agent", engine_image="docker:dind"):
    return Facts(
        engine_image=engine_image,
        registry_image="registry:2",
        registry_storage="/var/lib/registry",
        preset=presets.get(preset),
        image_ids={"docker:dind": "sha256:e1", "registry:2": "sha256:r1"},
    )


def stack(**fields):
    return config.validate(config.StackConfig, fields)


def by_name(found):
    return {item.name: item for item in found}


def test_dind_stack_has_every_object_in_creation_order():
    found = plan(stack(name="ci"), facts())
    assert [(d.kind, d.name) for d in found] == [
        ("network", "ci"),
        ("volume", "ci-ci-home"),
        ("volume", "ci-engine-cache"),
        ("volume", "ci-certs"),
        ("engine", "ci-engine"),
        ("volume", "ci-registry-data"),
        ("container", "ci-registry"),
        ("container", "ci-ci"),
    ]
    for item in found:
        assert labels.is_managed(item.labels)
        assert item.labels["io.dockyard.stack"] == "ci"


def test_ci_container_gets_the_standard_variables_and_read_only_client_certs():
    ci = by_name(plan(stack(name="s"), facts()))["s-ci"].body
    assert sorted(ci["Env"]) == [
        "DOCKER_CERT_PATH=/certs/client",
        "DOCKER_HOST=tcp://docker:2376",
        "DOCKER_TLS_VERIFY=1",
        "DOCKYARD_BASE=dockyard/base:0.1",
        "DOCKYARD_REGISTRY=registry:5000",
    ]
    assert "s-certs:/certs/client:ro" in ci["HostConfig"]["Binds"]
    assert "s-ci-home:/root" in ci["HostConfig"]["Binds"]
    assert not any("docker.sock" in b for b in ci["HostConfig"]["Binds"])
    assert "PortBindings" not in ci["HostConfig"]  # nothing listens unless asked


def test_engine_is_docker_on_the_network_and_trusts_only_the_stack_registry():
    engine = by_name(plan(stack(name="s"), facts()))["s-engine"].body
    assert engine["aliases"] == ["docker"]
    assert engine["network"] == "s"
    assert engine["cache"] == "s-engine-cache"
    assert engine["insecure_registries"] == ["registry:5000"]
    assert engine["insecure"] is False


def test_without_registry_the_engine_trusts_nothing_extra():
    found = by_name(plan(stack(name="s", registry={"enabled": False}), facts()))
    assert found["s-engine"].body["insecure_registries"] == []
    assert "s-registry" not in found


def test_socket_mode_gives_the_guard_socket_and_publishes_the_registry_on_loopback_only():
    socket_facts = dataclasses.replace(
        facts(engine_image=None), registry_port=40123, guard_dir="/state/stacks/s/guard"
    )
    found = by_name(plan(stack(name="s", docker="socket"), socket_facts))
    assert "s-engine" not in found
    assert "s-certs" not in found
    assert found["s-guard"].kind == "guard"
    assert found["s-guard"].body == {"profile": "ci-build", "socket_mode": "0660"}
    order = list(found)
    assert order.index("s-guard") < order.index("s-ci")  # the socket exists before the CI starts
    ci = found["s-ci"].body
    assert "/state/stacks/s/guard:/run/dockyard:ro" in ci["HostConfig"]["Binds"]
    assert not any("docker.sock" in b for b in ci["HostConfig"]["Binds"])
    assert "DOCKER_HOST=unix:///run/dockyard/guard.sock" in ci["Env"]
    ports = found["s-registry"].body["HostConfig"]["PortBindings"]["5000/tcp"]
    assert ports == [{"HostIp": "127.0.0.1", "HostPort": "40123"}]
    assert "DOCKYARD_REGISTRY=localhost:40123" in ci["Env"]


def test_socket_unsafe_mounts_the_raw_socket():
    unsafe = dataclasses.replace(facts(engine_image=None), registry_port=40123)
    found = by_name(plan(stack(name="s", docker="socket-unsafe"), unsafe))
    assert "s-guard" not in found
    ci = found["s-ci"].body
    assert "/var/run/docker.sock:/var/run/docker.sock" in ci["HostConfig"]["Binds"]
    assert "DOCKER_HOST=unix:///var/run/docker.sock" in ci["Env"]


def test_a_non_root_ci_user_can_open_the_guard_socket():
    jenkins = dataclasses.replace(facts("jenkins", engine_image=None), guard_dir="/g")
    found = by_name(plan(stack(name="s", docker="socket", ci={"preset": "jenkins"}), jenkins))
    assert found["s-guard"].body["socket_mode"] == "0666"


def test_push_target_depends_on_who_pushes():
    assert registry_ref(stack()) == "registry:5000"
    assert registry_ref(stack(docker="socket"), 32768) == "localhost:32768"
    assert registry_ref(stack(docker="socket-unsafe"), 32768) == "localhost:32768"


def test_ci_ui_is_published_on_loopback_only_when_asked():
    quiet = by_name(plan(stack(name="s", ci={"preset": "buildbot"}), facts("buildbot")))
    assert "PortBindings" not in quiet["s-ci"].body["HostConfig"]
    shown = by_name(
        plan(stack(name="s", ci={"preset": "buildbot", "ui_port": 8010}), facts("buildbot"))
    )
    binding = shown["s-ci"].body["HostConfig"]["PortBindings"]
    assert all(b["HostIp"] == "127.0.0.1" for v in binding.values() for b in v)


def test_spec_hash_is_stable_and_follows_changes():
    first = by_name(plan(stack(name="s"), facts()))
    again = by_name(plan(stack(name="s"), facts()))
    assert {k: v.spec_hash for k, v in first.items()} == {k: v.spec_hash for k, v in again.items()}
    bigger = by_name(plan(stack(name="s", engine={"memory": "2g"}), facts()))
    assert bigger["s-engine"].spec_hash != first["s-engine"].spec_hash
    assert bigger["s-ci"].spec_hash == first["s-ci"].spec_hash
    rebuilt = facts()
    rebuilt.image_ids["registry:2"] = "sha256:r2"
    assert by_name(plan(stack(name="s"), rebuilt))["s-registry"].spec_hash != (
        first["s-registry"].spec_hash
    )


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (None, "created"),
        ({"Config": {"Labels": {"io.dockyard.spec-hash": "H"}}, "State": {"Running": True}},
         "unchanged"),
        ({"Config": {"Labels": {"io.dockyard.spec-hash": "H"}}, "State": {"Running": False}},
         "recreated"),
        ({"Config": {"Labels": {"io.dockyard.spec-hash": "old"}}, "State": {"Running": True}},
         "recreated"),
    ],
)  # fmt: skip
def test_reconcile_actions_for_containers(found, expected):
    item = plan(stack(name="s"), facts())[-1]
    item.labels["io.dockyard.spec-hash"] = "H"
    assert _action(item, found) == expected


def test_volumes_and_networks_are_never_recreated_implicitly():
    network = plan(stack(name="s"), facts())[0]
    assert _action(network, {"Labels": {"io.dockyard.spec-hash": "other"}}) == "unchanged"


def test_names_derive_from_the_stack_name():
    names = Names("jenkins")
    assert (names.network, names.engine, names.registry, names.ci) == (
        "jenkins", "jenkins-engine", "jenkins-registry", "jenkins-ci",
    )  # fmt: skip


def test_ci_environment_is_the_docker_cli_contract():
    assert ci_environment(stack()) == {
        "DOCKER_HOST": "tcp://docker:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/certs/client",
    }


def test_example_config_is_the_defaults(tmp_path):
    from importlib import resources

    text = resources.files("dockyard.stack").joinpath("example.yaml").read_text()
    path = tmp_path / "dockyard.yaml"
    path.write_text(text)
    assert config.load_yaml(path, config.StackConfig) == config.StackConfig()


def test_stack_config_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "dockyard.yaml"
    path.write_text("name: ci\nengine:\n  memory: lots\n")
    with pytest.raises(Exception, match=r"dockyard\.yaml:3: engine\.memory"):
        config.load_yaml(path, config.StackConfig)


def test_a_stack_mirror_is_its_engines_hub_mirror_and_trusted_over_http():
    from dockyard.mirror import plan as mirror_plan

    cfg = stack(name="s", mirror={"upstream": "https://hub.example"}, seed=["debian:12"])
    engine = by_name(plan(cfg, facts()))["s-engine"].body
    cache = mirror_plan.name_of("https://hub.example")
    assert engine["registry_mirrors"] == [f"http://{cache}:5000"]
    assert engine["insecure_registries"] == ["registry:5000", f"{cache}:5000"]
    plain = by_name(plan(stack(name="s"), facts()))["s-engine"]
    assert by_name(plan(cfg, facts()))["s-engine"].spec_hash != plain.spec_hash


def test_mirror_and_seed_need_the_stacks_own_engine():
    with pytest.raises(config.DockyardError, match="docker: dind"):
        stack(docker="socket", seed=["debian:12"])


def test_the_examples_mirror_block_uncommented_is_valid(tmp_path):
    from importlib import resources

    text = resources.files("dockyard.stack").joinpath("example.yaml").read_text()
    head, _, block = text.partition("mirror: null\n")
    text = head + "mirror:\n" + block.replace("\n#  ", "\n  ").replace("#  upstream", "  upstream")
    text = text.replace("username: null", "username: ci").replace("password_file: null", "")
    text = text.replace("password_env: null", "password_env: HUB_TOKEN")
    path = tmp_path / "dockyard.yaml"
    path.write_text(text)
    found = config.load_yaml(path, config.StackConfig)
    assert found.mirror is not None
    assert found.mirror.upstream == "https://registry-1.docker.io"
    assert found.mirror.max_size == 20 * 1024**3
    assert found.mirror.password_env == "HUB_TOKEN"
