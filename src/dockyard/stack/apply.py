"""The reconciler: apply a stack plan idempotently against the host engine.

Create what is missing, keep what matches (its spec-hash label), recreate what changed (named
volumes are kept), and refuse, before changing anything, any name taken by an object that is
not this stack's.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard import config, docker_api, exclusive, labels, pki
from dockyard.engine import client as engine_client
from dockyard.engine import service
from dockyard.errors import DockyardError
from dockyard.images import builder, recipes, resolve
from dockyard.mirror import service as mirror
from dockyard.stack import guard as stack_guard
from dockyard.stack import presets
from dockyard.stack.plan import (
    REGISTRY_PORT,
    SPEC_HASH,
    Desired,
    Facts,
    Names,
    ci_environment,
    plan,
)

Progress = Callable[[str], None]
OFFICIAL_REGISTRY_IMAGE = "registry:2"
_STORAGE = {OFFICIAL_REGISTRY_IMAGE: "/var/lib/registry"}
DOCKYARD_REGISTRY_STORAGE = "/var/lib/docker-registry"


@dataclass(frozen=True)
class Action:
    component: str
    name: str
    action: str  # created | unchanged | recreated | completed (a killed run's half-done one)


@dataclass
class UpReport:
    stack: str
    mode: str
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ci_environment: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return any(a.action != "unchanged" for a in self.actions)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"changed": self.changed}


def _noop(_: str) -> None:
    return None


def mode_warnings(cfg: config.StackConfig) -> list[str]:
    if cfg.docker != "socket-unsafe":
        return []
    return [
        "--docker socket-unsafe: the CI container gets the host's raw Docker socket, which is "
        "root on the host (any job can run a privileged container with / mounted); use "
        "--docker socket (guarded) or --docker dind (isolated)"
    ]


def gather_facts(
    client: docker_api.DockerClient, cfg: config.StackConfig, progress: Progress
) -> Facts:
    """Resolve and build every image the plan names; nothing is created yet."""
    preset = presets.get(cfg.ci.preset)
    engine_image = None
    if cfg.docker == "dind":
        engine_image = resolve.image(
            client, cfg.engine.image, official=config.OFFICIAL_ENGINE_IMAGE, role="engine",
            progress=progress,
        )  # fmt: skip
    registry_image = resolve.image(
        client, cfg.registry.image, official=OFFICIAL_REGISTRY_IMAGE, role="registry",
        progress=progress,
    )  # fmt: skip
    ci_image = cfg.ci.image or preset.image
    if not resolve.have_or_pull(client, ci_image):
        if cfg.ci.image or preset.image_role is None:
            raise DockyardError(
                f"CI image {ci_image} is not on the host engine and cannot be pulled",
                fix=f"build it (see the {preset.name} preset in the README) or set ci.image",
            )
        builder.ensure(preset.image_role, progress=progress)
    base = builder.ensure(recipes.BASE, progress=progress)
    refs = [r for r in (engine_image, registry_image, ci_image) if r]
    return Facts(
        engine_image=engine_image,
        registry_image=registry_image,
        registry_storage=_STORAGE.get(registry_image, DOCKYARD_REGISTRY_STORAGE),
        preset=preset,
        image_ids={ref: resolve.image_id(client, ref) for ref in refs},
        registry_port=_registry_port(client, cfg) if cfg.docker != "dind" else None,
        base_image=base,
        guard_dir=str(stack_guard.socket_dir(cfg.name)) if cfg.docker == "socket" else None,
    )


def _registry_port(client: docker_api.DockerClient, cfg: config.StackConfig) -> int:
    """The loopback port of the stack's registry: the one it has, else a free one."""
    try:
        found = client.api.inspect_container(Names(cfg.name).registry)
        bindings = (found["HostConfig"].get("PortBindings") or {}).get(f"{REGISTRY_PORT}/tcp")
        if bindings and str(bindings[0].get("HostPort", "")).isdigit():
            return int(bindings[0]["HostPort"])
    except docker_api.NotFound:
        pass
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def up(
    cfg: config.StackConfig,
    *,
    client: docker_api.DockerClient | None = None,
    progress: Progress = _noop,
) -> UpReport:
    """Bring the stack to ``cfg``; a second call with the same config changes nothing.

    One ``up`` of a stack runs at a time on this host. A failed one removes what it created
    (what existed before stays); one that was killed leaves its objects for the next to
    finish: an engine that never became ready is recreated, one that lacks the base image
    is seeded.
    """
    client = client or docker_api.shared()
    with exclusive.held("stack", cfg.name), ExitStack() as undo:
        report = _up(client, cfg, progress, undo)
        undo.pop_all()
    return report


