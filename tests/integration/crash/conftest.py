"""Running dockyard as an operator does, and killing it where its own progress says it is."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

CLI = [sys.executable, "-c", "from dockyard.cli import main; main()"]
RUN_LABEL = "io.dockyard.test-run"


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


def dockyard(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Done:
    done = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return Done(done.returncode, done.stdout, done.stderr)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_line(process: subprocess.Popen[str], marker: str) -> list[str]:
    """Read the command's progress (stderr) until a line holds ``marker``."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line.rstrip())
        if marker in line:
            return seen
    process.wait()
    raise AssertionError(f"{marker!r} was never printed (exit {process.returncode}): {seen}")


def kill_at(marker: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """Run a command and SIGKILL it right after it prints ``marker``: no sleeps."""
    process = start(*args, env=env)
    try:
        return wait_for_line(process, marker)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()


def labelled(client, **extra: str) -> list[str]:
    """This run's dockyard objects carrying the labels ``extra`` (io.dockyard.KEY=VALUE)."""
    selector = {
        "label": [
            "io.dockyard.managed=true",
            f"{RUN_LABEL}={os.environ['DOCKYARD_TEST_RUN']}",
            *(f"io.dockyard.{k}={v}" for k, v in extra.items()),
        ]
    }
    api = client.api
    return (
        [f"container {c['Names'][0]}" for c in api.containers(all=True, filters=selector)]
        + [f"volume {v['Name']}" for v in api.volumes(filters=selector)["Volumes"] or []]
        + [f"network {n['Name']}" for n in api.networks(filters=selector)]
    )


def named_networks(client, name: str) -> list[str]:
    return [n["Id"] for n in client.api.networks(names=[name]) if n["Name"] == name]


@pytest.fixture(autouse=True)
def own_labels(monkeypatch):
    """Each test's commands label what they make with the test's own id, so its `gc --grace
    0s` sees only its own objects, never those of a test running beside it."""
    case = f"io.dockyard.test-case={secrets.token_hex(4)}"
    monkeypatch.setenv("DOCKYARD_LABELS", f"{os.environ['DOCKYARD_LABELS']},{case}")


@pytest.fixture
def stack_file(tmp_path, unique):
    """A dind stack config of a unique name; the stack is taken down after the test."""
    name = unique("cr")
    path = tmp_path / "dockyard.yaml"
    path.write_text(f"name: {name}\ndocker: dind\n")
    yield name, path
    dockyard("down", "--stack", name, "--volumes")
