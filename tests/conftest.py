"""Suite-wide guarantees: a private state directory, and no dockyard object left behind.

The leak check runs once, in the controlling process after every worker is done: whatever
dockyard-labelled container, volume or network exists then and did not exist at the start was
created by this run and leaked. It is removed, and the run fails.
"""

from __future__ import annotations

import os
import tempfile

import pytest

KINDS = ("containers", "volumes", "networks")
_before: dict[str, set[str]] = {}


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def _managed() -> dict[str, set[str]] | None:
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:
        return None
    selector = {"label": "io.dockyard.managed=true"}
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


def pytest_sessionstart(session: pytest.Session) -> None:
    if "DOCKYARD_STATE_DIR" not in os.environ:
        os.environ["DOCKYARD_STATE_DIR"] = tempfile.mkdtemp(prefix="dockyard-test-state-")
    if _is_controller(session.config):
        _before.update(_managed() or {})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _is_controller(session.config):
        return
    after = _managed()
    if after is None:
        return
    leaked = {kind: sorted(after[kind] - _before.get(kind, set())) for kind in KINDS}
    # containers first: volumes and networks in use cannot go
    for kind in KINDS:
        for ident in leaked[kind]:
            _remove(kind, ident)
    if any(leaked.values()):
        report = "; ".join(f"{k}: {', '.join(i[:12] for i in v)}" for k, v in leaked.items() if v)
        print(f"\nLEAK: the suite left dockyard-labelled objects behind (now removed): {report}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
