"""``dockyard serve`` as a process: the HTTP API, the CLI, kill -9 and recovery, gc."""

from __future__ import annotations

import os
import secrets
import signal
import socket as socket_module
import ssl
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from dockyard import pki
from dockyard.errors import DockyardError
from dockyard.pool import client, gc, inventory, service

pytestmark = pytest.mark.docker

# The commands as the CLI registers them (cli.py imports them the same way).
APP = (
    "import sys, typer\n"
    "from dockyard.pool import command\n"
    "app = typer.Typer()\n"
    "for f in (command.serve, command.lease, command.release, command.leases, command.gc):\n"
    "    app.command(f.__name__)(f)\n"
    "app()\n"
)


def dockyard(*args):
    done = subprocess.run(
        [sys.executable, "-c", APP, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def serve(tmp_path, engine_image, docker_client, tools):
    """Start (and restart) serve processes over one pool; kill them and purge the pool after."""
    pool = f"s{secrets.token_hex(3)}"
    socket = f"unix://{tmp_path}/serve.sock"
    processes = []

    def start(warm=1, max=2, listen=socket, server=socket):
        config = tmp_path / "pools.yaml"
        config.write_text(
            f"pools:\n  - name: {pool}\n    image: {engine_image}\n"
            f"    warm: {warm}\n    max: {max}\n    ttl: 10m\n"
        )
        log = (tmp_path / f"serve-{len(processes)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-c", APP, "serve", "--listen", listen, "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        api = client.Client(server, timeout=30)
        tools.wait_for(lambda: _answers(api), timeout=60, what="serve to answer")
        return api

    def kill():
        for process in processes:
            if process.poll() is None:
                process.kill()  # SIGKILL: no cleanup of any kind runs
                process.wait(timeout=10)

    yield SimpleNamespace(pool=pool, socket=socket, start=start, kill=kill)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    tools.purge(docker_client, pool)


def _answers(api):
    try:
        return api.call("GET", "/healthz") == {"ok": True}
    except DockyardError:
        return False


def idle(api, pool):
    return next(p for p in api.call("GET", "/pools") if p["name"] == pool)["idle"]


def test_serve_api_survives_kill_9_with_its_lease(serve, tools, job, docker_client):
    pool, socket = serve.pool, serve.socket
    api = serve.start()
    tools.wait_for(lambda: idle(api, pool) == 1, what="a warm engine")

    document = api.call("GET", "/openapi.json")
    assert document["openapi"].startswith("3.")
    assert {"/leases", "/leases/{id}", "/leases/{id}/renew", "/pools"} <= set(document["paths"])
    with pytest.raises(DockyardError, match=r"ttl_seconds.*HTTP 400"):
        api.call("POST", "/leases", {"pool": pool, "ttl_seconds": "1h"})
    with pytest.raises(DockyardError, match=r"HTTP 404"):
        api.call("GET", "/leases/nope")

    started = time.perf_counter()
    granted = api.call("POST", "/leases", {"pool": pool, "ttl_seconds": 600})
    print(f"warm lease over the unix socket: {(time.perf_counter() - started) * 1000:.1f} ms")
    assert granted["owner"].startswith(f"uid:{os.getuid()}")

    serve.kill()
    api = serve.start()
    listed = api.call("GET", "/leases")
    assert [item["id"] for item in listed] == [granted["id"]]
    grant = _Grant(granted)
    done = tools.sh(docker_client, job(grant), "docker version --format '{{.Server.Version}}'")
    assert done.code == 0, done.output

    # The CLI, as a CI script uses it.
    exports = dockyard("lease", "--pool", pool, "--server", socket).stdout
    variables = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
    assert set(variables) == {
        "DOCKER_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKYARD_LEASE",
    }
    assert os.path.isfile(os.path.join(variables["DOCKER_CERT_PATH"], "key.pem"))
    table = dockyard("leases", "--server", socket).stdout
    assert variables["DOCKYARD_LEASE"] in table
    dockyard("release", variables["DOCKYARD_LEASE"], "--server", socket)
    api.call("DELETE", f"/leases/{granted['id']}")
    assert api.call("GET", "/leases") == []


def test_gc_after_kill_9_mid_refill_leaves_nothing_of_the_pool(serve, tools, docker_client):
    pool = serve.pool
    serve.start(warm=3, max=3)
    selector = {"label": [*inventory.scope(), f"{inventory.POOL}={pool}"]}
    tools.wait_for(
        lambda: docker_client.api.containers(all=True, filters=selector), what="a refill to start"
    )
    serve.kill()

    preview = gc.run(
        docker_client, now=time.time(), certs=service.cert_root(), grace=0, pool=pool, dry_run=True
    )
    assert preview
    done = dockyard("gc", "--pool", pool, "--grace", "0s", "--json")
    assert '"removed"' in done.stdout
    assert docker_client.api.containers(all=True, filters=selector) == []
    assert (docker_client.api.volumes(filters=selector).get("Volumes") or []) == []
    assert docker_client.api.networks(filters=selector) == []


class _Grant:
    """The fields of a POST /leases answer the job fixture reads."""

    def __init__(self, document):
        self.environment = document["environment"]
        self.certificates = document["certificates"]
        self.network = document["network"]
        self.lease = service.leases.Lease(
            document["id"], document["pool"], document["engine"], None, document["expires_at"]
        )


def test_serve_over_tcp_knows_clients_by_certificate(serve, tools, monkeypatch):
    """The TCP listener is mutual TLS: no certificate (or one for the guard) gets nothing, and
    a lease is its certificate's: another client's cannot release it."""
    with socket_module.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = pki.PkiStore()
    issuer = pki.SERVICE_ISSUERS["serve"]
    tag = secrets.token_hex(3)
    names = {who: f"{who}-{tag}" for who in ("alice", "bob")}
    bundles = {
        who: store.client_dir(f"{issuer}.{name}", issuer, common_name=name)
        for who, name in names.items()
    }
    foreign = store.client_dir(f"service.guard.{tag}", pki.SERVICE_ISSUERS["guard"], tag)
    try:
        monkeypatch.setenv(client.CERT_ENV, str(bundles["alice"]))
        api = serve.start(listen=f"tcp://127.0.0.1:{port}", server=f"https://127.0.0.1:{port}")
        tools.wait_for(lambda: idle(api, serve.pool) == 1, what="a warm engine")
        granted = api.call("POST", "/leases", {"pool": serve.pool, "ttl_seconds": 600})
        assert granted["owner"] == f"cn:{names['alice']}"

        monkeypatch.setenv(client.CERT_ENV, str(bundles["bob"]))
        with pytest.raises(DockyardError, match=r"belongs to cn:alice.*HTTP 403"):
            api.call("DELETE", f"/leases/{granted['id']}")
        monkeypatch.setenv(client.CERT_ENV, str(foreign))
        with pytest.raises(DockyardError, match="does not answer"):
            api.call("GET", "/leases")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _ask_without_certificate(port, bundles["alice"] / "ca.pem")

        monkeypatch.setenv(client.CERT_ENV, str(bundles["alice"]))
        api.call("DELETE", f"/leases/{granted['id']}")
        assert api.call("GET", "/leases") == []
    finally:
        for name in [*(f"{issuer}.{name}" for name in names.values()), f"service.guard.{tag}"]:
            store.remove_client(name)


def _ask_without_certificate(port, cafile):
    """(TLS 1.3 reports a refused handshake at the first read.)"""
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket_module.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /leases HTTP/1.1\r\nHost: x\r\n\r\n")
        return tls.recv(100)
