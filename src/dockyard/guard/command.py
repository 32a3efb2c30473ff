"""The ``dockyard guard`` command: read options into :class:`~dockyard.guard.server.Settings`,
say loudly what is not enforced, and serve until interrupted."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from dockyard import ui
from dockyard.errors import DockyardError

if TYPE_CHECKING:  # (imported when the command runs: the CLI starts without them)
    from dockyard.guard.policy import Profile
    from dockyard.guard.server import Listener, Mode, Settings

SOCKET_PROXY = "docker-socket-proxy"

_err = ui.err


def choose_profile(
    name: str, policy: Path | None, allow_bind: list[str], env: dict[str, str]
) -> Profile:
    """The named profile (built-in, from ``policy``, or docker-socket-proxy's environment),
    with ``allow_bind`` prefixes added."""
    from dockyard.guard import profiles

    if name == SOCKET_PROXY:
        chosen = profiles.from_socket_proxy_env(env)
    else:
        known = (
            profiles.load_policy(policy.read_text(), str(policy)) if policy else profiles.BUILTIN
        )
        if name not in known:
            raise DockyardError(
                f"unknown profile {name!r}",
                fix=f"use one of {', '.join(sorted([*known, SOCKET_PROXY]))}",
            )
        chosen = known[name]
    for prefix in allow_bind:
        if not prefix.startswith("/") or prefix.rstrip("/") == "":
            raise DockyardError(
                f"--allow-bind {prefix!r} must be an absolute path other than /",
                fix="name the directory CI jobs may mount, such as /srv/ci",
            )
    rules = dataclasses.replace(
        chosen.rules, allow_bind=chosen.rules.allow_bind + tuple(allow_bind)
    )
    return dataclasses.replace(chosen, rules=rules)


def listeners(urls: list[str], owner: str | None, tls: bool, insecure: bool) -> list[Listener]:
    """The listeners to open; TCP needs ``tls`` (or an explicit ``insecure``)."""
    from dockyard import pki
    from dockyard.guard.server import parse_listen

    found = []
    for url in urls:
        listener = parse_listen(url, owner)
        if listener.url.startswith("tcp://"):
            if tls:
                host = urlsplit(listener.url).hostname or "localhost"
                listener = dataclasses.replace(listener, tls=pki.server_context("guard", host))
            elif not insecure:
                raise DockyardError(
                    f"--listen {url} would give root on this host to anyone who can connect",
                    fix="add --tls (mutual TLS, client certificate CN = owner), "
                    "or --insecure if something else protects the port",
                )
        found.append(listener)
    return found


def _warn(profile: Profile, mode: str, found: list[Listener]) -> None:
    if mode != "enforce":
        _err.print(
            f"[bold red]WARNING:[/] --mode {mode}: denied requests are FORWARDED "
            "(only logged); clients can escape to the host"
        )
    if not profile.escapes:
        _err.print(
            f"[bold red]WARNING:[/] profile {profile.name} checks no escape: every client "
            "has root on this host"
        )
    if any(listener.tls is None and listener.url.startswith("tcp://") for listener in found):
        _err.print("[bold red]WARNING:[/] a TCP listener without TLS (--insecure)")


def guard(  # noqa: PLR0917 (typer reads the options from the parameters)
    upstream: Annotated[
        str, typer.Option(help="the engine to protect: unix:///PATH or tcp://HOST:PORT")
    ] = "unix:///var/run/docker.sock",
    listen: Annotated[
        list[str] | None,
        typer.Option(
            help="where clients connect (repeatable): unix:///PATH[?owner=NAME&mode=0660] "
            "or tcp://HOST:PORT[?owner=NAME]",
        ),
    ] = None,
    tls: Annotated[
        bool,
        typer.Option(help="mutual TLS on tcp listeners; a client's certificate CN is its owner"),
    ] = False,
    insecure: Annotated[
        bool, typer.Option(help="allow a tcp listener without TLS (never on a reachable port)")
    ] = False,
    policy: Annotated[
        Path | None, typer.Option(help="YAML file of custom profiles", exists=True)
    ] = None,
    profile: Annotated[
        str,
        typer.Option(
            help="ci-build (build, run, test own containers), read-only, allow-all, "
            f"{SOCKET_PROXY} (its CONTAINERS=1 POST=0 ... environment), or one from --policy",
        ),
    ] = "ci-build",
    allow_bind: Annotated[
        list[str] | None,
        typer.Option(help="host path prefix that containers may bind-mount (repeatable)"),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(help="enforce (deny with 403), warn (forward, log, print), audit (log)"),
    ] = "enforce",
    audit_log: Annotated[
        Path | None,
        typer.Option(
            help="append one JSON line per request here (default stderr); SIGHUP reopens it"
        ),
    ] = None,
    tags_file: Annotated[
        Path | None,
        typer.Option(
            help="keep here which image tags each owner made, so a restarted guard still "
            "lets them move or delete their tags (default: in memory only)"
        ),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(help="owner of clients of listeners without ?owner= (default: peer uid)"),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics on 127.0.0.1:PORT")
    ] = None,
    upstream_cert_path: Annotated[
        Path | None, typer.Option(help="ca.pem, cert.pem and key.pem for a tcp upstream")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="guard a dockyard engine (its address, name and client cert)"),
    ] = None,
) -> None:
    """Serve the Engine API with a policy in front: a socket you can hand to CI jobs.

    Each request is routed as dockerd routes it and its JSON body read as dockerd reads it;
    what the profile forbids (privileged containers, host mounts and namespaces, added
    capabilities, foreign containers...) is answered 403 with the rule that denied it. Every
    client has an owner (its listener's ?owner=, its certificate, or its uid): what it
    creates is labelled io.dockyard.owner=OWNER and it sees and touches nothing else.

    Example: dockyard guard --listen 'unix:///run/dockyard/job1.sock?owner=job1'
    --allow-bind /srv/ci, then DOCKER_HOST=unix:///run/dockyard/job1.sock docker run ...

    In front of a dockyard engine, to keep tenants of one engine apart: dockyard guard
    --engine ci --listen 'unix:///run/dockyard/a.sock?owner=a' --listen '...b.sock?owner=b'
    """
    if mode not in ("enforce", "warn", "audit"):
        raise typer.BadParameter("use enforce, warn or audit", param_hint="--mode")
    import asyncio

    from dockyard.guard import server
    from dockyard.guard.audit import AuditLog, Metrics
    from dockyard.guard.tagbook import TagBook
    from dockyard.guard.upstream import parse_upstream

    try:
        if engine:
            from dockyard.engine import service

            address, name, upstream_cert_path = service.host_endpoint(engine)
            upstream = f"{address}?name={name}"
        chosen = choose_profile(profile, policy, allow_bind or [], dict(os.environ))
        found = listeners(listen or ["unix:///run/dockyard/guard.sock"], owner, tls, insecure)
        metrics = Metrics()
        settings = server.Settings(
            upstream=parse_upstream(upstream, upstream_cert_path),
            profile=chosen,
            listeners=tuple(found),
            mode=_mode(mode),
            audit=AuditLog(audit_log, metrics),
            tags=TagBook(tags_file),
        )
    except DockyardError as exc:
        ui.fail(exc)
    _warn(chosen, mode, found)
    for listener in found:
        who = listener.owner or ("certificate CN" if listener.tls else "peer uid")
        _err.print(
            f"[green]guarding[/] {escape(upstream)} on {escape(listener.url)} "
            f"(profile {chosen.name}, owner: {escape(who)})"
        )
    asyncio.set_event_loop_policy(server.event_loop_policy())
    try:
        asyncio.run(_serve(settings, metrics_port))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        settings.audit.close()


def _mode(text: str) -> Mode:
    return "warn" if text == "warn" else "audit" if text == "audit" else "enforce"


async def _serve(settings: Settings, metrics_port: int | None) -> None:
    import asyncio
    import signal

    from dockyard.guard import server

    loop = asyncio.get_running_loop()
    serving = asyncio.current_task()
    if serving is not None:  # SIGTERM (how stacks stop it) closes down as Ctrl-C does
        loop.add_signal_handler(signal.SIGTERM, serving.cancel)
    loop.add_signal_handler(signal.SIGHUP, settings.audit.reopen)  # (logrotate's convention)
    if metrics_port is not None:
        await settings.audit.metrics.serve(metrics_port)
    await server.run(settings)
