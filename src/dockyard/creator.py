"""Which process made a short-lived object, so gc can tell whether its maker is still alive.

A command that makes something only for its own run (demo's verify engine) labels it with
``io.dockyard.creator=HOST/PID/START``: killed before it cleans up, its objects are then
plainly orphans. START (the process's start time in clock ticks since boot) keeps a reused
PID from passing for the dead creator.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dockyard import labels

CREATOR = labels.PREFIX + "creator"
"""On what lives only as long as its creator: gc reclaims it once that process is gone."""
MAKER = labels.PREFIX + "maker"
"""On every engine: the process that made it. Until it is ready, that process may still be at
work on it: an engine whose maker is alive is never replaced or reclaimed."""
ABANDONED_AFTER = 300.0
"""A never-ready engine made on another host (its maker cannot be checked from here) is taken
for abandoned after this long: far beyond any ready timeout in use."""


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after its end.
    return stat.rsplit(")", 1)[-1].split()[19]


def mine() -> str:
    """This process's tag."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_time(pid) or '?'}"


def alive(tag: str) -> bool | None:
    """Whether the tagged process still runs; None when that cannot be known from here (a
    tag of another host, or one that is not a tag)."""
    host, _, rest = tag.partition("/")
    pid, _, started = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return _start_time(int(pid)) == started


def label() -> dict[str, str]:
    return {CREATOR: mine()}


def abandoned(tag: str | None, age: float) -> bool:
    """Whether a never-ready object's maker has given up on it: dead, unknown (made before
    makers were recorded), or on another host and long past any ready timeout."""
    if not tag:
        return True
    found = alive(tag)
    return found is False or (found is None and age > ABANDONED_AFTER)
