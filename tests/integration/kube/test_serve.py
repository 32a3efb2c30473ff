"""``dockyard serve --backend kubernetes`` as a process: kill -9 during a lease, restart, the
lease is recovered from the namespace's labels and still opens its engine; a second serve of a
pool is refused while the first holds its Lease; a standalone gc spares a live serve's pool
and, once that serve is killed, leaves nothing labelled in the namespace."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from dockyard.errors import DockyardError
from dockyard.kube import serving
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


def test_one_serve_per_pool_and_a_standalone_gc_after_it_is_killed(kubeconfig, cluster, tmp_path):
    config = tmp_path / "pools.yaml"
    config.write_text("pools:\n  - name: kgc\n    image: dockyard/engine:0.1\n    warm: 1\n")
    where = ["--backend", "kubernetes", "--kubeconfig", kubeconfig, "--namespace",
             cluster.namespace]  # fmt: skip

    def serve(n):
        return [sys.executable, "-c", APP, "serve", *where, "--config", str(config),
                "--listen", f"unix://{tmp_path}/serve-{n}.sock"]  # fmt: skip

    def gc():
        done = subprocess.run(
            [sys.executable, "-m", "dockyard", "gc", *where, "--grace", "0s", "--json"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return {(r["kind"], r["name"]) for r in json.loads(done.stdout)["removed"]}

    log = tmp_path / "serve-0.log"
    first = subprocess.Popen(serve(0), stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        api = client.Client(f"unix://{tmp_path}/serve-0.sock", timeout=60)
        deadline = time.monotonic() + 120
        while not _answers(api) or api.call("GET", "/pools")[0]["idle"] < 1:
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no warm engine pod"
            time.sleep(0.5)
        granted = api.call("POST", "/leases", {"pool": "kgc", "ttl_seconds": 600})
        second = subprocess.run(serve(1), capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert "pool kgc is served by" in second.stderr, second.stderr
        # A live serve's pool: gc leaves its engines, its lease and its Lease alone.
        assert gc() == set()
        first.kill()  # SIGKILL: its Lease stays, held by a process that is provably gone
        first.wait(timeout=10)
        removed = gc()
        assert ("engine", granted["engine"]) in removed
        assert ("serve", "dockyard-serve-kgc") in removed
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=10)
    selector = "io.dockyard.managed=true"
    for kind in ("pod", "secret", "persistent_volume_claim", "service"):
        items = getattr(cluster.core, f"list_namespaced_{kind}")(
            cluster.namespace, label_selector=selector
        ).items
        left = [i.metadata.name for i in items if not i.metadata.deletion_timestamp]
        assert left == [], f"{kind}: {left}"
    leases = serving.Leases(cluster).held()
    assert leases == []


def test_a_serve_that_stalled_past_its_lease_stops_rather_than_take_the_pool_back(
    kubeconfig, cluster, tmp_path
):
    config = tmp_path / "pools.yaml"
    config.write_text("pools:\n  - name: kst\n    image: dockyard/engine:0.1\n    warm: 0\n")
    where = ["--backend", "kubernetes", "--kubeconfig", kubeconfig, "--namespace",
             cluster.namespace, "--config", str(config)]  # fmt: skip
    leases = serving.Leases(cluster)
    started = []

    def serve(n):
        log = (tmp_path / f"serve-{n}.log").open("w")
        command = [sys.executable, "-c", APP, "serve", *where,
                   "--listen", f"unix://{tmp_path}/serve-{n}.sock"]  # fmt: skip
        started.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        api = client.Client(f"unix://{tmp_path}/serve-{n}.sock", timeout=30)
        deadline = time.monotonic() + 60
        while not _answers(api):
            assert started[-1].poll() is None, (tmp_path / f"serve-{n}.log").read_text()
            assert time.monotonic() < deadline, "serve never answered"
            time.sleep(0.3)
        return started[-1]

    try:
        first = serve(0)
        first.send_signal(signal.SIGSTOP)  # stalls: alive, but renews nothing
        deadline = time.monotonic() + serving.DURATION + 20
        while any(h.fresh(time.time()) for h in leases.held()):
            assert time.monotonic() < deadline, "the stalled serve's Lease never went stale"
            time.sleep(1)
        second = serve(1)
        (taken,) = leases.held()
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=30) == 1
        said = (tmp_path / "serve-0.log").read_text()
        assert "serve stopped: pool kst is served by" in said, said
        assert second.poll() is None
        assert [h.holder for h in leases.held()] == [taken.holder]
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
                process.wait(timeout=30)
