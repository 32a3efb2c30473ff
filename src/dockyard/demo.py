"""The main job: inside the stack's CI container, build the example, push it to the stack's
registry, then prove the push by pulling and running it on a fresh engine that never saw it.

The CI container gets nothing but the environment `dockyard up` gave it, so a green demo
proves the CI contract end to end.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dockyard import config, creator, docker_api, labels
from dockyard.engine import client as engine_client
from dockyard.engine import service
from dockyard.errors import DockyardError
from dockyard.images import recipes
from dockyard.stack.plan import COMPONENT, REGISTRY_ALIAS, REGISTRY_PORT, Names

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"
WORKDIR = "/workspace/hello"
_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    detail: str


@dataclass
class Report:
    stack: str
    image: str = ""
    digest: str = ""
    output: str = ""
    steps: list[Step] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def example_dir() -> Path:
    if not (EXAMPLE / "Dockerfile").exists():
        raise DockyardError(
            f"the example is missing at {EXAMPLE}", fix="run the demo from a dockyard checkout"
        )
    return EXAMPLE


def push_digest(output: str) -> str:
    """The digest ``docker push`` reports on its last line."""
    found = _DIGEST.findall(output)
    if not found:
        raise DockyardError(f"docker push printed no digest: {output.strip()[-200:]}")
    return str(found[-1])


def run(stack: str = "dockyard", *, progress: Callable[[str], None] = lambda _m: None) -> Report:
    client = docker_api.shared()
    names = Names(stack)
    ci = _running(client, names.ci)
    report = Report(stack)

    def timed(name: str, action: Callable[[], str]) -> str:
        progress(name)
        started = time.monotonic()
        detail = action()
        report.steps.append(Step(name, time.monotonic() - started, detail))
        return detail

    def in_ci(command: list[str], what: str) -> str:
        return _check(engine_client.run(client, ci, command, workdir=WORKDIR), what)

    engine_client.put_tree(client, ci, example_dir(), WORKDIR)
    tag = f"demo-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
    report.image = f"{_push_target(client, names)}/hello:{tag}"
    base = recipes.recipe(recipes.BASE).ref
    timed(
        "docker build (in the CI container)",
        lambda: in_ci(
            ["docker", "build", "-q", "--build-arg", f"BASE={base}", "-t", report.image, "."],
            "docker build",
        ),
    )
    pushed = timed("docker push", lambda: in_ci(["docker", "push", report.image], "docker push"))
    report.digest = push_digest(pushed)
    report.steps[-1] = Step(report.steps[-1].name, report.steps[-1].seconds, report.digest)
    report.output = _verify_on_fresh_engine(client, names, tag, report, timed, progress=progress)
    if report.image.startswith("localhost:"):
        # Built in the host's engine (socket modes): the registry keeps it, the host need not.
        engine_client.run(client, ci, ["docker", "rmi", report.image])
    return report


def _verify_on_fresh_engine(
    client: docker_api.DockerClient,
    names: Names,
    tag: str,
    report: Report,
    timed: Callable[[str, Callable[[], str]], str],
    *,
    progress: Callable[[str], None],
) -> str:
    """Pull and run the pushed image on an engine created for this purpose alone.

    It and its cache carry the stack (``down`` removes them) and this process as creator
    (``gc`` reclaims them once a killed demo is gone)."""
    verifier = f"{names.stack}-verify-{secrets.token_hex(2)}"
    ref = f"{REGISTRY_ALIAS}:{REGISTRY_PORT}/hello:{tag}"
    options = config.EngineOptions(
        name=verifier,
        network=names.network,
        insecure_registries=(f"{REGISTRY_ALIAS}:{REGISTRY_PORT}",),
        extra_labels={labels.STACK: names.stack, COMPONENT: "verify", **creator.label()},
    )
    timed(
        "create a fresh engine to verify",
        lambda: service.create(options, client=client, progress=progress).info.endpoint,
    )
    try:
        container = service.get(verifier, client).container

        def inside(command: list[str], what: str) -> str:
            return _check(engine_client.run(client, container, command), what)

        timed("docker pull (fresh engine)", lambda: inside(["docker", "pull", "-q", ref], "pull"))
        pulled = inside(
            ["docker", "image", "inspect", "--format", '{{join .RepoDigests " "}}', ref],
            "inspect",
        )
        if report.digest not in pulled:
            raise DockyardError(
                f"the fresh engine pulled {pulled or 'no digest'}, not the pushed {report.digest}"
            )
        return timed(
            "docker run (fresh engine)", lambda: inside(["docker", "run", "--rm", ref], "run")
        )
    finally:
        service.rm(verifier, volumes=True, client=client)


def _push_target(client: docker_api.DockerClient, names: Names) -> str:
    """``registry:5000`` through the stack's engine; the published loopback port through the
    host's engine (socket mode), which resolves no container names."""
    try:
        registry = client.api.inspect_container(names.registry)
    except docker_api.NotFound:
        raise DockyardError(
            f"stack {names.stack} has no registry to push to", fix="enable registry in the config"
        ) from None
    bindings = (registry["NetworkSettings"].get("Ports") or {}).get(f"{REGISTRY_PORT}/tcp")
    if bindings:
        return f"localhost:{bindings[0]['HostPort']}"
    return f"{REGISTRY_ALIAS}:{REGISTRY_PORT}"


def _running(client: docker_api.DockerClient, name: str) -> str:
    try:
        found = client.api.inspect_container(name)
    except docker_api.NotFound:
        raise DockyardError(
            f"no CI container {name}: the stack is not up", fix="run: dockyard up"
        ) from None
    if not found["State"]["Running"]:
        raise DockyardError(f"CI container {name} is {found['State']['Status']}", fix="dockyard up")
    return str(found["Id"])


def _check(result: engine_client.ExecResult, what: str) -> str:
    if result.code != 0:
        raise DockyardError(
            f"{what} failed (exit {result.code}): "
            + " | ".join(result.output.strip().splitlines()[-8:]),
            fix="see what is wrong with: dockyard doctor",
        )
    return result.output.strip()
