"""Engine lifecycle against the host engine: create, ls, env, logs, rm.

Create decides everything first (pure spec), then creates objects with an undo list, so a
failure anywhere leaves nothing half-made. Listing reads labels back: there is no database.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard import archive, config, creator, docker_api, exclusive, labels, pki, state
from dockyard.engine import host, readiness, startup
from dockyard.engine.disk import DF, DiskUse, parse_df
from dockyard.engine.spec import (
    DATA_ROOT,
    PROBE_TLS_DIR,
    SERVER_TLS_DIR,
    STORAGE_DRIVER,
    EngineSpec,
    create_body,
)
from dockyard.errors import DockyardError
from dockyard.images import resolve

Progress = Callable[[str], None]
DEFAULT_MTU = 1500


@dataclass(frozen=True)
class EngineInfo:
    """One engine as read back from its container's labels and state."""

    name: str
    container: str
    network: str
    endpoint: str
    storage_driver: str
    privilege: str
    state: str
    image: str
    cache_volume: str
    mtu: int
    cgroup_version: int  # of the host; 0 when the engine predates the label
    cgroup_binding: str  # how inner containers are nested under the engine: see privilege.py
    limits_bind: bool  # the engine's --memory/--cpus/--pids bind what runs inside it
    ready: bool  # proven ready once: its restart policy is set only then
    disk: DiskUse | None = None  # its data root's size and free space, when asked and running

    @property
    def shown_state(self) -> str:
        """Docker's state, and whether it ever became ready (a killed create leaves one
        that runs, or was made, but never answered)."""
        return self.state if self.ready else f"{self.state}, never ready"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Created:
    info: EngineInfo
    seconds: dict[str, float]
    warnings: tuple[str, ...]


def _noop(_: str) -> None:
    return None


def create(
    options: config.EngineOptions,
    *,
    client: docker_api.DockerClient | None = None,
    progress: Progress = _noop,
) -> Created:
    """Create an engine and return once a TLS-verified API call through its network works.

    One create of a name runs at a time on this host (a second one fails at once, naming the
    first); an engine of that name that never became ready, left by a create that was
    killed, is replaced.
    """
    client = client or docker_api.shared()
    with exclusive.held("engine", options.name):
        return _create(client, options, progress)


def _create(
    client: docker_api.DockerClient, options: config.EngineOptions, progress: Progress
) -> Created:
    started = time.monotonic()
    progress("checking the name, network, cache volume and image")
    spec, network_exists = _decide(client, options, progress)
    timings = {"decide": time.monotonic() - started}
    warnings = []
    if spec.insecure:
        warnings.append(
            f"engine {spec.name} listens on plaintext TCP 2375 without TLS: anyone on network "
            f"{spec.network} controls it"
        )
    with ExitStack() as undo:
        mark = time.monotonic()
        cid = _make_objects(client, spec, network_exists, undo, progress)
        timings["create"] = time.monotonic() - mark
        mark = time.monotonic()
        progress(f"waiting for {spec.endpoint} to answer a TLS-verified API call")
        try:
            driver = readiness.wait(client, cid, spec, timeout=options.ready_timeout)
        except DockyardError:
            if options.keep_on_failure:
                undo.pop_all()
            raise
        timings["ready"] = time.monotonic() - mark
        if driver != STORAGE_DRIVER:
            raise DockyardError(
                f"engine {spec.name} came up with the {driver} storage driver, not overlay2",
                fix="give it a data volume on a filesystem overlay2 supports (--cache); "
                f"see: dockyard engine logs {spec.name}",
            )
        if not spec.insecure:
            pki.PkiStore().client_dir(client_name(spec.name), engine=spec.name)
        # Only a proven engine comes back by itself after a host restart: set now, a broken one
        # would have looped instead of failing with its log.
        client.api.update_container(cid, restart_policy={"Name": "unless-stopped"})
        undo.pop_all()
    timings["total"] = time.monotonic() - started
    return Created(_describe(client.api.inspect_container(cid)), timings, tuple(warnings))


