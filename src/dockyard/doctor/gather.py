"""Read a stack into :class:`~dockyard.doctor.checks.Facts`: the host engine's view of its
objects, then the CI container's own view, through commands run in it with its environment.

Nothing here raises on a broken stack: a missing container, a failed exec or an unreadable
file becomes a fact for the checks to judge. Only the host engine not answering stops the
gathering, and that too is a fact.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from dockyard import docker_api, labels, pki
from dockyard.doctor.checks import (
    BASE_IMAGE,
    CERT_FILES,
    REGISTRY,
    CertFile,
    Container,
    DaemonInfo,
    EngineTLS,
    Facts,
    MirrorState,
    Network,
    Run,
    SocketStat,
    daemon_flags,
)
from dockyard.engine import service
from dockyard.errors import DockyardError
from dockyard.stack.plan import CERT_PATH, COMPONENT, ENGINE_ALIAS, HOST_SOCKET

PROBE_SECONDS = 10  # a probe in the CI container that takes longer has failed
TIMED_OUT = 124  # timeout(1)'s exit code
LOG_LINES = 20
_MTU_OPTION = "com.docker.network.driver.mtu"
_CURL = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\n", f"http://{REGISTRY}/v2/"]


def gather(stack: str, client: docker_api.DockerClient | None = None) -> Facts:
    """Everything doctor knows about ``stack``, observed now."""
    now = datetime.now(UTC)
    try:
        client = client or docker_api.shared()
        facts = _host_view(client, Facts(stack=stack, now=now))
        return _ci_view(client, facts)
    except DockyardError as exc:
        return Facts(stack=stack, now=now, host_error=exc.message)
    except (docker_api.APIError, requests.RequestException) as exc:
        return Facts(stack=stack, now=now, host_error=_first_line(str(exc)))


def _host_view(client: docker_api.DockerClient, facts: Facts) -> Facts:
    names = facts.names
    engine = _container(client, names.engine)
    return replace(
        facts,
        network=_network(client, names.network),
        engine=engine,
        registry=_container(client, names.registry),
        ci=_container(client, names.ci),
        host_ca=_host_ca(),
        engine_tls=_engine_tls(client, engine) if engine.exists else None,
        parts=_parts(client, facts.stack),
        data_root=service.data_root(client, engine.name) if engine.running else None,
        mirrors=_mirrors(client),
    )


def _parts(client: docker_api.DockerClient, stack: str) -> frozenset[str]:
    found = client.api.volumes(filters={"label": labels.selector(stack=stack)})
    return frozenset((v.get("Labels") or {}).get(COMPONENT, "") for v in found.get("Volumes") or [])


def _ci_view(client: docker_api.DockerClient, facts: Facts) -> Facts:
    """What the CI container sees, with nothing but its own environment and user. Probes run
    side by side: on a broken network each may wait out its whole time limit."""
    ci = facts.ci
    if ci is None or not ci.running:
        return facts
    name = ci.name
    probes: list[Callable[[], dict[str, Any]]] = [lambda: _api(client, name)]
    if facts.registry is not None and facts.registry.running:
        probes.append(lambda: {"registry_http": _probe(client, name, _CURL)})
    if facts.dind:
        cert_dir = ci.env.get("DOCKER_CERT_PATH") or CERT_PATH
        probes.append(lambda: {"resolve": _probe(client, name, ["getent", "hosts", ENGINE_ALIAS])})
        probes.append(
            lambda: {
                "base_image": _probe(
                    client, name, ["docker", "image", "inspect", "-f", "{{.Id}}", BASE_IMAGE]
                )
            }
        )
        probes.append(
            lambda: {"certs": tuple(_read(client, name, f"{cert_dir}/{f}") for f in CERT_FILES)}
        )
    else:
        probes.append(lambda: {"socket": _socket(client, name, facts.docker_host)})
    changes: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        for found in pool.map(lambda probe: probe(), probes):
            changes |= found
    return replace(facts, **changes)


# --- the host engine's view ------------------------------------------------------------------


def _mirrors(client: docker_api.DockerClient) -> tuple[MirrorState, ...]:
    from dockyard.mirror import plan
    from dockyard.mirror import service as mirror

    found = []
    for cache in mirror.ls(client):
        name = cache["Name"].lstrip("/")
        text = mirror.logs(client, name)
        upstream = (cache["Config"].get("Labels") or {}).get(plan.UPSTREAM, "")
        problem = plan.diagnose(text)
        if problem is None and cache["State"]["Running"]:
            problem = mirror.probe(client, name, upstream)
        found.append(
            MirrorState(
                name=name,
                upstream=upstream,
                status=str(cache["State"]["Status"]),
                networks=tuple(cache["NetworkSettings"]["Networks"]),
                problem=problem,
                log_tail="\n".join(text.splitlines()[-LOG_LINES:]),
            )
        )
    return tuple(found)


def _container(client: docker_api.DockerClient, name: str) -> Container:
    try:
        found: dict[str, Any] = client.api.inspect_container(name)
    except docker_api.NotFound:
        return Container(name)
    state = found.get("State") or {}
    config = found.get("Config") or {}
    networks = (found.get("NetworkSettings") or {}).get("Networks") or {}
    env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
    return Container(
        name=name,
        status=str(state.get("Status", "unknown")),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        env=env,
        labels=dict(config.get("Labels") or {}),
        args=tuple(found.get("Args") or ()),
        networks={net: tuple(ep.get("Aliases") or ()) for net, ep in networks.items()},
        log_tail=_log_tail(client, name),
    )


def _log_tail(client: docker_api.DockerClient, name: str) -> str:
    """The end of a container's log, without dockerd's gRPC chatter, which says nothing."""
    try:
        raw: bytes = client.api.logs(name, tail=LOG_LINES * 3)
    except docker_api.APIError:
        return ""
    lines = raw.decode(errors="replace").strip().splitlines()
    return "\n".join([line for line in lines if "module=grpc" not in line][-LOG_LINES:])


def _network(client: docker_api.DockerClient, name: str) -> Network:
    try:
        options = client.api.inspect_network(name).get("Options") or {}
    except docker_api.NotFound:
        return Network(name)
    mtu = str(options.get(_MTU_OPTION, ""))
    return Network(name, exists=True, mtu=int(mtu) if mtu.isdigit() else None)


def _engine_tls(client: docker_api.DockerClient, engine: Container) -> EngineTLS:
    """Copied out of the engine container, so they are known even when it is stopped."""
    flags = daemon_flags(engine.args)
    return EngineTLS(
        client_ca=docker_api.copy_out(client, engine.name, flags.tlscacert),
        server_cert=docker_api.copy_out(client, engine.name, flags.tlscert),
    )


def _host_ca() -> bytes | None:
    """This host's CA certificate if dockyard made one; doctor never creates it."""
    try:
        return (pki.PkiStore().root / pki.CA_CERT).read_bytes()
    except OSError:
        return None


