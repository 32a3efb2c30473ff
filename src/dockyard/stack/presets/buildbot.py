"""The Buildbot preset: a real CI server (a master and its local worker) from Debian packages.

One container runs both: the worker inherits the container's ``DOCKER_*`` environment, so its
builds reach the stack's engine like any docker client. The builder ``image`` builds the
example, pushes it to ``$DOCKYARD_REGISTRY`` and records the pushed digest. Debian ships no
``buildbot-www`` (the web UI), and Buildbot 3.7 refuses to serve even its REST API without a
``base`` www plugin, so the image carries a stand-in plugin whose page points at the REST API.

Builds are triggered and followed through the REST API with ``curl`` run inside the container,
so it works whether or not the UI port is published. Parsing the API's answers is pure.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard import docker_api
from dockyard.engine import client as engine_client
from dockyard.errors import DockyardError
from dockyard.images import recipes
from dockyard.images.buildbot import HOME, UI_PORT
from dockyard.stack.presets import Preset

BUILDER = "image"
SCHEDULER = "force"
EXAMPLE_DIR = "/srv/example"

# The example the builder builds: the checkout's, like ``dockyard demo``.
EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "hello"
API = f"http://localhost:{UI_PORT}/api/v2"
# Buildbot's result codes (buildbot.process.results), by their index.
RESULTS = ("success", "warnings", "failure", "skipped", "exception", "retry", "cancelled")


@dataclass(frozen=True)
class Step:
    name: str
    result: str | None  # None while the step runs
    state: str  # Buildbot's state string, e.g. "'docker push ...'" or "failed (1)"


@dataclass(frozen=True)
class BuildResult:
    number: int
    result: str | None  # None while the build runs
    steps: tuple[Step, ...]
    log_tail: str
    digest: str | None  # registry/repo@sha256:..., once the digest step ran

    @property
    def complete(self) -> bool:
        return self.result is not None


def example_files(source: Path = EXAMPLE) -> dict[str, bytes]:
    """The example's files at :data:`EXAMPLE_DIR`; none outside a checkout (builds then fail
    saying the directory is missing)."""
    if not source.is_dir():
        return {}
    return {
        f"{EXAMPLE_DIR}/{path.relative_to(source)}": path.read_bytes()
        for path in sorted(source.rglob("*"))
        if path.is_file()
    }


PRESET = Preset(
    name="buildbot",
    image=f"dockyard/buildbot:{recipes.TAG}",
    image_role="buildbot",
    home=HOME,
    ui_port=UI_PORT,
    env={
        "DOCKYARD_REGISTRY": "registry:5000",
        # The base image the stack seeds into its engine: the example builds FROM it.
        "DOCKYARD_BASE": f"dockyard/base:{recipes.TAG}",
    },
    files=example_files(),
)


# --- the REST API, pure -----------------------------------------------------------------------


def force_request() -> dict[str, Any]:
    """The JSON-RPC call that makes the force scheduler start one build of the builder."""
    return {"jsonrpc": "2.0", "id": 1, "method": "force", "params": {"builderNames": [BUILDER]}}


def parse_force(answer: dict[str, Any]) -> int:
    """The build request ID from a force answer (``result: [buildsetid, {builderid: brid}]``)."""
    if "error" in answer:
        raise DockyardError(f"buildbot refused to start a build: {answer['error']}")
    requests = answer["result"][1]
    return int(next(iter(requests.values())))


def parse_request_builds(answer: dict[str, Any]) -> int | None:
    """The number of the build started for a build request, None while it waits for one."""
    builds = answer.get("builds") or []
    return int(builds[0]["number"]) if builds else None


def result_name(code: int | None) -> str | None:
    if code is None:
        return None
    return RESULTS[code] if 0 <= code < len(RESULTS) else f"result {code}"


def parse_build(
    build: dict[str, Any], steps: dict[str, Any] | None = None, log_tail: str = ""
) -> BuildResult:
    """A :class:`BuildResult` from ``/builders/B/builds/N?property=digest`` and its steps."""
    [found] = build["builds"]
    digest = (found.get("properties") or {}).get("digest")
    return BuildResult(
        number=int(found["number"]),
        result=result_name(found["results"]) if found["complete"] else None,
        steps=tuple(
            Step(step["name"], result_name(step["results"]), step["state_string"])
            for step in sorted((steps or {}).get("steps", []), key=lambda s: int(s["number"]))
        ),
        log_tail=log_tail,
        digest=str(digest[0]).strip() if digest else None,
    )


def tail_step(steps: dict[str, Any]) -> int | None:
    """The step whose log explains the outcome: the first that did not succeed, else the last."""
    found = sorted(steps.get("steps", []), key=lambda s: int(s["number"]))
    for step in found:
        if step["results"] not in (None, 0):
            return int(step["stepid"])
    return int(found[-1]["stepid"]) if found else None


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


# --- the REST API, through the container --------------------------------------------------------


def _call(
    client: docker_api.DockerClient,
    ci_container: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> str:
    """``curl`` inside the CI container: the API answers there, published port or not."""
    command = ["curl", "-sS", "--fail-with-body", "--max-time", "30"]
    if body is not None:
        command += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    found = engine_client.run(client, ci_container, [*command, f"{API}{path}"])
    if found.code != 0:
        raise DockyardError(
            f"buildbot's REST API answered {path} with an error (curl exit {found.code}): "
            f"{found.output.strip()[-300:]}",
            fix=f"read the master's log: docker logs {ci_container}",
        )
    return found.output


def _get(client: docker_api.DockerClient, ci_container: str, path: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(_call(client, ci_container, path))
    return answer


def wait_ready(client: docker_api.DockerClient, ci_container: str, timeout: float = 120) -> None:
    """Wait until the master answers and its worker is connected: only then do builds start."""
    deadline = time.monotonic() + timeout
    problem = ""
    while time.monotonic() < deadline:
        try:
            workers = _get(client, ci_container, "/workers")["workers"]
        except DockyardError as exc:
            problem = str(exc)
        else:
            if any(w["name"] == "local" and w["connected_to"] for w in workers):
                return
            problem = "the master answers but worker 'local' is not connected"
        time.sleep(0.5)
    raise DockyardError(
        f"buildbot in {ci_container} was not ready after {timeout:.0f}s: {problem}",
        fix=f"read the master's log: docker logs {ci_container}",
    )


def trigger(client: docker_api.DockerClient, ci_container: str, timeout: float = 120) -> int:
    """Force a build of the ``image`` builder; returns its build number once it has one."""
    wait_ready(client, ci_container, timeout)
    request = parse_force(
        json.loads(_call(client, ci_container, f"/forceschedulers/{SCHEDULER}", force_request()))
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        number = parse_request_builds(
            _get(client, ci_container, f"/buildrequests/{request}/builds")
        )
        if number is not None:
            return number
        time.sleep(0.5)
    raise DockyardError(
        f"build request {request} did not start a build within {timeout:.0f}s",
        fix="check that worker 'local' is connected: GET /api/v2/workers",
    )


def follow(
    client: docker_api.DockerClient, ci_container: str, build_number: int, timeout: float = 600
) -> BuildResult:
    """Poll a build until it completes; its steps, digest and the telling log's tail."""
    path = f"/builders/{BUILDER}/builds/{build_number}"
    deadline = time.monotonic() + timeout
    while True:
        build = _get(client, ci_container, f"{path}?property=digest")
        if build["builds"] and build["builds"][0]["complete"]:
            break
        if time.monotonic() > deadline:
            raise DockyardError(
                f"build {build_number} of {BUILDER} did not finish within {timeout:.0f}s",
                fix=f"follow it: GET {path}",
            )
        time.sleep(1)
    steps = _get(client, ci_container, f"/builds/{build['builds'][0]['buildid']}/steps")
    stepid = tail_step(steps)
    log = "" if stepid is None else _call(client, ci_container, f"/steps/{stepid}/logs/stdio/raw")
    return parse_build(build, steps, tail(log))
