"""The stack's guard in socket mode: a ``dockyard guard`` process in front of the host's socket.

The CI container gets the guard's socket (ci-build profile, owner = the stack) instead of the
host's, through a directory holding nothing but the socket, bind-mounted read-only at
``/run/dockyard``: a restarted guard's new socket is visible without recreating the CI
container, and the CI can write nothing the guard (root on the host) later reads or appends to.
The process is the only stack object that is not a Docker object: its state (pid, spec hash)
is a small file next to the socket's directory. It runs under :mod:`.supervise`, which starts
it again if it dies.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard import state
from dockyard.errors import DockyardError
from dockyard.guard.tagbook import TagBook

SOCKET_NAME = "guard.sock"
SOCKET_DIR = "socket"  # the only part the CI container sees
MOUNT = "/run/dockyard"
UPSTREAM = "unix:///var/run/docker.sock"
READY_SECONDS = 10.0
TAGS_FILE = "tags.json"


@dataclass(frozen=True)
class GuardState:
    pid: int
    spec_hash: str
    running: bool


def directory(stack: str) -> Path:
    """Host directory holding the guard's log and state (0700) and its socket directory."""
    path = _folder(stack)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    (path / SOCKET_DIR).mkdir(exist_ok=True, mode=0o755)
    return path


def audit_log(stack: str) -> Path:
    return _folder(stack) / "audit.log"


def socket_dir(stack: str) -> Path:
    """What the CI container mounts (read-only): the socket alone."""
    return _folder(stack) / SOCKET_DIR


def _folder(stack: str) -> Path:
    return state.state_dir() / "stacks" / stack / "guard"


def argv(stack: str, socket_mode: str) -> list[str]:
    """The guard's command line."""
    listen = f"unix://{socket_dir(stack) / SOCKET_NAME}?owner={stack}&mode={socket_mode}"
    return [
        sys.executable, "-m", "dockyard.stack.supervise",  # restarts the guard if it dies
        sys.executable, "-m", "dockyard", "guard", "--upstream", UPSTREAM,
        "--listen", listen, "--profile", "ci-build",
        "--audit-log", str(audit_log(stack)), "--tags-file", str(_folder(stack) / TAGS_FILE),
    ]  # fmt: skip


def tags(stack: str) -> list[str]:
    """The image tags the stack's CI put on images through its guard (its tag records)."""
    path = _folder(stack) / TAGS_FILE
    if not path.exists():
        return []
    return [tag for owned in TagBook(path).owners.values() for tag in owned]


def current(stack: str) -> GuardState | None:
    path = _folder(stack) / "state.json"
    try:
        saved = json.loads(path.read_text())
        pid, digest = int(saved["pid"]), str(saved["spec_hash"])
    except (OSError, ValueError, KeyError):
        return None
    return GuardState(pid, digest, _alive(pid))


def start(stack: str, command: list[str], spec_hash: str) -> GuardState:
    """Start the guard detached from this process and wait until its socket answers."""
    stop(stack)
    folder = directory(stack)
    sock = socket_dir(stack) / SOCKET_NAME
    sock.unlink(missing_ok=True)
    with (folder / "guard.log").open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    state.write_private(
        folder / "state.json", json.dumps({"pid": process.pid, "spec_hash": spec_hash}).encode()
    )
    deadline = time.monotonic() + READY_SECONDS
    while not _answers(sock):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(stack)
            tail = (folder / "guard.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise DockyardError(
                f"the guard of stack {stack} did not start: {' | '.join(tail) or 'no log'}",
                fix=f"see {folder / 'guard.log'}",
            )
        time.sleep(0.05)
    return GuardState(process.pid, spec_hash, True)


def stop(stack: str) -> bool:
    """Stop the guard if it runs; True when one was stopped."""
    found = current(stack)
    (_folder(stack) / "state.json").unlink(missing_ok=True)
    if found is None or not found.running:
        return False
    os.kill(found.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _alive(found.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(found.pid):
        os.kill(found.pid, signal.SIGKILL)
    return True


def remove(stack: str) -> None:
    """Stop the guard and delete its directory (socket, state, audit log)."""
    stop(stack)
    shutil.rmtree(_folder(stack).parent, ignore_errors=True)


def _alive(pid: int) -> bool:
    """A live guard process (not a recycled pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"guard" in cmdline and b"dockyard" in cmdline


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(1)
            client.connect(str(path))
            client.sendall(b"GET /_ping HTTP/1.1\r\nHost: guard\r\nConnection: close\r\n\r\n")
            return client.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
