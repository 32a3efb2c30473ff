"""The ``dockyard`` command: parses, calls the API, renders (rich, or ``--json``). No logic."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from dockyard import ui
from dockyard.doctor import command as doctor_command
from dockyard.errors import DockyardError
from dockyard.guard import command as guard_command
from dockyard.kube import command as kube_command
from dockyard.mirror import command as mirror_command
from dockyard.pool import command as pool_command

if TYPE_CHECKING:  # (pydantic and YAML load when a command needs a config: --help is fast)
    from dockyard import config

app = typer.Typer(
    help="Docker for containerized CI, done safely: TLS Docker-in-Docker engines that are "
    "ready, cached and MTU-matched, built offline from Debian packages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
engine_app = typer.Typer(
    help="Docker-in-Docker engines: mutual TLS on 2376, ready before use, cache on a volume.",
    no_args_is_help=True,
)
images_app = typer.Typer(help="dockyard's images, built from Debian packages without pulls.")
app.add_typer(engine_app, name="engine")
app.add_typer(images_app, name="images")
app.add_typer(kube_command.app, name="kube")

out, err, _run = ui.out, ui.err, ui.run


def main() -> None:
    app()


@contextmanager
def _status(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A spinner that shows the current step of long work (silent with --json)."""
    if quiet:
        yield lambda _msg: None
        return
    with err.status("starting") as status:
        started = time.monotonic()

        def step(message: str) -> None:
            status.update(message)
            err.print(f"[dim]{time.monotonic() - started:6.2f}s[/] {message}", highlight=False)

        yield step


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data))


# --- images ----------------------------------------------------------------------------------


@images_app.command("build")
def images_build(
    role: Annotated[str, typer.Option(help="engine, registry, agent, base, or all")] = "all",
    force: Annotated[bool, typer.Option(help="rebuild even when the recipe is unchanged")] = False,
) -> None:
    """Build dockyard's images from Debian packages (debootstrap + import; no registry).

    An image whose recipe hash (label io.dockyard.recipe) matches is skipped unless --force.
    """
    from dockyard.images import builder, recipes

    roles = list(recipes.ROLES) if role == "all" else [role]
    if role != "all" and role not in recipes.ROLES:
        _run(partial(_raise, f"unknown image role {role}", "use all, " + ", ".join(recipes.ROLES)))
    with _status(False) as step:
        results = _run(lambda: [builder.build(r, force=force, progress=step) for r in roles])
    for result in results:
        verb = "built" if result.built else "up to date"
        out.print(f"{result.image}: {verb} ({result.seconds:.1f} s)")


def _raise(message: str, fix: str) -> None:
    raise DockyardError(message, fix)


# --- engines ---------------------------------------------------------------------------------


