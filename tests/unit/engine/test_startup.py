"""The engine start prologue, run by the shells of both images on made-up trees."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.engine import startup

ENGINE_ID = "/docker/0123abcd"
V1_CGROUP = (
    "".join(
        f"{n}:{c}:{ENGINE_ID}\n"
        for n, c in enumerate(["cpu", "cpuacct", "cpuset", "memory", "devices", "pids"], 1)
    )
    + f"12:name=systemd:{ENGINE_ID}\n0::{ENGINE_ID}\n"
)

# dash is Debian's sh (dockyard's image); busybox ash is docker:dind's.
SHELLS = [
    pytest.param(["sh"], id="sh"),
    pytest.param(
        ["busybox", "sh"],
        id="busybox",
        marks=pytest.mark.skipif(not shutil.which("busybox"), reason="busybox not installed"),
    ),
]


def run(shell: list[str], root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = root / "start.sh"
    script.write_bytes(startup.script())
    return subprocess.run(
        [*shell, str(script), "echo", "dockerd", *args],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DOCKYARD_START_ROOT": str(root),
             "DOCKER_IPTABLES_LEGACY": "0"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def v1_tree(root: Path, cgroup: str = V1_CGROUP, own_dir: bool = True) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(cgroup)
    (root / "sys/fs/cgroup/memory").mkdir(parents=True)
    if own_dir:
        (root / f"sys/fs/cgroup/memory{ENGINE_ID}").mkdir(parents=True)
    return root


@pytest.mark.parametrize("shell", SHELLS)
def test_parses_in_both_images_shells(shell, tmp_path):
    script = tmp_path / "start.sh"
    script.write_bytes(startup.script())
    checked = subprocess.run(
        [*shell, "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_has_no_bashisms():
    text = startup.script().decode()
    for bashism in ("[[", "function ", "${!", "<<<", "$'", "pipefail", "declare "):
        assert bashism not in text
    assert not re.search(r"^\s*(local|source)\s", text, re.MULTILINE)


@pytest.mark.parametrize("shell", SHELLS)
def test_v1_host_namespace_nests_inner_containers_under_the_engine(shell, tmp_path):
    done = run(shell, v1_tree(tmp_path), "--init-flag-kept")
    assert done.returncode == 0, done.stderr
    # dockerd gets its own command line untouched, plus the engine's cgroup as parent.
    assert done.stdout.split() == ["dockerd", "--init-flag-kept", f"--cgroup-parent={ENGINE_ID}"]
    status = startup.parse_status((tmp_path / startup.STATUS_PATH.lstrip("/")).read_text())
    assert status == {"iptables": "default", "cgroup": "1", "parent": ENGINE_ID}


@pytest.mark.parametrize("shell", SHELLS)
def test_v1_private_namespace_needs_no_parent(shell, tmp_path):
    private = "".join(line.split(":")[0] + ":" + line.split(":")[1] + ":/\n"
                      for line in V1_CGROUP.splitlines())  # fmt: skip
    done = run(shell, v1_tree(tmp_path, private, own_dir=False))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["dockerd"]


def mountinfo(root: Path, point: str, fsroot: str) -> None:
    (root / "proc/self/mountinfo").write_text(
        "22 1 0:20 / / rw - overlay overlay rw\n"
        f"95 91 0:32 {fsroot} {point} rw,relatime - cgroup cgroup rw,memory\n"
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_v1_pod_sees_only_its_own_subtree_mounted_and_needs_no_parent(shell, tmp_path):
    # A privileged pod on a cgroup v1 node: runc mounts the container's own memory cgroup at
    # /sys/fs/cgroup/memory, while /proc/self/cgroup names the whole path.
    pod = "/kubepods/burstable/pod4efe/a316"
    tree = v1_tree(tmp_path, V1_CGROUP.replace(ENGINE_ID, pod), own_dir=False)
    mountinfo(tree, "/sys/fs/cgroup/memory", pod)
    done = run(shell, tree)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["dockerd"]  # /docker under the mount is beneath the pod


@pytest.mark.parametrize("shell", SHELLS)
def test_v1_mount_of_a_parent_subtree_gives_the_path_beneath_it(shell, tmp_path):
    tree = v1_tree(tmp_path, V1_CGROUP.replace(ENGINE_ID, "/node" + ENGINE_ID))
    mountinfo(tree, "/sys/fs/cgroup/memory", "/node")
    done = run(shell, tree)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["dockerd", f"--cgroup-parent={ENGINE_ID}"]


@pytest.mark.parametrize("shell", SHELLS)
def test_v1_mount_that_does_not_show_the_engine_refuses(shell, tmp_path):
    tree = v1_tree(tmp_path, own_dir=False)
    mountinfo(tree, "/sys/fs/cgroup/memory", "/elsewhere")
    done = run(shell, tree)
    assert done.returncode == startup.REFUSED
    reason = startup.refusal(done.stderr) or ""
    assert f"{ENGINE_ID} is outside the memory cgroup mount (which shows /elsewhere)" in reason


@pytest.mark.parametrize("shell", SHELLS)
def test_v1_engine_that_cannot_see_its_cgroup_refuses_in_one_line(shell, tmp_path):
    done = run(shell, v1_tree(tmp_path, own_dir=False))
    assert done.returncode == startup.REFUSED
    assert done.stdout == ""  # dockerd never ran
    reason = startup.refusal(done.stderr)
    assert reason is not None
    assert f"memory{ENGINE_ID} is not visible" in reason
    assert "; fix: " in reason
    assert len([line for line in done.stderr.splitlines() if startup.MARK in line]) == 1


@pytest.mark.parametrize("shell", SHELLS)
def test_stale_pid_files_are_removed(shell, tmp_path):
    v1_tree(tmp_path)
    pid_files = [tmp_path / "run/docker.pid", tmp_path / "run/docker/containerd/containerd.pid"]
    for path in pid_files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("4242\n")
    assert run(shell, tmp_path).returncode == 0
    assert not any(path.exists() for path in pid_files)


@pytest.mark.parametrize("shell", SHELLS)
def test_legacy_iptables_when_asked_comes_first_on_path(shell, tmp_path):
    v1_tree(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore"):
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    script = tmp_path / "start.sh"
    script.write_bytes(startup.script())
    done = subprocess.run(
        [*shell, str(script), "sh", "-c", 'echo "$PATH"; readlink "${PATH%%:*}/iptables"'],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "DOCKYARD_START_ROOT": str(tmp_path),
             "DOCKER_IPTABLES_LEGACY": "1"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, target = done.stdout.split()[:2]
    assert first.startswith(f"{tmp_path}{startup.LEGACY_DIR}:")
    assert target == str(bin_dir / "iptables-legacy")


def test_command_runs_the_prologue_then_dockerd_with_its_arguments():
    entrypoint, cmd = startup.command(["--tlsverify", "--mtu=1450"])
    assert entrypoint == ["sh", startup.PATH]
    assert cmd == ["dockerd", "--tlsverify", "--mtu=1450"]


def test_refusal_is_the_last_marked_line():
    log = f"noise\n{startup.MARK} first\nmore noise\n{startup.MARK} the reason; fix: this\n"
    assert startup.refusal(log) == "the reason; fix: this"
    assert startup.refusal("dockerd: level=info\n") is None


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("given", "left"),
    [("990", "-500"), ("1", "-500"), ("0", "0"), ("-999", "-999")],
    ids=["pod-qos", "positive", "zero", "negative"],
)
def test_a_positive_oom_score_adj_is_lowered_so_jobs_die_first(shell, tmp_path, given, left):
    tree = v1_tree(tmp_path)
    (tree / "proc/self/oom_score_adj").write_text(f"{given}\n")
    done = run(shell, tree)
    assert done.returncode == 0, done.stderr
    assert (tree / "proc/self/oom_score_adj").read_text().strip() == left
    status = startup.parse_status((tmp_path / startup.STATUS_PATH.lstrip("/")).read_text())
    assert status["oom_score_adj"] == left
