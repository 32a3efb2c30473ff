"""One winner among dockyard processes that create the same thing at once.

Two guards, because two kinds of racers exist: processes of this host that share the state
directory take a lock there, and say who holds it instead of waiting; processes that do not
(another state directory, another host on the same engine) are caught after the fact, for
the one name Docker does not keep unique: networks. Each racer creates its network, then
lists that name; the oldest copy wins and every loser removes its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dockyard import docker_api, labels, state
from dockyard.errors import DockyardError


@contextlib.contextmanager
def held(kind: str, name: str) -> Iterator[None]:
    """Hold the lock of ``kind`` ``name`` (an engine, a stack) for the block, or fail at once
    naming the process that holds it.

    The kernel drops a lock when its holder dies, even by SIGKILL: a dead holder never blocks
    anyone, and a held lock always means a live process is at work on that object.
    """
    fd = os.open(_path(kind, name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DockyardError(
                f"{kind} {name} is busy: another dockyard process (pid {holder}) is creating, "
                "changing or removing it; this command changed nothing",
                fix="wait for that command to finish, then run this one again",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def is_held(kind: str, name: str) -> bool:
    """Whether a live process holds that lock now (gc leaves its object alone)."""
    path = _path(kind, name)
    if not path.exists():
        return False
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(held(kind, name))
    except DockyardError:
        return True
    return False


def _path(kind: str, name: str) -> Path:
    return state.state_dir() / f".{kind}-{name}.lock"


def winner(copies: Sequence[Mapping[str, Any]]) -> str:
    """Pure: of networks with one name, the one every racer agrees to keep: the oldest,
    then the lowest ID (Docker's creation times can tie)."""
    oldest = min(copies, key=lambda net: (_nanoseconds(net.get("Created")), str(net["Id"])))
    return str(oldest["Id"])


def _nanoseconds(created: object) -> tuple[str, int]:
    """Docker's RFC 3339 time, ordered: the fraction's trailing zeros are trimmed, so the
    text alone does not sort."""
    whole, _, rest = str(created or "").partition(".")
    digits = re.match(r"\d*", rest)
    fraction = digits.group(0) if digits else ""
    return whole[:19], int((fraction + "0" * 9)[:9])


def create_network(client: docker_api.DockerClient, name: str, **options: Any) -> str:
    """Create network ``name`` unless a racer's copy wins; returns the ID of the one kept.

    A loser removes its own copy and raises: nothing is duplicated, and the loser's caller
    undoes what else it made.
    """
    mine = str(client.api.create_network(name, **options)["Id"])
    copies = [n for n in client.api.networks(names=[name]) if n.get("Name") == name]
    if len(copies) <= 1:
        return mine
    kept = winner(copies)
    if kept == mine:
        return mine
    with contextlib.suppress(docker_api.APIError):
        client.api.remove_network(mine)
    raise DockyardError(
        f"network {name} was created at the same moment by another dockyard process: that one "
        "was kept and this command stopped",
        fix="wait for the other command to finish, then run this one again",
    )


def settle(client: docker_api.DockerClient, name: str) -> str | None:
    """Heal a name a racer of an older dockyard left duplicated (Docker then refuses every
    lookup of it as ambiguous): keep the winner, remove the other copies that are dockyard's
    and empty. Returns the winner's ID, or None when no copy exists."""
    copies = [n for n in client.api.networks(names=[name]) if n.get("Name") == name]
    if not copies:
        return None
    kept = winner(copies)
    for copy in copies:
        own = copy.get("Labels") or {}
        if copy["Id"] != kept and own.get(labels.MANAGED) == "true":
            with contextlib.suppress(docker_api.APIError):
                client.api.remove_network(copy["Id"])  # refused while it has endpoints
    return kept
