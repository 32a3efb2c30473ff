"""The cache's I/O: ensure it on a network, read its counters, seed engines through it, remove.

Credentials are read here, from the file or variable the config names, and go only into the
cache container's 0600 config file: never into a label, Env, an engine or a CI container.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from dataclasses import dataclass
from typing import Any

from dockyard import archive, docker_api, labels, state
from dockyard.config import MirrorConfig
from dockyard.errors import DockyardError
from dockyard.mirror import plan

log = logging.getLogger("dockyard.mirror")


@dataclass(frozen=True)
class Mirror:
    """What an engine needs to use a cache: the mirror URL and the name to trust over HTTP."""

    name: str
    url: str
    address: str
    upstream: str


def password(cfg: MirrorConfig) -> str | None:
    """The upstream password from its reference; a file others can read is refused."""
    if cfg.password_file is not None:
        path = cfg.password_file.expanduser()
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except OSError as exc:
            raise DockyardError(
                f"mirror password_file {path}: {exc.strerror}", fix="create it, mode 0600"
            ) from exc
        if stat.S_IMODE(mode) & 0o077:
            raise DockyardError(
                f"mirror password_file {path} is readable by others "
                f"(mode {stat.S_IMODE(mode):04o})",
                fix=f"chmod 600 {path}",
            )
        return text.strip()
    if cfg.password_env is not None:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise DockyardError(
                f"mirror password_env {cfg.password_env} is not set",
                fix=f"export {cfg.password_env} in the environment of dockyard",
            )
        return value
    return None


def ensure(client: docker_api.DockerClient, cfg: MirrorConfig, network: str) -> Mirror:
    """The cache of ``cfg.upstream``, created if missing (or changed), joined to ``network``."""
    from dockyard.images import builder, recipes

    name = plan.name_of(cfg.upstream, cfg.username)
    secret = password(cfg)  # before anything is created: a bad reference changes nothing
    image = builder.ensure(recipes.REGISTRY)
    image_id = str(client.api.inspect_image(image)["Id"])
    with state.locked(f"mirror-{name}"):
        found = _inspect(client, name)
        if found is not None and _labels(found).get(plan.SPEC_HASH) != plan.spec_hash(
            cfg, image_id
        ):
            if not labels.is_managed(_labels(found)):
                raise DockyardError(
                    f"the name {name} is taken by a container dockyard did not create",
                    fix="remove or rename that container",
                )
            log.info("mirror %s changed: recreating it (its cache volume is kept)", name)
            networks = list(found["NetworkSettings"]["Networks"])
            client.api.remove_container(found["Id"], force=True)
            found = None
        else:
            networks = []
        if found is None:
            _ensure_volume(client, name, cfg)
            body = plan.create_body(cfg, image, image_id, network)
            cid = str(client.api.create_container_from_config(body, name=name)["Id"])
            try:
                client.api.put_archive(cid, "/", archive.tar(plan.files(cfg, secret), mode=0o600))
                for other in networks:
                    if other != network:
                        client.api.connect_container_to_network(cid, other)
                client.api.start(cid)
            except BaseException:
                client.api.remove_container(cid, force=True)
                raise
        else:
            client.api.put_archive(found["Id"], "/", archive.tar(plan.limit_file(cfg)))
            _refresh_credentials(client, found["Id"], plan.files(cfg, secret))
            if network not in found["NetworkSettings"]["Networks"]:
                client.api.connect_container_to_network(found["Id"], network)
            if not found["State"]["Running"]:
                client.api.start(found["Id"])
    return Mirror(name, plan.url(name), plan.address(name), cfg.upstream)


def _refresh_credentials(
    client: docker_api.DockerClient, cid: str, wanted: dict[str, bytes]
) -> None:
    """A rotated password changes no label (no secret is hashed into one), so the files
    inside are compared: where they differ they are replaced and the registry restarted."""
    paths = [path for path in (plan.CONFIG_PATH, plan.AUTH_PATH) if path in wanted]
    if all(docker_api.copy_out(client, cid, path) == wanted[path] for path in paths):
        return
    log.info("mirror %s: its credentials changed; restarting it with the new ones", cid[:12])
    client.api.put_archive(cid, "/", archive.tar({p: wanted[p] for p in paths}, mode=0o600))
    client.api.restart(cid)


def engine_settings(mirror: Mirror | None) -> dict[str, tuple[str, ...]]:
    """The engine options that route pulls through ``mirror``: the Hub mirror, and trust of
    the cache's plain-HTTP address for pulls that name it (other registries)."""
    if mirror is None:
        return {}
    return {"registry_mirrors": (mirror.url,), "insecure_registries": (mirror.address,)}


def ls(client: docker_api.DockerClient) -> list[dict[str, Any]]:
    listed = client.api.containers(all=True, filters={"label": labels.selector(plan.ROLE_MIRROR)})
    found = []
    for item in listed:
        with contextlib.suppress(docker_api.NotFound):  # removed since it was listed
            found.append(client.api.inspect_container(item["Id"]))
    return found


