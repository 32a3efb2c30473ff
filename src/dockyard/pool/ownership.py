"""One serve per pool: a lock file per pool in the state directory.

The kernel drops a flock when its process dies, even on kill -9, so "is this pool served?"
is answered without heartbeats, and gc leaves a served pool's warm engines alone.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

from dockyard import state
from dockyard.errors import DockyardError


def _lock_path(pool: str) -> Path:
    return state.state_dir() / f".pool-{pool}.lock"


def claim(pool: str) -> IO[str]:
    """Hold ``pool`` for this process: two services driving one pool would fight over it."""
    handle = _lock_path(pool).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DockyardError(
            f"pool {pool} is already served by another dockyard serve on this host",
            fix="stop it first, or serve other pools",
        ) from None
    return handle


def served(pool: str) -> bool:
    """Whether a live serve holds ``pool`` (its lock dies with it, even on kill -9)."""
    path = _lock_path(pool)
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
