"""``dockyard serve --backend kubernetes`` as a process: kill -9 during a lease, restart, the
lease is recovered from the namespace's labels and still opens its engine."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from dockyard.errors import DockyardError
from dockyard.pool import client

pytestmark = [pytest.mark.docker, pytest.mark.kube]
APP = (
    "import typer\n"
    "from dockyard.pool import command\n"
    "app = typer.Typer()\n"
    "for f in (command.serve, command.lease, command.release, command.leases):\n"
    "    app.command(f.__name__)(f)\n"
    "app()\n"
)


def _answers(api) -> bool:
    try:
        return api.call("GET", "/healthz") == {"ok": True}
    except DockyardError:
        return False


def test_kill_9_during_a_lease_then_restart_recovers_it(
    kubeconfig, cluster, tmp_path, jobs, unique
):
    config = tmp_path / "pools.yaml"
    config.write_text("pools:\n  - name: kci\n    image: dockyard/engine:0.1\n    warm: 1\n")
    socket = f"unix://{tmp_path}/serve.sock"
    command = [sys.executable, "-c", APP, "serve", "--backend", "kubernetes", "--kubeconfig",
               kubeconfig, "--namespace", cluster.namespace, "--config", str(config),
               "--listen", socket]  # fmt: skip
    processes = []

    def start():
        log = (tmp_path / f"serve-{len(processes)}.log").open("w")
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        api = client.Client(socket, timeout=60)
        deadline = time.monotonic() + 60
        while not _answers(api):
            assert time.monotonic() < deadline, (tmp_path / "serve-0.log").read_text()
            time.sleep(0.3)
        return api

    try:
        api = start()
        deadline = time.monotonic() + 120
        while next(p for p in api.call("GET", "/pools"))["idle"] < 1:
            assert time.monotonic() < deadline, "no warm engine pod"
            time.sleep(0.5)
        granted = api.call("POST", "/leases", {"pool": "kci", "ttl_seconds": 600})
        processes[-1].kill()  # SIGKILL: no cleanup of any kind runs
        processes[-1].wait(timeout=10)
        api = start()
        assert [item["id"] for item in api.call("GET", "/leases")] == [granted["id"]]
        env = {k: v for k, v in granted["environment"].items() if k.startswith("DOCKER_")}
        secret = granted["environment"]["DOCKYARD_CLIENT_SECRET"]
        code, log = jobs.run_job(cluster, unique("after-kill"), "docker version", env, secret)
        assert code == 0, log
        api.call("DELETE", f"/leases/{granted['id']}")
        assert api.call("GET", "/leases") == []
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