def stats(client: docker_api.DockerClient, name: str) -> plan.Stats:
    """Counters since the registry last started, and the volume's size."""
    try:
        exec_id = client.api.exec_create(name, plan.stats_command())["Id"]
        output = client.api.exec_start(exec_id).decode(errors="replace")
    except docker_api.APIError:
        return plan.Stats(running=False)
    return plan.parse_stats(output)


def report(client: docker_api.DockerClient, name: str) -> dict[str, Any]:
    """What status, ``GET /pools`` and doctor show of one cache."""
    found = _inspect(client, name)
    if found is None:
        return {"name": name, "state": "missing"}
    own = _labels(found)
    body: dict[str, Any] = {
        "name": name,
        "url": plan.url(name),
        "upstream": own.get(plan.UPSTREAM),
        "state": found["State"]["Status"],
        "networks": sorted(found["NetworkSettings"]["Networks"]),
    }
    if found["State"]["Running"]:
        body |= stats(client, name).as_dict()
    problem = plan.diagnose(logs(client, name))
    if problem is None and found["State"]["Running"]:
        problem = probe(client, name, body["upstream"] or "")
    body["problem"] = None if problem is None else f"{problem[0]}: {problem[1]}"
    return body


def probe(client: docker_api.DockerClient, name: str, upstream: str) -> tuple[str, str, str] | None:
    """Ask a plain-HTTP upstream, from inside the cache, whether it takes the credentials."""
    command = plan.probe_command(upstream)
    if command is None:
        return None
    try:
        exec_id = client.api.exec_create(name, command)["Id"]
        output = client.api.exec_start(exec_id).decode(errors="replace")
        code = int(client.api.exec_inspect(exec_id).get("ExitCode") or 0)
        own = client.api.inspect_container(name)["Config"].get("Labels") or {}
    except docker_api.APIError:
        return None
    return plan.judge_probe(output, code, credentials=own.get(plan.AUTHENTICATED) == "true")


def logs(client: docker_api.DockerClient, name: str, tail: int = 400) -> str:
    try:
        raw: bytes = client.api.logs(name, tail=tail)
    except docker_api.APIError:
        return ""
    return raw.decode(errors="replace")


def pull(client: docker_api.DockerClient, engine: str, images: tuple[str, ...]) -> list[str]:
    """Pull ``images`` inside ``engine`` (through its mirror); the images it now holds. A
    failed pull is logged, not raised: a seed is a head start, not a condition of readiness."""
    held = []
    for image in images:
        try:
            exec_id = client.api.exec_create(engine, ["docker", "pull", "-q", image])["Id"]
            output = client.api.exec_start(exec_id).decode(errors="replace").strip()
            code = client.api.exec_inspect(exec_id).get("ExitCode")
        except docker_api.APIError as exc:
            code, output = -1, str(exc)
        if code == 0:
            held.append(image)
        else:
            log.warning("seeding %s into engine %s failed: %s", image, engine, output[-300:])
    return held


def detach(client: docker_api.DockerClient, network: str) -> list[str]:
    """Disconnect every cache from ``network`` (before it is removed); their names."""
    gone = []
    for found in ls(client):
        if network in found["NetworkSettings"]["Networks"]:
            try:
                client.api.disconnect_container_from_network(found["Id"], network, force=True)
            except docker_api.APIError:
                continue
            gone.append(found["Name"].lstrip("/"))
    return gone


def rm(client: docker_api.DockerClient, name: str, *, volumes: bool = False) -> list[str]:
    found = _inspect(client, name)
    if found is None or _labels(found).get(labels.ROLE) != plan.ROLE_MIRROR:
        raise DockyardError(f"no mirror named {name}", fix="list them with: dockyard mirror ls")
    client.api.remove_container(found["Id"], force=True)
    removed = [f"container {name}"]
    if volumes:
        with contextlib.suppress(docker_api.NotFound):
            client.api.remove_volume(plan.volume_of(name), force=True)
            removed.append(f"volume {plan.volume_of(name)}")
    return removed


def _ensure_volume(client: docker_api.DockerClient, name: str, cfg: MirrorConfig) -> None:
    volume = plan.volume_of(name)
    try:
        client.api.inspect_volume(volume)
    except docker_api.NotFound:
        own = labels.managed(plan.ROLE_MIRROR_DATA, mirror=name)
        client.api.create_volume(volume, labels=own | {plan.UPSTREAM: cfg.upstream})


def _inspect(client: docker_api.DockerClient, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.api.inspect_container(name)
    except docker_api.NotFound:
        return None
    return found if found["Name"].lstrip("/") == name else None


def _labels(found: dict[str, Any]) -> dict[str, str]:
    return dict(found["Config"].get("Labels") or {})
