"""Stacks end to end on the real engine: up, demo, status, down, reconcile, refuse."""

from __future__ import annotations

import contextlib
import secrets

import pytest

from dockyard import config, demo, labels
from dockyard.errors import DockyardError
from dockyard.stack import apply
from dockyard.stack import guard as stack_guard
from dockyard.stack import status as stack_status

pytestmark = pytest.mark.docker


def stack_config(**fields):
    return config.validate(config.StackConfig, {"name": f"st-{secrets.token_hex(3)}", **fields})


@contextlib.contextmanager
def stack_up(cfg, docker_client):
    try:
        yield apply.up(cfg, client=docker_client)
    finally:
        apply.down(cfg.name, volumes=True, client=docker_client)


def labelled(docker_client, stack):
    selector = {"label": f"io.dockyard.stack={stack}"}
    return (
        docker_client.api.containers(all=True, filters=selector),
        docker_client.api.volumes(filters=selector)["Volumes"] or [],
        docker_client.api.networks(filters=selector),
    )


@pytest.mark.parametrize("mode", ["dind", "socket", "socket-unsafe"])
def test_up_demo_status_down(mode, docker_client, agent_image, engine_image, base_image):
    cfg = stack_config(docker=mode)
    with stack_up(cfg, docker_client) as report:
        assert report.changed
        assert bool(report.warnings) == (mode == "socket-unsafe")  # root on the host: warned
        found = stack_status.status(cfg.name, docker_client)
        assert found.healthy, found
        assert found.mode == mode
        result = demo.run(cfg.name)
        assert result.digest.startswith("sha256:")
        assert "hello from a container built inside a dockyard engine" in result.output
        assert [s.name for s in result.steps][-2:] == [
            "docker pull (fresh engine)",
            "docker run (fresh engine)",
        ]
        if mode != "dind":  # the host's engine built it: the demo leaves no image there
            assert not docker_client.api.images(name=result.image)
        again = apply.up(cfg, client=docker_client)
        assert not again.changed  # idempotent
    assert labelled(docker_client, cfg.name) == ([], [], [])
    assert stack_guard.current(cfg.name) is None  # no guard process left running


def test_guarded_socket_denies_escapes_and_shows_only_the_stack_objects(
    docker_client, agent_image, base_image
):
    cfg = stack_config(docker="socket", registry={"enabled": False})
    outsider = docker_client.api.create_container(
        base_image, ["true"], labels=labels.managed("test")
    )
    try:
        with stack_up(cfg, docker_client):
            ci = f"{cfg.name}-ci"

            def in_ci(*command):
                exec_id = docker_client.api.exec_create(ci, list(command))["Id"]
                output = docker_client.api.exec_start(exec_id).decode()
                return docker_client.api.exec_inspect(exec_id)["ExitCode"], output

            for escape in (
                ["--privileged"], ["-v", "/:/host"], ["--pid", "host"], ["--cap-add", "ALL"],
            ):  # fmt: skip
                code, output = in_ci("docker", "run", "--rm", *escape, base_image, "true")
                assert code != 0
                assert "dockyard guard:" in output
            code, output = in_ci("docker", "run", "--name", "mine", base_image, "true")
            assert code == 0, output
            code, listed = in_ci("docker", "ps", "-a", "--format", "{{.ID}} {{.Names}}")
            assert code == 0
            assert "mine" in listed
            assert outsider["Id"][:12] not in listed
            code, output = in_ci("docker", "rm", outsider["Id"])
            assert code != 0
            in_ci("docker", "rm", "mine")
    finally:
        docker_client.api.remove_container(outsider["Id"], force=True)


def test_config_change_recreates_what_changed_and_keeps_volumes(docker_client, engine_image):
    cfg = stack_config()
    with stack_up(cfg, docker_client):
        engine_before = docker_client.api.inspect_container(f"{cfg.name}-engine")["Id"]
        ci_before = docker_client.api.inspect_container(f"{cfg.name}-ci")["Id"]
        changed = cfg.model_copy(update={"engine": config.StackEngine(memory=2 * 1024**3)})
        report = apply.up(changed, client=docker_client)
        actions = {a.component: a.action for a in report.actions}
        assert actions["engine"] == "recreated"
        assert actions["ci"] == "unchanged"
        assert actions["engine-cache"] == "unchanged"
        after = docker_client.api.inspect_container(f"{cfg.name}-engine")
        assert after["Id"] != engine_before
        assert after["HostConfig"]["Memory"] == 2 * 1024**3
        assert docker_client.api.inspect_container(f"{cfg.name}-ci")["Id"] == ci_before
        assert stack_status.status(cfg.name, docker_client).healthy


