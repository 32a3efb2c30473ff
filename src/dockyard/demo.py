"""The main job: an engine, a build and a run inside it, from a CI-like client, timed.

Every step goes through the same public API a user has; the client container gets nothing but
what ``engine env`` prints, so a green demo proves the CI contract end to end.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dockyard import config, docker_api
from dockyard.engine import client as engine_client
from dockyard.engine import service
from dockyard.errors import DockyardError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    detail: str


@dataclass
class Report:
    engine: str
    steps: list[Step] = field(default_factory=list)
    output: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def example_dir() -> Path:
    if not (EXAMPLE / "Dockerfile").exists():
        raise DockyardError(
            f"the example is missing at {EXAMPLE}", fix="run the demo from a dockyard checkout"
        )
    return EXAMPLE


def run(*, keep: bool = False, progress: Callable[[str], None] = lambda _m: None) -> Report:
    from dockyard.images import builder

    client = docker_api.shared()
    source = example_dir()
    report = Report(engine=f"demo-{secrets.token_hex(3)}")

    def timed(name: str, action: Callable[[], str]) -> str:
        progress(name)
        started = time.monotonic()
        detail = action()
        report.steps.append(Step(name, time.monotonic() - started, detail))
        return detail

    agent = timed("ensure agent image", lambda: builder.ensure("agent", progress=progress))
    base = timed("ensure base image", lambda: builder.ensure("base", progress=progress))
    options = config.EngineOptions(name=report.engine)
    created = service.create(options, client=client, progress=progress)
    report.steps.append(
        Step(
            "create engine (ready, TLS-verified)",
            created.seconds["total"],
            f"{created.info.endpoint} {created.info.storage_driver} {created.info.privilege}",
        )
    )
    cid: str | None = None
    try:
        timed("seed base image into engine", lambda: service.seed(report.engine, [base]))
        cid = engine_client.start(report.engine, agent, client=client)
        engine_client.put_tree(client, cid, source, "/work/hello")
        build = timed(
            "docker build (in client container)",
            lambda: _check(
                engine_client.run(
                    client,
                    cid,
                    ["docker", "build", "-q", "--build-arg", f"BASE={base}", "-t", "hello", "."],
                    workdir="/work/hello",
                ),
                "docker build",
            ),
        )
        report.steps[-1] = Step(report.steps[-1].name, report.steps[-1].seconds, build)
        report.output = timed(
            "docker run (in client container)",
            lambda: _check(
                engine_client.run(client, cid, ["docker", "run", "--rm", "hello"]), "docker run"
            ),
        )
    finally:
        if cid:
            engine_client.remove(client, cid)
        if not keep:
            timed("remove engine", lambda: ", ".join(service.rm(report.engine, volumes=True)))
    return report


def _check(result: engine_client.ExecResult, what: str) -> str:
    if result.code != 0:
        raise DockyardError(
            f"{what} failed in the client container (exit {result.code}): "
            + " | ".join(result.output.strip().splitlines()[-8:])
        )
    return result.output.strip()