def _decide(
    client: docker_api.DockerClient, options: config.EngineOptions, progress: Progress
) -> tuple[EngineSpec, bool]:
    """Every check that can refuse, before anything is created; returns the spec."""
    _refuse_taken_name(client, options.name, progress)
    network, network_exists = _network_for(client, options)
    cache = options.cache or f"dockyard-cache-{options.name}"
    _refuse_shared_cache(client, cache)  # checked again under the volume lock
    image = resolve.image(
        client,
        options.image,
        official=config.OFFICIAL_ENGINE_IMAGE,
        role="engine",
        progress=progress,
    )
    info = client.info()  # once: the privilege decision and the cgroup version both read it
    decision = host.privilege_decision(client, image, info=info)
    assert decision.mode is not None
    mtu = options.mtu or (_network_mtu(client, network) if network_exists else DEFAULT_MTU)
    spec = EngineSpec(
        name=options.name,
        image=image,
        network=network,
        cache_volume=cache,
        mtu=mtu,
        privilege=decision.mode,
        cap_drop=decision.cap_drop,
        cgroup_version=_cgroup_version(info),
        insecure=options.insecure,
        nano_cpus=int(options.cpus * 1e9) if options.cpus else None,
        memory=options.memory,
        pids=options.pids,
        insecure_registries=options.insecure_registries,
        registry_mirrors=options.registry_mirrors,
        aliases=options.aliases,
        extra_labels={creator.MAKER: creator.mine(), **options.extra_labels},
    )
    return spec, network_exists


def _make_objects(
    client: docker_api.DockerClient,
    spec: EngineSpec,
    network_exists: bool,
    undo: ExitStack,
    progress: Progress,
) -> str:
    """Network, cache volume and started container; each registered for undo."""
    if not network_exists:
        progress(f"creating network {spec.network}")
        network = exclusive.create_network(
            client,
            spec.network,
            driver="bridge",
            labels=labels.managed(labels.ROLE_NETWORK, engine=spec.name),
        )
        undo.callback(_quietly, client.api.remove_network, network)
    with state.locked(f"volume-{spec.cache_volume}"):
        _refuse_shared_cache(client, spec.cache_volume)
        if _ensure_volume(client, spec.cache_volume, spec.name, spec.extra_labels):
            undo.callback(_quietly, client.api.remove_volume, spec.cache_volume, force=True)
        progress(f"creating engine container {spec.name}")
        try:
            created = client.api.create_container_from_config(create_body(spec), name=spec.name)
        except docker_api.APIError as exc:
            if exc.status_code != 409:
                raise
            raise DockyardError(
                f"engine {spec.name} was created at the same moment by another dockyard "
                "process: that one was kept and this command stopped",
                fix="wait for the other command to finish, then: dockyard engine ls",
            ) from exc
        cid = str(created["Id"])
    undo.callback(_quietly, client.api.remove_container, cid, force=True, v=True)
    # A failed engine leaves no issuer behind for the next one of that name to inherit.
    undo.callback(pki.PkiStore().remove_issuer, spec.name)
    files = {startup.PATH: startup.script()}
    if not spec.insecure:
        files |= _certificate_files(spec)
    client.api.put_archive(cid, "/", archive.tar(files))
    client.api.start(cid)
    return cid


def ls(client: docker_api.DockerClient | None = None, *, disk: bool = False) -> list[EngineInfo]:
    """Engines read back from labels; with ``disk``, each running one's data root usage."""
    client = client or docker_api.shared()
    found = client.api.containers(all=True, filters={"label": labels.selector(labels.ROLE_ENGINE)})
    engines = []
    for listed in found:
        try:  # listed, then removed by someone else: it is gone, not an error
            engines.append(_describe(client.api.inspect_container(listed["Id"])))
        except docker_api.NotFound:
            continue
    if disk:
        engines = [replace(e, disk=data_root(client, e.container)) for e in engines]
    return sorted(engines, key=lambda e: e.name)


