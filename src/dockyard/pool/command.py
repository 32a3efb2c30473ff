"""The pool commands: ``serve`` runs the control plane; ``lease``, ``release`` and ``leases``
talk to it; ``gc`` reaps locally. Parse, call, render (rich, or ``--json``); no logic."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from dockyard import ui
from dockyard.errors import DockyardError
from dockyard.kube import command as kube_command

if TYPE_CHECKING:  # (loaded when serve runs)
    from dockyard.pool.service import PoolService

out, err = ui.out, ui.err

Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="DOCKYARD_SERVER",
        help="where dockyard serve listens: unix:///PATH or https://HOST:PORT "
        "\\[default: unix://<state dir>/serve.sock]",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def serve(
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="unix:///PATH (mode 0660), or tcp://HOST:PORT with mutual TLS (clients need "
            "a certificate from dockyard's CA) \\[default: unix://<state dir>/serve.sock]",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="pools.yaml (see docs/POOLS.md); default: one pool 'default', warm 2, max 8",
        ),
    ] = None,
    backend: kube_command.BackendOption = "docker",
    kubeconfig: kube_command.KubeconfigOption = None,
    namespace: kube_command.NamespaceOption = None,
) -> None:
    """Run the pool service: keep warm engines, hand out leases, reap what jobs leave.

    Everything is recovered from Docker labels at start (even after kill -9): leases stay
    valid across restarts. gc runs at start and every minute. Stop with Ctrl-C or SIGTERM;
    engines and leases stay for the next start.
    """
    from dockyard.pool import api
    from dockyard.pool import config as pool_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pools = ui.run(lambda: pool_config.load(config))
    svc = ui.run(lambda: _service(pools, backend, kubeconfig, namespace))
    removed = ui.run(svc.start)
    where = listen or api.default_socket()
    server = ui.run(lambda: api.make_server(svc, where))
    for line in removed:
        err.print(f"[dim]recovered: {escape(line)}[/]", highlight=False)
    names = ", ".join(f"{p.name} (warm {p.warm}, max {p.max}, {p.cache})" for p in pools)
    err.print(f"serving {names} on {where}", highlight=False)

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    svc.on_lost = stop
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        svc.stop()
    if svc.lost:
        ui.run(lambda: _raise_lost(svc.lost or ""))


def _raise_lost(why: str) -> None:
    raise DockyardError(f"serve stopped: {why}", fix="run one serve per pool")


def _service(
    pools: Any, backend: str, kubeconfig: str | None, namespace: str | None
) -> PoolService:
    if backend == "kubernetes":
        from dockyard.kube import cluster
        from dockyard.kube.pool import KubePoolService

        return KubePoolService(pools, cluster.connect(kubeconfig, namespace))
    from dockyard.pool.service import PoolService

    return PoolService(pools)


def lease(  # noqa: PLR0917 (typer reads the options from the parameters)
    pool: Annotated[str, typer.Option("--pool", "-p", help="pool to lease from")] = "default",
    cache_key: Annotated[
        str | None,
        typer.Option("--cache-key", "-k", help="keyed pools: whose cache, e.g. the repository"),
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="lease length, e.g. 30m, 1h \\[default: the pool's]"),
    ] = None,
    output: Annotated[
        Literal["env", "json"],
        typer.Option("--format", help="env: export lines for eval; json: the whole lease"),
    ] = "env",
    cert_dir: Annotated[
        Path | None,
        typer.Option(
            "--cert-dir",
            help="write ca.pem, cert.pem, key.pem here \\[default: <state dir>/leases/ID]",
        ),
    ] = None,
    server: Server = None,
) -> None:
    """Lease an engine of your own for one job; prints the environment for eval.

    In a CI step: eval "$(dockyard lease --pool ci)", then docker build and push as usual,
    then dockyard release. The exports are DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
    and DOCKYARD_LEASE. The engine answers on the pool's network: run the job there.
    """
    from dockyard.pool import client, config

    body: dict[str, Any] = {"pool": pool}
    if cache_key is not None:
        body["cache_key"] = cache_key
    if ttl is not None:
        body["ttl_seconds"] = ui.run(lambda: _duration(ttl, config.parse_duration))
    grant = ui.run(lambda: client.Client(server).call("POST", "/leases", body))
    directory = cert_dir or _default_cert_dir(grant["id"])
    _write_bundle(directory, grant["certificates"])
    grant["environment"]["DOCKER_CERT_PATH"] = str(directory)
    if output == "json":
        typer.echo(json.dumps(grant, indent=2))
        return
    variables = {**grant["environment"], "DOCKYARD_LEASE": grant["id"]}
    for name, value in variables.items():
        typer.echo(f"export {name}={shlex.quote(value)}")
    err.print(
        f"# lease {grant['id']}: engine {grant['engine']} on network {grant['network']}, "
        f"expires in {_left(grant['expires_at'])}",
        highlight=False,
    )


def release(
    lease_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[LEASE]", help="lease ID \\[default: $DOCKYARD_LEASE]", show_default=False
        ),
    ] = None,
    server: Server = None,
) -> None:
    """End a lease: its engine, data and certificate issuer are destroyed at once."""
    from dockyard.pool import client

    wanted = lease_id or os.environ.get("DOCKYARD_LEASE")
    if not wanted:
        err.print("[bold red]error:[/] no lease given and DOCKYARD_LEASE is not set")
        err.print("[bold]fix:[/] pass the ID (dockyard leases lists them)")
        raise typer.Exit(1)
    ended = ui.run(lambda: client.Client(server).call("DELETE", f"/leases/{wanted}"))
    local = _default_cert_dir(wanted)
    if local.is_dir():
        import shutil

        shutil.rmtree(local, ignore_errors=True)
    err.print(f"released {wanted}: engine {ended['engine']} removed", highlight=False)


def leases(server: Server = None, as_json: Json = False) -> None:
    """List live leases: engine, pool, cache key, time left, and who asked."""
    from dockyard.pool import client

    found = ui.run(lambda: client.Client(server).call("GET", "/leases"))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table("lease", "pool", "engine", "cache key", "expires in", "owner", "seeded")
    for item in found:
        table.add_row(
            item["id"],
            item["pool"],
            item["engine"],
            item.get("cache_key") or "-",
            _left(item["expires_at"]),
            item.get("owner") or "-",
            ", ".join(item.get("images") or ()) or "-",
        )
    out.print(table)


def pools(server: Server = None, as_json: Json = False) -> None:
    """Each served pool: engines idle, leased and starting, its cache (hits, misses, size)
    and the images its warm engines hold."""
    from dockyard.pool import client

    found = ui.run(lambda: client.Client(server).call("GET", "/pools"))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table("pool", "idle", "leased", "creating", "max", "mirror", "seed")
    for item in found:
        cache = item.get("mirror") or {}
        shown = "-"
        if cache:
            shown = cache.get("problem") or (
                f"{cache.get('upstream')}: {cache.get('hits', 0)} hits, "
                f"{cache.get('misses', 0)} misses, {cache.get('size', 0) / 1024**2:.0f} of "
                f"{cache.get('max_size', 0) / 1024**2:.0f} MiB"
            )
        held = [e for e in item.get("engines") or () if e.get("images")]
        seed = ", ".join(item.get("seed") or ()) or "-"
        if item.get("seed"):
            seed += f" ({len(held)} engine(s) hold it)"
        table.add_row(
            item["name"],
            str(item["idle"]),
            str(item["leased"]),
            str(item["creating"]),
            str(item["max"]),
            escape(shown),
            escape(seed),
        )
    out.print(table)


def gc(  # noqa: PLR0917 (typer reads the options from the parameters)
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list, remove nothing")] = False,
    pool: Annotated[str | None, typer.Option("--pool", help="only this pool's objects")] = None,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="leave alone what is younger than this and may still be in creation",
        ),
    ] = "5m",
    as_json: Json = False,
    backend: kube_command.BackendOption = "docker",
    kubeconfig: kube_command.KubeconfigOption = None,
    namespace: kube_command.NamespaceOption = None,
) -> None:
    """Remove what dockyard made that no live lease, served pool or stack owns.

    Pool engines whose lease ended or that nobody serves, expired lease markers, networks
    and data volumes of gone engines, left-over probe/client containers, certificate
    directories of ended leases, keyed caches beyond their age and count limits; standalone
    engines that never became ready (a killed engine create, unless a create of it runs);
    whatever a command that is gone made for its own run (a killed demo's verify engine).
    Never: stacks, ready standalone engines and their caches, and anything outside
    DOCKYARD_LABELS when it is set.

    With --backend kubernetes, in the namespace only: engine pods, lease markers, client
    Secrets and cache claims of pools no live serve holds (a serve renews a coordination
    Lease per pool), and the Leases of serves that are gone.
    """
    from dockyard import docker_api
    from dockyard.pool import config
    from dockyard.pool import gc as reaper
    from dockyard.pool.service import cert_root

    seconds = ui.run(lambda: _duration(grace, partial(config.parse_duration, allow_zero=True)))
    if backend == "kubernetes":
        from dockyard.kube import pool as kube_pool

        kube = ui.run(lambda: kube_command.backend(kubeconfig, namespace))
        removals = ui.run(
            lambda: kube_pool.collect(
                kube.cluster, now=time.time(), grace=seconds, pool=pool, dry_run=dry_run
            )
        )
    else:
        removals = ui.run(
            lambda: reaper.run(
                docker_api.shared(),
                now=time.time(),
                certs=cert_root(),
                grace=seconds,
                pool=pool,
                dry_run=dry_run,
            )
        )
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "removed": [r.as_dict() for r in removals]}))
        return
    verb = "would remove" if dry_run else "removed"
    for removal in removals:
        out.print(f"{verb} {escape(str(removal))}", highlight=False)
    out.print(f"{len(removals)} object(s) {verb}; nothing else is unowned", highlight=False)


# --- helpers ----------------------------------------------------------------------------------


def _duration(text: str, parse: Callable[[object], int]) -> int:
    try:
        return parse(text)
    except ValueError as exc:
        raise DockyardError(str(exc)) from None


def _default_cert_dir(lease_id: str) -> Path:
    from dockyard.pool.service import cert_root

    return cert_root() / lease_id


def _write_bundle(directory: Path, certificates: dict[str, str]) -> None:
    from dockyard.pool.service import write_bundle

    write_bundle(directory, {name: pem.encode() for name, pem in certificates.items()})


def _left(expires_at: int) -> str:
    seconds = max(0, int(expires_at - time.time()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