def _up(
    client: docker_api.DockerClient, cfg: config.StackConfig, progress: Progress, undo: ExitStack
) -> UpReport:
    started = time.monotonic()
    report = UpReport(cfg.name, cfg.docker, warnings=mode_warnings(cfg))
    report.ci_environment = ci_environment(cfg)
    progress("resolving images")
    facts = gather_facts(client, cfg, progress)
    desired = plan(cfg, facts)
    existing = {d.name: _inspect(client, d) for d in desired}
    _refuse_foreign(cfg.name, desired, existing)
    changed: set[str] = set()
    base = recipes.recipe(recipes.BASE).ref
    for item in desired:
        found = existing[item.name]
        action = _action(item, found)
        if action != "unchanged":
            progress(
                f"{item.component} {item.name}: {'creating' if found is None else 'recreating'}"
            )
            if found is None:
                undo.callback(_undo, client, cfg.name, item)
            _apply(client, cfg, item, found, changed=changed, progress=progress)
        elif item.kind == "engine" and not service.has_image(item.name, base, client=client):
            progress(f"engine {item.name}: seeding {base}, which a stopped up did not")
            _finish_engine(client, cfg, item.name)
            action = "completed"
        elif item.kind in ("network", "volume") and found and _hash(found) != item.spec_hash:
            report.warnings.append(
                f"{item.kind} {item.name} differs from the config; it is kept (data is never "
                "dropped): run dockyard down then up to rebuild it"
            )
        report.actions.append(Action(item.component, item.name, action))
        if action != "unchanged":
            changed.add(item.component)
        if item.kind == "network" and cfg.mirror is not None:  # before the engine pulls
            cache = mirror.ensure(client, cfg.mirror, item.name)
            report.actions.append(Action("mirror", cache.name, "ensured"))
    report.seconds = time.monotonic() - started
    return report


def _action(item: Desired, found: dict[str, Any] | None) -> str:
    """Pure: what to do with one object given what exists under its name."""
    if found is None:
        return "created"
    if item.kind in ("network", "volume"):
        return "unchanged"  # never dropped implicitly: they hold data and connections
    running = found.get("State", {}).get("Running", False)
    if item.kind == "engine":  # and proven ready: a killed create never set its mark
        policy = (found.get("HostConfig") or {}).get("RestartPolicy") or {}
        running = running and policy.get("Name") == "unless-stopped"
    return "unchanged" if _hash(found) == item.spec_hash and running else "recreated"


def _undo(client: docker_api.DockerClient, stack: str, item: Desired) -> None:
    """Remove what this failed run created under ``item``'s name: nothing it found."""
    try:
        if item.kind == "network":
            mirror.detach(client, item.name)  # joined to it by this run, before the engine
            docker_api.remove_network(client, item.name)
        elif item.kind == "volume":
            client.api.remove_volume(item.name, force=True)
        elif item.kind == "guard":
            stack_guard.stop(stack)
        elif item.kind == "engine":
            service.rm(item.name, client=client)
        else:
            client.api.remove_container(item.name, force=True, v=True)
    except (docker_api.APIError, DockyardError):
        pass  # never created, or already gone: the original error matters


def _apply(
    client: docker_api.DockerClient,
    cfg: config.StackConfig,
    item: Desired,
    found: dict[str, Any] | None,
    *,
    changed: set[str],
    progress: Progress,
) -> None:
    names = Names(cfg.name)
    if item.kind == "network":
        exclusive.create_network(client, item.name, labels=item.labels, **item.body)
    elif item.kind == "volume":
        client.api.create_volume(item.name, labels=item.labels)
    elif item.kind == "guard":
        mode = str(item.body["socket_mode"])
        stack_guard.start(cfg.name, stack_guard.argv(cfg.name, mode), item.spec_hash)
    elif item.kind == "engine":
        if found is not None:
            service.rm(item.name, client=client)  # keeps the cache volume
        options = config.EngineOptions.model_validate(item.body | {"extra_labels": item.labels})
        service.create(options, client=client, progress=progress)
        progress(f"engine {item.name}: seeding {recipes.recipe(recipes.BASE).ref}")
        _finish_engine(client, cfg, item.name)
    else:
        if found is not None:
            client.api.remove_container(item.name, force=True, v=True)
        if item.component == "ci" and cfg.docker == "dind" and "engine" not in changed:
            # a new CI container always gets current certificates
            _fill_certs(client, names, presets.get(cfg.ci.preset).uid)
        cid = client.api.create_container_from_config(item.body, name=item.name)["Id"]
        preset = presets.get(cfg.ci.preset)
        if item.component == "ci" and preset.files:
            engine_client.put_files(client, cid, preset.files)
        client.api.start(cid)