def data_root(client: docker_api.DockerClient, container: str) -> DiskUse | None:
    """Size and free space of an engine's data root, as its daemon sees it (None when it
    does not run)."""
    try:
        exec_id = client.api.exec_create(container, [*DF, DATA_ROOT])["Id"]
        output = client.api.exec_start(exec_id).decode(errors="replace")
        if client.api.exec_inspect(exec_id).get("ExitCode") != 0:
            return None
    except docker_api.APIError:
        return None
    return parse_df(output, DATA_ROOT)


def get(name: str, client: docker_api.DockerClient | None = None) -> EngineInfo:
    client = client or docker_api.shared()
    return _describe(client.api.inspect_container(_container_of(client, name)))


def env(name: str, client: docker_api.DockerClient | None = None) -> dict[str, str]:
    """Exactly what a client on the engine's network needs: the docker CLI's variables."""
    info = get(name, client)
    if info.endpoint.endswith(":2375"):
        return {"DOCKER_HOST": info.endpoint}
    cert_dir = pki.PkiStore().client_dir(client_name(name), engine=name)
    return {
        "DOCKER_HOST": info.endpoint,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(cert_dir),
    }


def host_endpoint(
    name: str, client: docker_api.DockerClient | None = None
) -> tuple[str, str, Path]:
    """(address URL, certificate name, client cert dir) to reach an engine from this host,
    where its network name does not resolve: its address on its network, TLS checked against
    its name."""
    client = client or docker_api.shared()
    info = get(name, client)
    networks = client.api.inspect_container(info.container)["NetworkSettings"]["Networks"]
    address = (networks.get(info.network) or {}).get("IPAddress")
    if not address or info.state != "running":
        raise DockyardError(f"engine {name} is {info.state}, with no address", fix="dockyard up")
    port = info.endpoint.rsplit(":", 1)[-1]
    cert_dir = pki.PkiStore().client_dir(client_name(name), engine=name)
    return f"tcp://{address}:{port}", name, cert_dir


def logs(name: str, tail: int | str = "all", client: docker_api.DockerClient | None = None) -> str:
    client = client or docker_api.shared()
    raw: bytes = client.api.logs(_container_of(client, name), tail=tail)
    return raw.decode(errors="replace")


def rm(
    name: str, *, volumes: bool = False, client: docker_api.DockerClient | None = None
) -> list[str]:
    """Remove the engine, its own network and client certificates; the cache only if asked."""
    client = client or docker_api.shared()
    cid = _container_of(client, name)
    info = _describe(client.api.inspect_container(cid))
    client.api.remove_container(cid, force=True, v=True)
    removed = [f"container {info.container}"]
    for net in client.api.networks(
        filters={"label": labels.selector(labels.ROLE_NETWORK, engine=name)}
    ):
        if _quietly(docker_api.remove_network, client, net["Id"]):
            removed.append(f"network {net['Name']}")
    if volumes:
        try:
            found = client.api.inspect_volume(info.cache_volume)
        except docker_api.NotFound:
            found = {}
        if labels.is_managed(found.get("Labels")):
            client.api.remove_volume(info.cache_volume, force=True)
            removed.append(f"volume {info.cache_volume}")
    store = pki.PkiStore()
    store.remove_client(client_name(name))
    store.remove_issuer(name)
    return removed


def seed(name: str, images: list[str], *, client: docker_api.DockerClient | None = None) -> str:
    """Copy images from the host engine into the engine (it cannot pull what the host has)."""
    client = client or docker_api.shared()
    cid = _container_of(client, name)
    with tempfile.TemporaryDirectory(prefix="dockyard-seed-") as tmp:
        saved = Path(tmp) / "images.tar"
        try:
            with saved.open("wb") as sink:
                for chunk in client.api.get_image(images if len(images) > 1 else images[0]):
                    sink.write(chunk)
        except docker_api.NotFound as exc:
            raise DockyardError(
                f"cannot seed engine {name}: {exc.explanation}",
                fix="build or pull the image on the host first",
            ) from exc
        wrapper = Path(tmp) / "wrapper.tar"
        with tarfile.open(wrapper, "w") as archive:
            archive.add(saved, arcname="dockyard-seed.tar")
        with wrapper.open("rb") as stream:
            client.api.put_archive(cid, "/tmp", stream)
    exec_id = client.api.exec_create(
        cid,
        [
            "sh",
            "-c",
            "docker load -i /tmp/dockyard-seed.tar; s=$?; rm -f /tmp/dockyard-seed.tar; exit $s",
        ],
    )["Id"]
    output = str(client.api.exec_start(exec_id).decode(errors="replace").strip())
    if client.api.exec_inspect(exec_id).get("ExitCode") != 0:
        raise DockyardError(f"loading images into engine {name} failed: {output}")
    return output