@engine_app.command("create")
def engine_create(
    name: Annotated[str, typer.Argument(help="engine name: its DNS name on the network")],
    network: Annotated[
        str | None, typer.Option(help="existing network to join \\[default: its own]")
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(help="data-root volume; reuse one to keep the layer cache across engines"),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(help="engine image \\[default: docker:dind, else dockyard/engine]"),
    ] = None,
    mtu: Annotated[int | None, typer.Option(help="inner MTU \\[default: the network's]")] = None,
    cpus: Annotated[
        float | None, typer.Option(help="CPU limit of the engine and its jobs, e.g. 1.5")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="memory limit of the engine and its jobs, e.g. 2g")
    ] = None,
    pids: Annotated[
        int | None, typer.Option(help="process limit of the engine and its jobs")
    ] = None,
    insecure_registry: Annotated[
        list[str] | None, typer.Option(help="HOST:PORT the engine may push to over HTTP")
    ] = None,
    registry_mirror: Annotated[
        list[str] | None, typer.Option(help="pull-through mirror URL for the inner daemon")
    ] = None,
    alias: Annotated[list[str] | None, typer.Option(help="extra DNS name on the network")] = None,
    insecure: Annotated[
        bool, typer.Option(help="plaintext TCP on 2375, no TLS (dangerous; warned)")
    ] = False,
    keep_on_failure: Annotated[
        bool, typer.Option(help="leave the engine in place when it fails to become ready")
    ] = False,
    ready_timeout: Annotated[
        float | None, typer.Option(help="seconds to wait for readiness \\[default: 60]")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="YAML file of these options (flags win over it)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    backend: kube_command.BackendOption = "docker",
    kubeconfig: kube_command.KubeconfigOption = None,
    namespace: kube_command.NamespaceOption = None,
) -> None:
    """Create an engine and wait until a TLS-verified API call to it succeeds.

    Example, then point a CI container at it:

        dockyard engine create ci --network jenkins
        dockyard engine env ci

    With --backend kubernetes the engine is a pod behind a Service in the namespace, ready
    when its probe's TLS call to the Service name passes; --cache names a PVC (kept), none
    means an emptyDir; --cpus/--memory become the pod's limits.

    Options can come from a YAML file whose keys are the option names with underscores
    (image, network, cache, mtu, cpus, memory, pids, insecure_registries, registry_mirrors,
    aliases, ready_timeout); DOCKYARD_ENGINE_IMAGE sets the default image.
    """
    from dockyard.engine import service

    flags: dict[str, Any] = {
        "name": name,
        "network": network,
        "cache": cache,
        "image": image,
        "mtu": mtu,
        "cpus": cpus,
        "memory": memory,
        "pids": pids,
        "insecure_registries": tuple(insecure_registry or ()) or None,
        "registry_mirrors": tuple(registry_mirror or ()) or None,
        "aliases": tuple(alias or ()) or None,
        "insecure": insecure or None,
        "keep_on_failure": keep_on_failure or None,
        "ready_timeout": ready_timeout,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    from dockyard import config

    options = _run(lambda: config.engine_options(given, file))
    if backend == "kubernetes":
        _run(lambda: kube_command.check_options(set(given) | options.model_fields_set))
        kube = _run(lambda: kube_command.backend(kubeconfig, namespace))
        with _status(as_json) as step:
            started = time.monotonic()
            pod = _run(lambda: kube.create(options, progress=step))
        if as_json:
            _print_json({**pod.as_dict(), "seconds": time.monotonic() - started})
            return
        out.print(
            f"engine [bold]{pod.name}[/] ready at {pod.endpoint} in namespace {kube.ns} in "
            f"{time.monotonic() - started:.2f} s"
        )
        out.print(
            f"a job pod mounts Secret {pod.name}-client at its DOCKER_CERT_PATH: "
            f"dockyard engine env {pod.name} --backend kubernetes"
        )
        return
    with _status(as_json) as step:
        created = _run(lambda: service.create(options, progress=step))
    for warning in created.warnings:
        err.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    if as_json:
        _print_json({**created.info.as_dict(), "seconds": created.seconds})
        return
    info = created.info
    out.print(
        f"engine [bold]{info.name}[/] ready at {info.endpoint} in {created.seconds['total']:.2f} s "
        f"(storage {info.storage_driver}, privilege {info.privilege}, mtu {info.mtu}, "
        f"network {info.network}, cgroup v{info.cgroup_version}: limits "
        f"{'bind inside it' if info.limits_bind else 'do NOT bind inside it'})"
    )
    out.print(f'use it: eval "$(dockyard engine env {info.name})"')


@engine_app.command("ls")
def engine_ls(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    backend: kube_command.BackendOption = "docker",
    kubeconfig: kube_command.KubeconfigOption = None,
    namespace: kube_command.NamespaceOption = None,
) -> None:
    """List engines (read back from the host engine's labels, or the namespace's)."""
    from dockyard.engine import disk as data_disk
    from dockyard.engine import service

    if backend == "kubernetes":
        from dockyard.pool import inventory

        pods = _run(lambda: kube_command.backend(kubeconfig, namespace).pods())
        if as_json:
            _print_json([p.as_dict() for p in pods])
            return
        table = Table("NAME", "STATE", "ENDPOINT", "PRIVILEGE", "CACHE", "POOL", "IMAGE")
        for p in pods:
            pool = p.labels.get(inventory.POOL, "")
            table.add_row(p.name, p.state, p.endpoint, p.privilege, p.cache_claim, pool, p.image)
        out.print(table)
        return

    engines = _run(lambda: service.ls(disk=True))
    if as_json:
        _print_json([e.as_dict() for e in engines])
        return
    table = Table(
        "NAME", "STATE", "ENDPOINT", "NETWORK", "STORAGE", "PRIVILEGE", "CGROUP", "LIMITS BIND",
        "CACHE", "DATA ROOT", "IMAGE",
    )  # fmt: skip
    for e in engines:
        disk = "" if e.disk is None else data_disk.summary(e.disk)
        table.add_row(
            e.name, e.shown_state, e.endpoint, e.network, e.storage_driver, e.privilege,
            f"v{e.cgroup_version}" if e.cgroup_version else "?",
            f"yes ({e.cgroup_binding})" if e.limits_bind else "NO", e.cache_volume, disk, e.image,
        )  # fmt: skip
    out.print(table)


@engine_app.command("env")
def engine_env(
    name: str,
    format: Annotated[str, typer.Option("--format", help="env (for eval) or json")] = "env",
    context: Annotated[
        bool, typer.Option(help="also write a docker context named dockyard-NAME")
    ] = False,
    backend: kube_command.BackendOption = "docker",
    kubeconfig: kube_command.KubeconfigOption = None,
    namespace: kube_command.NamespaceOption = None,
) -> None:
    """Print what a CI container needs: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH.

    On Kubernetes: what a job pod needs that mounts Secret NAME-client at DOCKER_CERT_PATH.
    """
    from dockyard.engine import service

    if format not in ("env", "json"):
        _run(lambda: _raise(f"unknown format {format}", "use --format env or --format json"))
    if backend == "kubernetes":
        if context:
            _run(lambda: _raise("--context is for engines on this host", "drop --context"))
        kube = _run(lambda: kube_command.backend(kubeconfig, namespace))
        _run(lambda: kube.get(name))  # a missing engine is named as such
        variables = _run(lambda: kube.env(name))
        err.print(f"# a job pod mounts Secret {name}-client at {variables['DOCKER_CERT_PATH']}")
    else:
        variables = _run(lambda: service.env(name))
    if context:
        written = _run(lambda: service.write_context(name))
        err.print(f"docker context {written} written: docker --context {written} info")
    if format == "json":
        _print_json(variables)
    else:
        for key, value in variables.items():
            typer.echo(f"export {key}={shlex.quote(value)}")


@engine_app.command("logs")
def engine_logs(
    name: str, tail: Annotated[str, typer.Option(help="lines from the end, or all")] = "all"
) -> None:
    """Print the inner daemon's log."""
    from dockyard.engine import service

    typer.echo(
        _run(lambda: service.logs(name, tail=int(tail) if tail.isdigit() else tail)), nl=False
    )


@engine_app.command("rm")
def engine_rm(
    names: Annotated[list[str], typer.Argument(help="engines to remove")],
    volumes: Annotated[
        bool, typer.Option(help="also remove the cache volume (its layer cache is lost)")
    ] = False,
    backend: kube_command.BackendOption = "docker",
    kubeconfig: kube_command.KubeconfigOption = None,
    namespace: kube_command.NamespaceOption = None,
) -> None:
    """Remove engines with their own network and certificates; the cache volume stays.

    On Kubernetes: the pod, Service and Secrets (and with --volumes the cache PVC)."""
    from dockyard.engine import service

    if backend == "kubernetes":
        kube = _run(lambda: kube_command.backend(kubeconfig, namespace))
        for name in names:
            _run(lambda: kube.get(name))  # noqa: B023 (called at once)
            for removed in _run(partial(kube.rm, name, volumes=volumes)):
                out.print(f"removed {removed}")
        return
    for name in names:
        for removed in _run(partial(service.rm, name, volumes=volumes)):
            out.print(f"removed {removed}")


# --- stacks ----------------------------------------------------------------------------------

config_app = typer.Typer(help="Stack configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

StackOption = Annotated[str, typer.Option("--stack", "-s", help="stack name")]


def _stack_config(file: Path | None, docker: str | None, ci: str | None) -> config.StackConfig:
    from dockyard import config

    overrides: dict[str, Any] = {}
    if docker:
        overrides["docker"] = docker
    if ci:
        overrides["ci"] = {"preset": ci}
    if file is None:
        return config.validate(config.StackConfig, overrides, "options")
    loaded = config.load_yaml(file, config.StackConfig).model_dump()
    if ci:
        overrides["ci"] = loaded["ci"] | {"preset": ci}
    return config.validate(config.StackConfig, loaded | overrides, str(file))


@app.command("up")
def up(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="stack config (dockyard config example)")
    ] = None,
    docker: Annotated[
        str | None,
        typer.Option(help="dind (an isolated TLS engine) | socket | socket-unsafe (host's engine)"),
    ] = None,
    ci: Annotated[str | None, typer.Option(help="CI preset: agent | buildbot | jenkins")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Stand up (or reconcile) a stack: network, engine, registry, CI container.

    Idempotent: a second `up` changes nothing; after a config change it recreates what changed
    and keeps volumes. Names taken by objects that are not the stack's are refused.

        dockyard up && dockyard demo
    """
    from dockyard.stack import apply

    cfg = _run(lambda: _stack_config(file, docker, ci))
    with _status(as_json) as step:
        report = _run(lambda: apply.up(cfg, progress=step))
    for warning in report.warnings:
        err.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    if as_json:
        _print_json(report.as_dict())
        return
    for action in report.actions:
        colour = "dim" if action.action == "unchanged" else "green"
        out.print(f"[{colour}]{action.action:>9}[/] {action.component:<14} {action.name}")
    out.print(f"stack [bold]{report.stack}[/] up in {report.seconds:.1f} s; the CI container has:")
    for key, value in report.ci_environment.items():
        out.print(f"  {key}={value}")


@app.command("status")
def status(
    stack: StackOption = "dockyard",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Each component of a stack, its health as the CI container sees it, and the CI's env."""
    from dockyard.stack import status as stack_status

    found = _run(lambda: stack_status.status(stack))
    if as_json:
        _print_json(found.as_dict())
        if not found.healthy:
            raise typer.Exit(1)
        return
    table = Table("COMPONENT", "KIND", "NAME", "STATE", "HEALTH", "DETAIL")
    for c in found.components:
        table.add_row(c.component, c.kind, c.name, c.state, c.health, c.detail)
    out.print(table)
    out.print(f"mode: {found.mode}; the CI container has:")
    for key, value in found.ci_environment.items():
        out.print(f"  {key}={value}")
    if not found.healthy:
        err.print("[bold red]unhealthy[/]: run dockyard doctor for causes and fixes")
        raise typer.Exit(1)


@app.command("down")
def down(
    stack: StackOption = "dockyard",
    volumes: Annotated[
        bool, typer.Option(help="also remove volumes (layer cache, registry data, CI home)")
    ] = False,
) -> None:
    """Remove a stack's containers and network; volumes stay unless --volumes."""
    from dockyard.stack import apply

    for removed in _run(partial(apply.down, stack, volumes=volumes)):
        out.print(f"removed {removed}")


@config_app.command("example")
def config_example() -> None:
    """Print a commented stack config with every field at its default."""
    from importlib import resources

    typer.echo(resources.files("dockyard.stack").joinpath("example.yaml").read_text(), nl=False)


app.command("doctor")(doctor_command.doctor)
app.command("guard")(guard_command.guard)
app.command("serve")(pool_command.serve)
app.command("lease")(pool_command.lease)
app.command("release")(pool_command.release)
app.command("leases")(pool_command.leases)
app.command("pools")(pool_command.pools)
app.add_typer(mirror_command.app, name="mirror")
app.command("gc")(pool_command.gc)

ci_app = typer.Typer(help="The stack's CI server (buildbot preset).", no_args_is_help=True)
app.add_typer(ci_app, name="ci")


@ci_app.command("build")
def ci_build(
    stack: StackOption = "dockyard",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the build")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Trigger the buildbot preset's `image` build (build and push the example) and follow it
    to the end; exits non-zero when the build fails."""
    from dataclasses import asdict

    from dockyard import docker_api
    from dockyard.stack.plan import Names
    from dockyard.stack.presets import buildbot

    container = Names(stack).ci

    def run() -> buildbot.BuildResult:
        client = docker_api.shared()
        number = buildbot.trigger(client, container)
        return buildbot.follow(client, container, number, timeout=timeout)

    with _status(as_json) as step:
        step(f"triggering a build on {container}")
        result = _run(run)
    if as_json:
        _print_json(asdict(result))
    else:
        for item in result.steps:
            out.print(f"{item.result or 'running':>8}  {item.name}: {item.state}", highlight=False)
        out.print(f"build {result.number}: [bold]{result.result}[/] {result.digest or ''}")
        if result.result != "success":
            err.print(result.log_tail, highlight=False)
    if result.result != "success":
        raise typer.Exit(1)


@app.command("client-cert")
def client_cert(
    name: Annotated[str, typer.Argument(help="the client's name: its owner in the guard")],
    service: Annotated[str, typer.Option("--for", help="guard or serve (their TCP listeners)")],
) -> None:
    """Issue a client certificate for a TCP listener of `dockyard guard --tls` or `dockyard
    serve`; prints the directory (ca.pem, cert.pem, key.pem) to use as DOCKER_CERT_PATH or
    DOCKYARD_SERVER_CERT_PATH."""
    from dockyard import pki

    if service not in pki.SERVICE_ISSUERS:
        _run(partial(_raise, f"unknown service {service}", "use --for guard or --for serve"))
    issuer = pki.SERVICE_ISSUERS[service]
    path = _run(partial(pki.PkiStore().client_dir, f"{issuer}.{name}", issuer, common_name=name))
    typer.echo(str(path))


# --- main job --------------------------------------------------------------------------------


@app.command("demo")
def demo(
    stack: StackOption = "dockyard",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The main job: build and push the example from the stack's CI container, then verify it.

    Inside the CI container, with only the environment it was given: docker build the example,
    docker push it to the stack's registry, then pull and run it on a fresh engine that never
    saw it (digests compared). Prints each step with its timing.
    """
    from dockyard import demo as demo_module

    with _status(as_json) as step:
        report = _run(lambda: demo_module.run(stack, progress=step))
    if as_json:
        _print_json(report.as_dict())
        return
    table = Table("STEP", "SECONDS", "RESULT")
    for row in report.steps:
        table.add_row(row.name, f"{row.seconds:.2f}", row.detail)
    out.print(table)
    out.print(f"pushed [bold]{report.image}[/] {report.digest}")
    out.print(f"output on the fresh engine: [bold]{report.output}[/]")
