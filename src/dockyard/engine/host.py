"""Probes of the host engine that decide the privilege mode, cached per host engine.

Probing costs one or two short-lived containers; the answer depends only on the host engine
and its kernel, so it is cached under the state directory keyed by the engine's ID.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict
from pathlib import Path

from dockyard import docker_api, labels, state
from dockyard.engine import privilege
from dockyard.errors import DockyardError

_CAPBND = re.compile(r"^CapBnd:\s*([0-9a-fA-F]+)$", re.MULTILINE)
CACHE_FORMAT = 2  # 2: CapDrop names only capabilities the host engine knows


def privilege_decision(
    client: docker_api.DockerClient, image: str, *, refresh: bool = False
) -> privilege.Decision:
    """The mode engines get on this host engine, probing it once and caching the answer."""
    info = client.info()
    cache = _cache_path(str(info.get("ID", "unknown")), str(info.get("KernelVersion", "")))
    if not refresh and cache.exists():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("format") == CACHE_FORMAT:
                return privilege.Decision(
                    privilege.Mode(saved["mode"]), saved["reason"], tuple(saved["cap_drop"])
                )
        except (ValueError, KeyError, OSError):
            pass  # unreadable cache: probe again
    probe = privilege.Probe(
        runtimes=frozenset((info.get("Runtimes") or {}).keys()),
        missing_caps=_missing_caps(),
        in_container=_in_container(),
    )
    while True:
        try:
            decision = privilege.decide(probe)
        except privilege.NoEngineModeError as exc:
            raise DockyardError(str(exc), fix=exc.fix) from exc
        if decision.needs == "privileged":
            ok, error = _try(client, image, privilege.host_config(privilege.Mode.PRIVILEGED))
            probe = dataclasses.replace(probe, privileged_ok=ok, privileged_error=error)
        elif decision.needs == "caps":
            config = privilege.host_config(privilege.Mode.CAPS, decision.cap_drop)
            ok, error = _try(client, image, config)
            probe = privilege.after_caps_try(probe, ok, error)
        else:
            break
    assert decision.mode is not None
    payload = {"format": CACHE_FORMAT, **asdict(decision), "mode": decision.mode.value}
    state.write_private(cache, json.dumps(payload).encode(), mode=0o644)
    return decision


def _cache_path(engine_id: str, kernel: str) -> Path:
    key = re.sub(r"[^A-Za-z0-9]", "_", f"{engine_id}-{kernel}")
    return state.state_dir() / "hosts" / f"{key}.json"


def _missing_caps() -> tuple[str, ...]:
    """Capabilities this machine's bounding set lacks (the engine runs on this machine)."""
    try:
        match = _CAPBND.search(Path("/proc/self/status").read_text())
    except OSError:
        return ()
    return privilege.missing_capabilities(match.group(1)) if match else ()


def _in_container() -> bool:
    """Whether this process runs in a container (the markers Docker and Podman leave)."""
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def _try(
    client: docker_api.DockerClient, image: str, host_config: dict[str, object]
) -> tuple[bool, str | None]:
    """Start a container running ``true`` with ``host_config``; report whether it ran."""
    body = {
        "Image": image,
        "Entrypoint": ["true"],
        "Cmd": [],
        "Labels": labels.managed(labels.ROLE_PROBE),
        "HostConfig": host_config,
    }
    try:
        created = client.api.create_container_from_config(body)
    except docker_api.APIError as exc:  # refused at create time (an authz plugin, rootless)
        return False, str(exc.explanation or exc)
    try:
        client.api.start(created["Id"])
        result = client.api.wait(created["Id"], timeout=30)
        return result.get("StatusCode") == 0, None
    except docker_api.APIError as exc:
        return False, str(exc.explanation or exc)
    finally:
        client.api.remove_container(created["Id"], force=True, v=True)
