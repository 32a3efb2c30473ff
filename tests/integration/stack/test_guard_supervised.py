"""A stack's guard comes back by itself when its process dies."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from dockyard.stack import guard as stack_guard

pytestmark = pytest.mark.docker


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _ping(sock: Path) -> bool:
    """The engine's version through the guard's socket (the guard forwards the request)."""
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(str(sock))
            client.sendall(b"GET /version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            answer = b""
            while piece := client.recv(65536):
                answer += piece
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.1 200") and b"ApiVersion" in answer


def _until(check, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_killed_guard_is_restarted_and_serves_again(monkeypatch):
    root = tempfile.mkdtemp(prefix="sup-", dir="/tmp")  # (short: a socket path has 108 bytes)
    monkeypatch.setenv("DOCKYARD_STATE_DIR", root)
    stack = f"sup-{secrets.token_hex(3)}"
    started = stack_guard.start(stack, stack_guard.argv(stack, "0660"), "hash")
    sock = stack_guard.socket_dir(stack) / stack_guard.SOCKET_NAME
    try:
        assert _ping(sock)
        (guard,) = _children(started.pid)
        os.kill(guard, signal.SIGKILL)
        again = _until(lambda: [c for c in _children(started.pid) if c != guard])
        assert _until(lambda: _ping(sock))
        assert stack_guard.current(stack).running
    finally:
        assert stack_guard.stop(stack)
    _until(lambda: not Path(f"/proc/{again[0]}/cmdline").exists())  # the guard went with it
    stack_guard.remove(stack)
    shutil.rmtree(root, ignore_errors=True)