def has_image(name: str, ref: str, *, client: docker_api.DockerClient | None = None) -> bool:
    """Whether engine ``name`` holds image ``ref`` (False when it does not answer)."""
    client = client or docker_api.shared()
    try:
        cid = _container_of(client, name)
        exec_id = client.api.exec_create(cid, ["docker", "image", "inspect", "-f", ".", ref])
        client.api.exec_start(exec_id["Id"])
        return bool(client.api.exec_inspect(exec_id["Id"]).get("ExitCode") == 0)
    except (docker_api.APIError, DockyardError):
        return False


def write_context(name: str, client: docker_api.DockerClient | None = None) -> str:
    """Create (or replace) a docker context named ``dockyard-NAME`` for the engine."""
    from dockyard.engine import context

    variables = env(name, client)
    return context.write(f"dockyard-{name}", variables)


# --- helpers -------------------------------------------------------------------------------


def client_name(engine: str) -> str:
    """The client certificate directory of an engine's own clients."""
    return f"engine-{engine}"


def _refuse_taken_name(client: docker_api.DockerClient, name: str, progress: Progress) -> None:
    """A proven engine of that name is refused; one that never became ready is replaced (its
    create was killed: this host's lock is ours, so no live create of it remains here)."""
    try:
        existing = client.api.inspect_container(name)
    except docker_api.NotFound:
        return
    found = existing["Config"].get("Labels") or {}
    if found.get(labels.ROLE) == labels.ROLE_ENGINE and labels.is_managed(found):
        maker = found.get(creator.MAKER)
        if not _ready(existing) and creator.abandoned(maker, _age(existing)):
            progress(f"replacing engine {name}, which never became ready")
            client.api.remove_container(existing["Id"], force=True, v=True)
            return
        if not _ready(existing):
            raise DockyardError(
                f"engine {name} is being created by another dockyard process ({maker}), "
                "with another state directory: it was left to that process",
                fix=f"wait for it, then: dockyard engine ls (or remove it: dockyard engine rm "
                f"{name})",
            )
        raise DockyardError(
            f"engine {name} already exists", fix=f"use it, or remove it: dockyard engine rm {name}"
        )
    raise DockyardError(
        f"the name {name} is taken by container {existing['Id'][:12]}, which dockyard did not "
        "create (it was left alone)",
        fix="choose another engine name",
    )


def _network_for(
    client: docker_api.DockerClient, options: config.EngineOptions
) -> tuple[str, bool]:
    """The network to join and whether it already exists."""
    wanted = options.network or f"dockyard-{options.name}"
    exclusive.settle(client, wanted)  # a name an older dockyard's race left duplicated
    try:
        net = client.api.inspect_network(wanted)
    except docker_api.NotFound:
        if options.network:
            raise DockyardError(
                f"network {wanted} does not exist",
                fix=f"create it (docker network create {wanted}) or omit --network",
            ) from None
        return wanted, False
    if options.network is None and not labels.is_managed(net.get("Labels")):
        raise DockyardError(
            f"network {wanted} exists but dockyard did not create it (it was left alone)",
            fix=f"pass --network {wanted} to join it on purpose, or choose another engine name",
        )
    return wanted, True


def _cgroup_version(info: dict[str, Any]) -> int:
    """The host's cgroup version (``docker info`` says since API 1.40; older hosts are v1)."""
    version = str(info.get("CgroupVersion") or "1")
    return int(version) if version.isdigit() else 1


