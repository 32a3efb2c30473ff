"""The stack guard's supervisor, on a stand-in child process (no Docker needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dockyard.stack import supervise


def test_pauses_grow_and_stop_growing():
    assert [supervise.pause(n) for n in range(7)] == [0.1, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0]


def test_a_guard_that_ran_stably_comes_back_at_once():
    # after a stable run the count is reset to 0, and the loop asks for pause(0 - 1)
    assert supervise.pause(-1) == 0.1


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(part) for part in text.split()]


def _wait_for(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_killed_child_comes_back_and_sigterm_stops_both():
    parent = subprocess.Popen(
        [sys.executable, "-m", "dockyard.stack.supervise", "sleep", "60"],
        stderr=subprocess.PIPE,
    )
    try:
        first = _wait_for(lambda: _children(parent.pid))[0]
        os.kill(first, signal.SIGKILL)
        second = _wait_for(lambda: [c for c in _children(parent.pid) if c != first])[0]
        assert second != first
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(10) == 0
        _wait_for(lambda: not Path(f"/proc/{second}").exists() or _zombie(second))
        assert b"the guard exited (-9); restarting it" in parent.stderr.read()
    finally:
        parent.kill()
        parent.wait()


def test_the_child_dies_with_a_killed_supervisor():
    parent = subprocess.Popen([sys.executable, "-m", "dockyard.stack.supervise", "sleep", "60"])
    child = _wait_for(lambda: _children(parent.pid))[0]
    parent.kill()
    parent.wait()
    _wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True
