"""Suite-wide guarantees: a private state directory, and no dockyard object left behind.

Everything dockyard creates during the run carries ``io.dockyard.test-run=<id>`` (through
``DOCKYARD_LABELS``), so the leak check sees only this run's objects, never a user's or a
concurrent run's. It runs once, in the controlling process after every worker is done: any
container, volume or network of this run still present leaked. It is removed, and the run
fails. So is an anonymous volume (no name, no labels: a ``VOLUME`` of an image) left dangling
since the run began: a container of ours removed without its volumes.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import shutil
import tempfile
import time

import pytest

KINDS = ("containers", "volumes", "networks")
RUN_LABEL = "io.dockyard.test-run"


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def _managed() -> dict[str, set[str]] | None:
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:
        return None
    selector = {"label": ["io.dockyard.managed=true", f"{RUN_LABEL}={os.environ[RUN_ENV]}"]}
    return {
        "containers": {c["Id"] for c in client.api.containers(all=True, filters=selector)},
        "volumes": {v["Name"] for v in client.api.volumes(filters=selector)["Volumes"] or []},
        "networks": {n["Id"] for n in client.api.networks(filters=selector)},
    }


def _remove(kind: str, ident: str) -> None:
    import docker

    api = docker.from_env().api
    try:
        if kind == "containers":
            api.remove_container(ident, force=True, v=True)
        elif kind == "volumes":
            api.remove_volume(ident, force=True)
        else:
            api.remove_network(ident)
    except docker.errors.APIError:
        pass


RUN_ENV = "DOCKYARD_TEST_RUN"
OWN_STATE_ENV = "DOCKYARD_TEST_OWN_STATE"  # the state directory this run made, to remove
STARTED_ENV = "DOCKYARD_TEST_STARTED"
_ANONYMOUS = re.compile(r"[0-9a-f]{64}")


def _anonymous_since(started: float) -> set[str]:
    """Dangling unlabelled volumes with generated names, created since ``started``."""
    import docker

    found = docker.from_env(timeout=30).api.volumes(filters={"dangling": True})["Volumes"] or []
    return {
        volume["Name"]
        for volume in found
        if _ANONYMOUS.fullmatch(volume["Name"])
        and not volume.get("Labels")
        and datetime.datetime.fromisoformat(volume["CreatedAt"]).timestamp() >= started - 1
    }


def pytest_configure(config: pytest.Config) -> None:
    # Set before xdist starts its workers, so they inherit one run id and one state dir.
    os.environ.setdefault(RUN_ENV, secrets.token_hex(4))
    os.environ.setdefault(STARTED_ENV, str(time.time()))
    if "DOCKYARD_STATE_DIR" not in os.environ:  # made only when needed, removed at the end
        made = tempfile.mkdtemp(prefix="dockyard-test-state-")
        os.environ["DOCKYARD_STATE_DIR"] = os.environ[OWN_STATE_ENV] = made
    own = f"{RUN_LABEL}={os.environ[RUN_ENV]}"
    existing = os.environ.get("DOCKYARD_LABELS", "")
    if own not in existing:
        os.environ["DOCKYARD_LABELS"] = f"{existing},{own}" if existing else own


def pytest_unconfigure(config: pytest.Config) -> None:
    # After every other hook: the leak check and the workers are done with the state dir.
    if _is_controller(config) and (own := os.environ.pop(OWN_STATE_ENV, None)):
        shutil.rmtree(own, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _is_controller(session.config):
        return
    after = _managed()
    if after is None:
        return
    leaked = {kind: sorted(after[kind]) for kind in KINDS}
    leaked["volumes"] += sorted(_anonymous_since(float(os.environ[STARTED_ENV])))
    # containers first: volumes and networks in use cannot go
    for kind in KINDS:
        for ident in leaked[kind]:
            _remove(kind, ident)
    if any(leaked.values()):
        report = "; ".join(f"{k}: {', '.join(i[:12] for i in v)}" for k, v in leaked.items() if v)
        print(f"\nLEAK: the suite left objects behind (now removed): {report}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