# --- the CI container's view -----------------------------------------------------------------


def _exec(client: docker_api.DockerClient, container: str, argv: list[str]) -> tuple[int, str, str]:
    """Run ``argv`` as the container's user with its environment, bounded in time: exit code,
    stdout, stderr. Failing to run it at all is exit code -1."""
    bounded = ["timeout", str(PROBE_SECONDS), *argv]
    try:
        exec_id = client.api.exec_create(container, bounded)["Id"]
        stdout, stderr = client.api.exec_start(exec_id, demux=True)
        code = client.api.exec_inspect(exec_id).get("ExitCode")
    except docker_api.APIError as exc:
        return -1, "", _first_line(str(exc.explanation or exc))
    error = (stderr or b"").decode(errors="replace")
    if code == TIMED_OUT:
        error += f"\n{argv[0]} did not finish within {PROBE_SECONDS} s"
    return -1 if code is None else int(code), (stdout or b"").decode(errors="replace"), error


def _api(client: docker_api.DockerClient, container: str) -> dict[str, Any]:
    """``docker version`` proves the engine answers; only then is ``docker info`` asked."""
    api = _probe(client, container, ["docker", "version", "--format", "{{.Server.Version}}"])
    if not api.ok:
        return {"api": api}
    code, stdout, _ = _exec(client, container, ["docker", "info", "--format", "{{json .}}"])
    return {"api": api, "info": parse_info(stdout) if code == 0 else None}


def _probe(client: docker_api.DockerClient, container: str, argv: list[str]) -> Run:
    """A command whose output and error both matter, as one text."""
    code, stdout, stderr = _exec(client, container, argv)
    return Run(code, (stdout + stderr).strip())


def _read(client: docker_api.DockerClient, container: str, path: str) -> CertFile:
    """Read as the CI user does (an archive copy would read as root and hide a bad mode)."""
    code, content, stderr = _exec(client, container, ["cat", path])
    if code != 0:
        error = stderr.strip().rsplit(": ", 1)[-1].lower()
        return CertFile(path, error=error or f"cat exit code {code}")
    return CertFile(path, content=content.encode())


def _socket(client: docker_api.DockerClient, container: str, docker_host: str) -> SocketStat:
    path = urlsplit(docker_host).path if docker_host.startswith("unix://") else HOST_SOCKET
    script = 'stat -c "%F|%a|%u|%g" "$1" && id -u && id -G'
    code, stdout, stderr = _exec(client, container, ["sh", "-c", script, "sh", path])
    lines = stdout.splitlines()
    fields = lines[0].split("|") if lines else []
    if code != 0 or len(lines) < 3 or len(fields) != 4:
        return SocketStat(path, error=_first_line(stderr) or f"stat exit code {code}")
    kind, mode, uid, gid = fields
    try:
        return SocketStat(
            path,
            kind=kind,
            mode=int(mode, 8),
            uid=int(uid),
            gid=int(gid),
            user=int(lines[1]),
            groups=tuple(int(g) for g in lines[2].split()),
        )
    except ValueError:
        return SocketStat(path, error=f"unexpected stat output: {stdout.strip()}")


def parse_info(text: str) -> DaemonInfo | None:
    """The storage driver and the registries trusted over plain HTTP, from ``docker info``."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    indexes = (data.get("RegistryConfig") or {}).get("IndexConfigs") or {}
    insecure = tuple(
        name
        for name, index in indexes.items()
        if isinstance(index, dict) and index.get("Secure") is False
    )
    return DaemonInfo(str(data.get("Driver") or ""), insecure)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""