def _finish_engine(client: docker_api.DockerClient, cfg: config.StackConfig, engine: str) -> None:
    """What a new engine needs before the CI can use it: the base image its builds start
    FROM (it cannot pull), the config's seed (pulled through the cache), and its client
    certificates in the certs volume."""
    service.seed(engine, [recipes.recipe(recipes.BASE).ref], client=client)
    mirror.pull(client, engine, cfg.seed)
    _fill_certs(client, Names(cfg.name), presets.get(cfg.ci.preset).uid)


def _fill_certs(client: docker_api.DockerClient, names: Names, owner: int) -> None:
    """Copy the engine's client bundle into the certs volume (mounted read-only in CI), owned
    by the user the CI runs as: the key stays 0600."""
    bundle = pki.PkiStore().client_bundle(service.client_name(names.engine), engine=names.engine)
    write_volume(client, names.certs, bundle, stack=names.stack, owner=owner)


def write_volume(
    client: docker_api.DockerClient,
    volume: str,
    files: dict[str, bytes],
    *,
    stack: str,
    owner: int = 0,
) -> None:
    """Write ``files`` (paths relative to the volume's root) into a named volume."""
    mount = "/volume"
    writer = client.api.create_container_from_config(
        {
            "Image": recipes.recipe(recipes.BASE).ref,
            "Cmd": ["true"],
            "Labels": labels.managed(labels.ROLE_CLIENT, stack=stack),
            "HostConfig": {"Binds": [f"{volume}:{mount}"]},
        }
    )["Id"]
    try:
        engine_client.put_files(
            client, writer, {f"{mount}/{name}": data for name, data in files.items()}, owner
        )
    finally:
        client.api.remove_container(writer, force=True)


def _inspect(client: docker_api.DockerClient, item: Desired) -> dict[str, Any] | None:
    if item.kind == "guard":
        return _guard_as_object(item)
    if item.kind == "network":
        exclusive.settle(client, item.name)  # a name an older dockyard's race left duplicated
    inspect = {
        "network": client.api.inspect_network,
        "volume": client.api.inspect_volume,
    }.get(item.kind, client.api.inspect_container)
    try:
        found: dict[str, Any] = inspect(item.name)
    except docker_api.NotFound:
        return None
    # inspect_network matches ID prefixes too: only an exact name is "taken"
    if found.get("Name", "").lstrip("/") != item.name:
        return None
    return found


def _guard_as_object(item: Desired) -> dict[str, Any] | None:
    """The guard process seen like a container, so one reconcile rule serves both."""
    found = stack_guard.current(item.labels[labels.STACK])
    if found is None:
        return None
    own = {k: v for k, v in item.labels.items() if k != SPEC_HASH} | {SPEC_HASH: found.spec_hash}
    return {"Name": item.name, "Labels": own, "State": {"Running": found.running}}


def _labels_of(found: dict[str, Any]) -> dict[str, str]:
    raw = found.get("Labels")
    if raw is None:
        raw = (found.get("Config") or {}).get("Labels")
    return dict(raw or {})


def _hash(found: dict[str, Any]) -> str | None:
    return _labels_of(found).get(SPEC_HASH)


def _refuse_foreign(
    stack: str, desired: list[Desired], existing: dict[str, dict[str, Any] | None]
) -> None:
    """Names held by anything that is not this stack's: refuse all, change nothing."""
    foreign = []
    for item in desired:
        found = existing[item.name]
        if found is None:
            continue
        owned = _labels_of(found)
        if not labels.is_managed(owned) or owned.get(labels.STACK) != stack:
            foreign.append(f"{item.kind} {item.name}")
    if foreign:
        raise DockyardError(
            f"stack {stack}: {', '.join(foreign)} already exist(s) and are not this stack's "
            "(left alone)",
            fix="remove or rename them, or choose another stack name (name: in the config)",
        )


