"""Keep a stack's guard running: restart it when it dies, stop it when told to.

The CI container of a socket-mode stack has Docker only through its guard; a guard that died
(killed, out of memory, a bug) would leave it without Docker until the next ``up``. This
small parent process (``python -m dockyard.stack.supervise GUARD-ARGV...``) starts the guard,
starts it again whenever it exits on its own (after a growing pause, so a guard that cannot
start does not spin), and on SIGTERM or SIGINT stops it and exits. The guard is told to die
with its supervisor (``PR_SET_PDEATHSIG``), so none is left behind even if the supervisor is
killed outright.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

PAUSES = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Seconds before each restart in a row; a guard that ran :data:`STABLE` seconds resets it."""
STABLE = 30.0
_PR_SET_PDEATHSIG = 1


def pause(failures: int) -> float:
    """The pause before the restart after ``failures`` quick exits in a row (0 or fewer: the
    guard had run stably, so it comes back at once)."""
    return PAUSES[max(0, min(failures, len(PAUSES) - 1))]


def _die_with(parent: int) -> None:
    """In the child before exec: SIGTERM when the supervisor dies. A supervisor that died
    before this ran sends nothing, so the child checks it still has its parent."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def supervise(argv: Sequence[str]) -> int:
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failures = 0
    while not stopping:
        started = time.monotonic()
        die_with_me = functools.partial(_die_with, os.getpid())
        child = subprocess.Popen(list(argv), preexec_fn=die_with_me)  # noqa: PLW1509
        if stopping:  # (told to stop while it was being started)
            child.send_signal(signal.SIGTERM)
        code = child.wait()
        if stopping:
            return 0
        failures = 0 if time.monotonic() - started > STABLE else failures + 1
        print(f"dockyard supervise: the guard exited ({code}); restarting it", file=sys.stderr)
        time.sleep(pause(failures - 1))
    return 0


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1:]))