def _network_mtu(client: docker_api.DockerClient, network: str) -> int:
    options = client.api.inspect_network(network).get("Options") or {}
    value = options.get("com.docker.network.driver.mtu")
    return int(value) if value and str(value).isdigit() else DEFAULT_MTU


def _refuse_shared_cache(client: docker_api.DockerClient, volume: str) -> None:
    """Two live daemons on one data root corrupt it: refuse."""
    users = client.api.containers(all=True, filters={"volume": volume})
    live = [c for c in users if c.get("State") in ("running", "created", "restarting", "paused")]
    if live:
        who = ", ".join(n.lstrip("/") for c in live for n in c.get("Names", [])[:1])
        raise DockyardError(
            f"cache volume {volume} is in use by {who}: two engines must never share a data root",
            fix="remove that engine first, or choose another --cache",
        )


def _ensure_volume(
    client: docker_api.DockerClient, volume: str, engine: str, extra: dict[str, str]
) -> bool:
    """Create the cache volume if missing; True when this call created it. It carries the
    engine's extra labels (its stack, its creator), so whoever reclaims the engine finds it."""
    try:
        client.api.inspect_volume(volume)
        return False
    except docker_api.NotFound:
        client.api.create_volume(
            volume, labels={**extra, **labels.managed(labels.ROLE_ENGINE_DATA, engine=engine)}
        )
        return True


def _certificate_files(spec: EngineSpec) -> dict[str, bytes]:
    """The engine's server certificate and its own probe client, to copy in."""
    store = pki.PkiStore()
    server = store.server_bundle(spec.name, spec.dns_names, ())
    probe = pki.issue_client(store.issuer(spec.name), f"probe@{spec.name}", now=datetime.now(UTC))
    return {f"{SERVER_TLS_DIR}/{name}": data for name, data in server.items()} | {
        f"{PROBE_TLS_DIR}/ca.pem": store.ca().cert_pem,
        f"{PROBE_TLS_DIR}/cert.pem": probe.cert_pem,
        f"{PROBE_TLS_DIR}/key.pem": probe.key_pem,
    }


def _container_of(client: docker_api.DockerClient, name: str) -> str:
    found = client.api.containers(
        all=True, filters={"label": labels.selector(labels.ROLE_ENGINE, engine=name)}
    )
    if not found:
        raise DockyardError(f"no engine named {name}", fix="list engines with: dockyard engine ls")
    return str(found[0]["Id"])


def _describe(container: dict[str, Any]) -> EngineInfo:
    found = container["Config"].get("Labels") or {}

    def label(key: str) -> str:
        return str(found.get(labels.PREFIX + key, ""))

    return EngineInfo(
        name=label("engine"),
        container=container["Name"].lstrip("/"),
        network=label("network"),
        endpoint=label("endpoint"),
        storage_driver=label("storage-driver"),
        privilege=label("privilege"),
        state=container["State"]["Status"],
        image=container["Config"]["Image"],
        cache_volume=label("cache"),
        mtu=int(label("mtu") or 0),
        cgroup_version=int(label("cgroup-version") or 0),
        cgroup_binding=label("cgroup-binding") or "none",
        # Engines made before the start prologue ran dockerd bare: their jobs sat beside them.
        # A prologue that cannot nest refuses to start, so a labelled engine's limits bind.
        limits_bind=bool(label("cgroup-binding")),
        ready=_ready(container),
    )


def _age(container: dict[str, Any]) -> float:
    try:
        made = datetime.fromisoformat(str(container.get("Created", "")))
    except ValueError:
        return 0.0
    return (datetime.now(UTC) - made).total_seconds()


def _ready(container: dict[str, Any]) -> bool:
    """The last step of a create sets the restart policy: its mark of a proven engine."""
    policy = (container.get("HostConfig") or {}).get("RestartPolicy") or {}
    return policy.get("Name") == "unless-stopped"


def _quietly(action: Callable[..., object], *args: object, **kwargs: object) -> bool:
    """Undo steps must not mask the original error."""
    try:
        action(*args, **kwargs)
        return True
    except docker_api.APIError:
        return False