def down(
    stack: str, *, volumes: bool = False, client: docker_api.DockerClient | None = None
) -> list[str]:
    """Remove the stack's containers and network, and what its CI made through the stack's
    guard; volumes (and the CI's images) only with ``volumes``."""
    client = client or docker_api.shared()
    selector = {"label": labels.selector(stack=stack)}
    removed = []
    # The guard and the CI container first: nothing the CI makes can then escape the sweep.
    if stack_guard.stop(stack):
        removed.append(f"guard {stack}-guard")
    for container in client.api.containers(all=True, filters=selector):
        name = container["Names"][0].lstrip("/")
        if container["Labels"].get(labels.ROLE) == labels.ROLE_ENGINE:
            # the stack's engine, and any verify engine a killed demo left on its network
            service.rm(container["Labels"].get(labels.ENGINE, name), client=client)
        else:
            with contextlib.suppress(docker_api.NotFound):
                client.api.remove_container(container["Id"], force=True, v=True)
        removed.append(f"container {name}")
    removed += guarded_leftovers(stack, volumes=volumes, client=client)
    for network in client.api.networks(filters=selector):
        mirror.detach(client, network["Name"])  # the host's cache stays, for others
        docker_api.remove_network(client, network["Id"])
        removed.append(f"network {network['Name']}")
    if volumes:
        stack_guard.remove(stack)
        for volume in client.api.volumes(filters=selector).get("Volumes") or []:
            client.api.remove_volume(volume["Name"], force=True)
            removed.append(f"volume {volume['Name']}")
    return removed


def guarded_leftovers(stack: str, *, volumes: bool, client: docker_api.DockerClient) -> list[str]:
    """Remove what the stack's CI created through its guard (socket mode): the objects its
    guard stamped with the stack as owner, and with ``volumes`` its volumes, the images it
    built and the tags it put on shared images (from the guard's tag records). Nothing of
    another owner or of the host carries that stamp, so nothing else is touched."""
    selector = {"label": labels.selector(labels.ROLE_GUARDED, owner=stack)}
    removed = []
    # Each may go by itself meanwhile (a --rm container exiting): gone is done, not an error.
    for container in client.api.containers(all=True, filters=selector):
        with contextlib.suppress(docker_api.NotFound):
            client.api.remove_container(container["Id"], force=True, v=True)
        removed.append(f"container {container['Names'][0].lstrip('/')} (made by the CI)")
    for network in client.api.networks(filters=selector):
        with contextlib.suppress(docker_api.NotFound):
            docker_api.remove_network(client, network["Id"])
        removed.append(f"network {network['Name']} (made by the CI)")
    if not volumes:
        return removed
    for volume in client.api.volumes(filters=selector).get("Volumes") or []:
        with contextlib.suppress(docker_api.NotFound):
            client.api.remove_volume(volume["Name"], force=True)
        removed.append(f"volume {volume['Name']} (made by the CI)")
    tags = stack_guard.tags(stack)
    built = client.api.images(filters=selector)
    for image in built:
        tags.extend(tag for tag in image.get("RepoTags") or [] if tag != "<none>:<none>")
    for tag in dict.fromkeys(tags):
        removed.extend(_untag(client, tag, stack))
    for image in built:
        with contextlib.suppress(docker_api.NotFound, docker_api.APIError):
            client.api.remove_image(image["Id"])  # built but untagged (or tags gone above)
            removed.append(f"image {image['Id'][7:19]} (built by the CI)")
    return removed


def _untag(client: docker_api.DockerClient, tag: str, stack: str) -> list[str]:
    """Remove ``tag`` unless it now names another owner's image; what was removed."""
    try:
        found = client.api.inspect_image(tag)
    except docker_api.NotFound:
        return []
    owner = (found.get("Config") or {}).get("Labels", {}) or {}
    if owner.get(labels.OWNER, stack) != stack:
        return []
    try:
        client.api.remove_image(tag)
    except docker_api.APIError as exc:
        return [f"kept image {tag}: {exc.explanation or exc}"]
    return [f"image {tag} (tagged by the CI)"]
