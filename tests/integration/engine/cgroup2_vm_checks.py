"""Engine checks run INSIDE the cgroup v2 VM (scripts/cgroup2-vm.sh); not a pytest module.

Usage: python cgroup2_vm_checks.py RESULTS.json. Every check is recorded (ok, detail, seconds)
whatever the others did, so test_cgroup2_vm.py asserts on each one back on the host.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

ENGINE = "vm-lim"
IMAGE = "dockyard/engine:0.1"
BASE = "dockyard/base:0.1"
results: dict[str, Any] = {"checks": {}, "facts": {}}


def sh(*argv: str, timeout: float = 300) -> tuple[int, str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


def inner(script: str, *run_args: str) -> tuple[int, str]:
    """``docker run`` of the base image inside the engine."""
    return sh(
        "docker", "exec", ENGINE, "docker", "run", "--rm", *run_args, BASE, "sh", "-c", script
    )  # fmt: skip


def check(name: str) -> Callable[[Callable[[], tuple[bool, str]]], None]:
    def record(body: Callable[[], tuple[bool, str]]) -> None:
        started = time.monotonic()
        try:
            ok, detail = body()
        except Exception:  # every failure becomes a recorded result
            ok, detail = False, traceback.format_exc(limit=3)
        results["checks"][name] = {
            "ok": ok,
            "detail": detail[-2000:],
            "seconds": round(time.monotonic() - started, 2),
        }
        print(f"{name}: {'ok' if ok else 'FAILED'} {detail[-300:]}", flush=True)

    return record


def main(out: str) -> None:
    from dockyard import config, docker_api
    from dockyard.engine import service

    client = docker_api.connect()
    info = client.info()
    results["facts"] |= {
        "kernel": info.get("KernelVersion"),
        "cgroup_version": info.get("CgroupVersion"),
        "cgroup_driver": info.get("CgroupDriver"),
        "docker": info.get("ServerVersion"),
    }

    @check("host_is_cgroup_v2")
    def _() -> tuple[bool, str]:
        return str(info.get("CgroupVersion")) == "2", f"CgroupVersion {info.get('CgroupVersion')}"

    @check("engine_create")
    def _() -> tuple[bool, str]:
        options = config.validate(
            config.EngineOptions,
            {"name": ENGINE, "image": IMAGE, "memory": "300m", "cpus": 1, "pids": 200,
             "ready_timeout": 240},
        )  # fmt: skip
        created = service.create(options, client=client)
        results["facts"]["engine"] = created.info.as_dict()
        results["facts"]["create_seconds"] = created.seconds
        service.seed(ENGINE, [BASE], client=client)
        engine = created.info
        ok = engine.state == "running" and engine.limits_bind and engine.cgroup_version == 2
        return ok, json.dumps(engine.as_dict())

    @check("prologue_nested_the_engine")
    def _() -> tuple[bool, str]:
        code, status = sh("docker", "exec", ENGINE, "cat", "/run/dockyard/cgroup")
        _, subtree = sh("docker", "exec", ENGINE, "cat", "/sys/fs/cgroup/cgroup.subtree_control")
        ok = code == 0 and "cgroup=2" in status and "memory" in subtree and "pids" in subtree
        return ok, f"{status} | subtree_control: {subtree}"

    @check("unlimited_inner_container_runs")
    def _() -> tuple[bool, str]:
        code, output = inner("echo hi")
        return code == 0 and output.endswith("hi"), output

    @check("inner_limits_are_applied")
    def _() -> tuple[bool, str]:
        code, output = inner(
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max",
            "-m", "100m", "--cpus", "0.5", "--pids-limit", "50",
        )  # fmt: skip
        ok = code == 0 and output.split()[-4:] == [str(100 * 1024 * 1024), "50000", "100000", "50"]
        return ok, output

    @check("engine_cpu_quota")
    def _() -> tuple[bool, str]:
        code, output = sh("docker", "exec", ENGINE, "cat", "/sys/fs/cgroup/cpu.max")
        return code == 0 and output.split() == ["100000", "100000"], output

    @check("oom_inside_kills_the_job_not_the_engine")
    def _() -> tuple[bool, str]:
        _, output = inner("dd if=/dev/zero of=/dev/null bs=600M count=1; echo rc=$?")
        state = client.api.inspect_container(ENGINE)["State"]
        _, after = inner("echo still-serving")
        ok = (
            "rc=137" in output
            and state["Running"]
            and not state["OOMKilled"]
            and after.endswith("still-serving")
        )
        return ok, f"{output} | engine running={state['Running']} oom={state['OOMKilled']}"

    @check("pids_limit_binds")
    def _() -> tuple[bool, str]:
        _, output = inner(
            "i=0; while [ $i -lt 300 ]; do sleep 30 & i=$((i+1)); done; echo started $i"
        )
        ok = "started 300" not in output and (
            "can't fork" in output or "Resource temporarily unavailable" in output
        )
        return ok, output[-500:]

    @check("engine_rm_leaves_nothing")
    def _() -> tuple[bool, str]:
        service.rm(ENGINE, volumes=True, client=client)
        selector = {"label": f"io.dockyard.engine={ENGINE}"}
        left = (
            client.api.containers(all=True, filters=selector)
            + (client.api.volumes(filters=selector).get("Volumes") or [])
            + client.api.networks(filters=selector)
        )
        return not left, json.dumps(left)[-500:]

    with open(out, "w") as sink:
        json.dump(results, sink, indent=2)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception:  # whatever happened goes back to the host
        results["error"] = traceback.format_exc()
        with open(sys.argv[1], "w") as sink:
            json.dump(results, sink, indent=2)
