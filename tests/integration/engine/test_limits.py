"""An engine's --memory, --pids and --cpus bind what runs inside it, on this host's cgroups."""

from __future__ import annotations

import pytest

from dockyard import archive, config, labels
from dockyard.engine import service, spec, startup
from dockyard.errors import DockyardError

pytestmark = pytest.mark.docker


def inner(docker_client, engine, script, *run_args):
    """``docker run`` of the seeded base image inside the engine; (exit code, output)."""
    info, image = engine
    exec_id = docker_client.api.exec_create(
        info.container,
        ["docker", "run", "--rm", *run_args, image, "sh", "-c", script],
    )["Id"]
    output = docker_client.api.exec_start(exec_id).decode(errors="replace")
    return docker_client.api.exec_inspect(exec_id)["ExitCode"], output


def in_engine(docker_client, engine, script):
    exec_id = docker_client.api.exec_create(engine[0].container, ["sh", "-c", script])["Id"]
    output = docker_client.api.exec_start(exec_id).decode(errors="replace")
    assert docker_client.api.exec_inspect(exec_id)["ExitCode"] == 0, output
    return output


@pytest.fixture(scope="module")
def limited(docker_client, engine_image, base_image):
    import secrets

    name = f"lim-{secrets.token_hex(3)}"
    options = config.validate(
        config.EngineOptions, {"name": name, "memory": "300m", "pids": 200, "cpus": 1}
    )
    created = service.create(options, client=docker_client)
    service.seed(name, [base_image], client=docker_client)
    yield created.info, base_image
    service.rm(name, volumes=True, client=docker_client)


def test_engine_says_its_limits_bind(docker_client, limited):
    host_version = int(docker_client.info().get("CgroupVersion") or 1)
    listed = {e.name: e for e in service.ls(docker_client)}[limited[0].name]
    assert listed.cgroup_version == host_version
    assert listed.limits_bind is True
    assert listed.as_dict()["cgroup_binding"] in ("parent", "namespace")


def test_memory_beyond_the_engine_limit_is_oom_killed_and_the_engine_survives(
    docker_client, limited
):
    # dd's 600 MB block buffer is allocated and filled: more than the engine's 300 MB.
    code, output = inner(
        docker_client, limited, "dd if=/dev/zero of=/dev/null bs=600M count=1; echo rc=$?"
    )
    assert code == 0, output
    assert "rc=137" in output  # SIGKILL by the OOM killer
    state = docker_client.api.inspect_container(limited[0].container)["State"]
    assert state["Running"] is True
    assert state["OOMKilled"] is False
    # Well under the limit still works: the engine is usable after the kill.
    code, output = inner(docker_client, limited, "dd if=/dev/zero of=/dev/null bs=50M count=1")
    assert code == 0, output


def test_pids_limit_binds_inner_containers(docker_client, limited):
    _, output = inner(
        docker_client,
        limited,
        "i=0; while [ $i -lt 300 ]; do sleep 30 & i=$((i+1)); done; echo started $i",
    )
    assert "started 300" not in output
    assert "can't fork" in output or "Resource temporarily unavailable" in output


def test_inner_containers_sit_beneath_the_engine_and_its_cpu_quota(docker_client, limited):
    code, output = inner(docker_client, limited, "cat /proc/self/cgroup")
    assert code == 0, output
    status = startup.parse_status(in_engine(docker_client, limited, f"cat {startup.STATUS_PATH}"))
    if status["cgroup"] == "1":
        engine_cgroup = status["parent"]
        cpu_line = next(line for line in output.splitlines() if ":cpu," in line or ":cpu:" in line)
        inner_cgroup = cpu_line.split(":", 2)[2]
        assert inner_cgroup.startswith(engine_cgroup + "/")
        quota = in_engine(
            docker_client,
            limited,
            f"cat /sys/fs/cgroup/cpu{engine_cgroup}/cpu.cfs_quota_us "
            f"/sys/fs/cgroup/cpu{engine_cgroup}/cpu.cfs_period_us",
        ).split()
        assert int(quota[0]) == int(quota[1])  # --cpus 1: one period's worth per period
    else:
        assert in_engine(docker_client, limited, "cat /sys/fs/cgroup/cpu.max").split()[0] == (
            "100000"
        )


def test_inner_limits_are_applied_beneath_the_engine(docker_client, limited):
    code, output = inner(
        docker_client,
        limited,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
        " || cat /sys/fs/cgroup/memory.max",
        "-m",
        "100m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
    )
    assert code == 0, output
    assert output.split()[-1] == str(100 * 1024 * 1024)


def test_an_engine_that_cannot_nest_is_refused_in_one_line_and_removed(
    docker_client, engine_image, unique, monkeypatch
):
    name = unique("ronest")
    real = spec.host_config

    def read_only_cgroups(*args, **kwargs):
        # A private cgroup namespace without --privileged: Docker mounts the tree read-only.
        found = real(*args, **kwargs)
        found.pop("Binds", None)
        found["CgroupnsMode"] = "private"
        return found

    monkeypatch.setattr(spec, "host_config", read_only_cgroups)
    with pytest.raises(DockyardError) as caught:
        service.create(
            config.validate(config.EngineOptions, {"name": name, "memory": "300m"}),
            client=docker_client,
        )
    error = caught.value
    assert "cannot start" in error.message
    assert "not writable" in error.message or "read-only" in error.message
    assert error.fix
    assert "\n" not in str(error)
    selector = {"label": labels.selector(engine=name)}
    assert docker_client.api.containers(all=True, filters=selector) == []
    assert not docker_client.api.volumes(filters=selector)["Volumes"]
    assert docker_client.api.networks(filters=selector) == []


def test_a_killed_engine_starts_again_despite_its_stale_pid_file(
    docker_client, engine_image, unique
):
    from dockyard.engine import readiness

    name = unique("stale")
    created = service.create(
        config.validate(config.EngineOptions, {"name": name}), client=docker_client
    )
    try:
        cid = created.info.container
        docker_client.api.kill(cid, signal="SIGKILL")  # dockerd gets no chance to clean up
        stale, _ = docker_client.api.get_archive(cid, "/var/run/docker.pid")
        assert b"".join(stale)  # the pid file survived in the container's filesystem
        # After a restart its pid can be a live process (here the init's): dockerd then
        # refuses ("pid file found, ensure docker is not running") unless it is removed.
        docker_client.api.put_archive(cid, "/var/run", archive.tar({"docker.pid": b"1\n"}))
        docker_client.api.start(cid)
        engine_spec = spec.EngineSpec(
            name=name, image=engine_image, network=created.info.network,
            cache_volume=created.info.cache_volume, mtu=created.info.mtu,
            privilege=spec.Mode(created.info.privilege),
        )  # fmt: skip
        assert readiness.wait(docker_client, cid, engine_spec, timeout=60) == "overlay2"
    finally:
        service.rm(name, volumes=True, client=docker_client)
