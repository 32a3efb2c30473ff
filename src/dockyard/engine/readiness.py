"""Ready means ready: a TLS-verified API call through the engine's network name succeeds.

A TCP connect is not enough (dockerd accepts connections long before it serves the API, and
with TLS half-configured a port is open but useless), so the probe is the docker CLI inside
the engine container calling ``tcp://NAME:2376`` with its own client certificate: the same
name resolution, port, certificate chain and SAN check a CI container on that network uses.
"""

from __future__ import annotations

import time

from dockyard import docker_api
from dockyard.engine import startup
from dockyard.engine.spec import EngineSpec, probe_command, probe_environment
from dockyard.errors import DockyardError

POLL_SECONDS = 0.05
LOG_LINES = 12


def wait(client: docker_api.DockerClient, container: str, spec: EngineSpec, timeout: float) -> str:
    """Poll until the engine answers; return its storage driver. Errors quote its log tail."""
    deadline = time.monotonic() + timeout
    command, environment = probe_command(), probe_environment(spec)
    last = ""
    while True:
        inspected = client.api.inspect_container(container)["State"]
        if not inspected.get("Running"):
            _raise_refusal(client, container, spec, inspected.get("ExitCode"))
            raise DockyardError(
                f"engine {spec.name} stopped before it was ready "
                f"(exit code {inspected.get('ExitCode')}): {log_tail(client, container)}",
                fix=f"read the whole log with: dockyard engine logs {spec.name}",
            )
        try:
            exec_id = client.api.exec_create(container, command, environment=environment)["Id"]
            output = client.api.exec_start(exec_id).decode(errors="replace").strip()
            code = client.api.exec_inspect(exec_id).get("ExitCode")
        except docker_api.APIError as exc:
            code, output = -1, str(exc.explanation or exc)
        if code == 0 and output:
            return str(output.splitlines()[-1].strip())
        last = output.splitlines()[-1] if output else last
        if time.monotonic() >= deadline:
            raise DockyardError(
                f"engine {spec.name} did not answer {spec.endpoint} within {timeout:g} s "
                f"(last probe: {last or 'no output'}); engine log: {log_tail(client, container)}",
                fix="raise --ready-timeout on a slow host, or see: dockyard engine logs "
                + spec.name,
            )
        time.sleep(POLL_SECONDS)


def log_tail(client: docker_api.DockerClient, container: str, lines: int = LOG_LINES) -> str:
    try:
        raw: bytes = client.api.logs(container, tail=lines)
    except docker_api.APIError:
        return "(no log)"
    text = " | ".join(line.strip() for line in raw.decode(errors="replace").splitlines() if line)
    return text or "(empty log)"


def _raise_refusal(
    client: docker_api.DockerClient, container: str, spec: EngineSpec, code: object
) -> None:
    """The start prologue's own one-line reason, where it refused to start dockerd."""
    if code != startup.REFUSED:
        return
    try:
        reason = startup.refusal(
            client.api.logs(container, tail=LOG_LINES).decode(errors="replace")
        )
    except docker_api.APIError:
        return
    if reason:
        cause, _, fix = reason.partition("; fix: ")
        raise DockyardError(f"engine {spec.name} cannot start: {cause}", fix=fix or None)