def test_down_keeps_volumes_unless_asked(docker_client, engine_image):
    cfg = stack_config(registry={"enabled": False})
    try:
        apply.up(cfg, client=docker_client)
        apply.down(cfg.name, client=docker_client)
        containers, volumes, networks = labelled(docker_client, cfg.name)
        assert containers == []
        assert networks == []
        assert {v["Name"] for v in volumes} == {
            f"{cfg.name}-engine-cache", f"{cfg.name}-certs", f"{cfg.name}-ci-home",
        }  # fmt: skip
    finally:
        apply.down(cfg.name, volumes=True, client=docker_client)


def test_foreign_names_are_refused_before_anything_changes(docker_client, base_image):
    cfg = stack_config()
    foreign = docker_client.api.create_container(base_image, ["true"], name=f"{cfg.name}-ci")
    try:
        with pytest.raises(DockyardError, match=r"container \S+-ci already exist"):
            apply.up(cfg, client=docker_client)
        assert labelled(docker_client, cfg.name) == ([], [], [])
        assert docker_client.api.inspect_container(foreign["Id"])["Config"]["Cmd"] == ["true"]
    finally:
        docker_client.api.remove_container(foreign["Id"], force=True)


def test_demo_without_a_stack_says_how_to_start_one():
    with pytest.raises(DockyardError, match="the stack is not up"):
        demo.run(f"nostack-{secrets.token_hex(3)}")


def test_buildbot_preset_runs_a_real_build_that_pushes(docker_client, engine_image, base_image):
    from dockyard.images import builder
    from dockyard.stack.presets import buildbot

    builder.ensure("buildbot")
    cfg = stack_config(ci={"preset": "buildbot"})
    with stack_up(cfg, docker_client):
        ci = f"{cfg.name}-ci"
        number = buildbot.trigger(docker_client, ci)
        result = buildbot.follow(docker_client, ci, number, timeout=300)
        assert result.result == "success", result.log_tail
        assert [s.name for s in result.steps][1:] == ["build", "push", "digest"]
        assert result.digest
        assert result.digest.startswith("registry:5000/hello@sha256:")
        # The registry has what the build pushed, as seen from the CI container.
        tags = docker_client.api.exec_start(
            docker_client.api.exec_create(
                ci, ["curl", "-fsS", "http://registry:5000/v2/hello/tags/list"]
            )
        ).decode()
        assert f"build-{number}" in tags


def test_down_removes_what_the_ci_made_through_the_guard_and_nothing_else(
    docker_client, agent_image, base_image
):
    cfg = stack_config(docker="socket", registry={"enabled": False})
    stack = cfg.name
    host_volume = docker_client.api.create_volume(f"{stack}-host", labels=labels.managed("test"))
    foreign = labels.managed(labels.ROLE_GUARDED, owner=f"{stack}-other")
    other_volume = docker_client.api.create_volume(f"{stack}-other", labels=foreign)
    try:
        with stack_up(cfg, docker_client):

            def in_ci(script):
                exec_id = docker_client.api.exec_create(f"{stack}-ci", ["sh", "-c", script])["Id"]
                output = docker_client.api.exec_start(exec_id).decode()
                assert docker_client.api.exec_inspect(exec_id)["ExitCode"] == 0, output

            in_ci(
                f"printf 'FROM {base_image}\\nRUN echo built > /b\\n' |"
                f" DOCKER_BUILDKIT=1 docker build -t bk-{stack}:1 -"
            )
            in_ci(f"docker tag {base_image} tagged-{stack}:1")
            in_ci(f"docker network create net-{stack}")
            in_ci(f"docker run -d --name job-{stack} --network net-{stack} {base_image} sleep 300")
            in_ci(f"docker run -v vol-{stack}:/v {base_image} true")
            removed = apply.down(stack, volumes=True, client=docker_client)
        made = [f"image docker.io/library/bk-{stack}:1", f"network net-{stack}",
                f"volume vol-{stack}", f"image docker.io/library/tagged-{stack}:1",
                f"container job-{stack}"]  # fmt: skip
        for item in made:
            assert any(line.startswith(item) for line in removed), (item, removed)
        assert not docker_client.api.images(name=f"bk-{stack}")
        assert not docker_client.api.images(name=f"tagged-{stack}")
        assert docker_client.api.images(name=base_image)  # the shared base stays
        assert not docker_client.volumes.list(filters={"name": f"vol-{stack}"})
        assert not docker_client.networks.list(names=[f"net-{stack}"])
        left = {v["Name"] for v in docker_client.api.volumes()["Volumes"] or []}
        assert {host_volume["Name"], other_volume["Name"]} <= left
    finally:
        for volume in (host_volume, other_volume):
            with contextlib.suppress(Exception):
                docker_client.api.remove_volume(volume["Name"], force=True)
