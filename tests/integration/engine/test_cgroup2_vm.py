"""Engines on a cgroup v2 host: a Debian VM under qemu's software emulation, checked from here.

scripts/cgroup2-vm.sh boots the VM (its base disk cached by recipe hash), runs
cgroup2_vm_checks.py in it and brings back one JSON record per check; each test below asserts on
one. ``DOCKYARD_VM_RESULTS=FILE`` reads a run's results instead of booting (CI can run the
script once as a separate step); ``DOCKYARD_SKIP_VM=REASON`` skips, saying why (CI's nested
fresh machine, whose host already ran the VM in the same run). Otherwise skipped only when
qemu cannot be installed or the emulator hung on every boot (exit 77; the results then say
which, under "unavailable").
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "cgroup2-vm.sh"
NO_QEMU = 77
CHECKS = (
    "host_is_cgroup_v2",
    "engine_create",
    "prologue_nested_the_engine",
    "unlimited_inner_container_runs",
    "inner_limits_are_applied",
    "engine_cpu_quota",
    "oom_inside_kills_the_job_not_the_engine",
    "pids_limit_binds",
    "engine_rm_leaves_nothing",
)


@pytest.fixture(scope="module")
def vm_results(tmp_path_factory):
    if reason := os.environ.get("DOCKYARD_SKIP_VM"):
        pytest.skip(f"DOCKYARD_SKIP_VM: {reason}")
    given = os.environ.get("DOCKYARD_VM_RESULTS")
    if given and Path(given).is_file():
        return _usable(json.loads(Path(given).read_text()))
    out = tmp_path_factory.mktemp("cgroup2-vm") / "results.json"
    done = subprocess.run(
        [str(SCRIPT), str(out)], capture_output=True, text=True, timeout=1500, check=False
    )
    if done.returncode == NO_QEMU and not out.is_file():
        pytest.skip(f"qemu cannot be installed here: {done.stderr.strip()[-300:]}")
    assert done.returncode in (0, NO_QEMU), (
        f"cgroup2-vm.sh failed ({done.returncode}): {done.stderr[-3000:]}"
    )
    return _usable(json.loads(out.read_text()))


def _usable(results: dict) -> dict:
    if reason := results.get("unavailable"):
        pytest.skip(f"no cgroup v2 VM: {reason}")
    return results


def test_the_vm_ran_every_check(vm_results):
    assert "error" not in vm_results, vm_results.get("error")
    assert set(CHECKS) <= set(vm_results["checks"])


@pytest.mark.parametrize("name", CHECKS)
def test_check_passed_in_the_vm(vm_results, name):
    found = vm_results["checks"].get(name)
    assert found is not None, f"{name} did not run: {vm_results.get('error', '')[-1000:]}"
    assert found["ok"], f"{name}: {found['detail']}"


def test_the_engine_was_nested_by_a_private_cgroup_namespace(vm_results):
    engine = vm_results["facts"]["engine"]
    assert engine["cgroup_version"] == 2
    assert engine["cgroup_binding"] == "namespace"
    assert engine["limits_bind"] is True
