"""Where dockyard keeps files on the host: certificates and per-host-engine caches; and how
its private files and its servers' unix sockets are created.

``DOCKYARD_STATE_DIR`` overrides the default (``$XDG_STATE_HOME/dockyard`` or
``~/.local/state/dockyard``). The directory is created 0700: it holds private keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dockyard.errors import DockyardError


def state_dir() -> Path:
    explicit = os.environ.get("DOCKYARD_STATE_DIR")
    if explicit:
        root = Path(explicit)
    else:
        xdg = os.environ.get("XDG_STATE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".local" / "state") / "dockyard"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """An exclusive host-wide lock, so parallel dockyard processes do not race on files."""
    path = state_dir() / f".{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` atomically with ``mode`` set before any byte lands.

    The temporary file is new and unique (``mkstemp``: O_EXCL, never a planted symlink), so
    two writers, threads or processes, never share it.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def created_with_mode(mode: int) -> Iterator[None]:
    """Files and sockets created inside get at most ``mode``: a socket is never reachable,
    even for an instant, by more users than it should be (a chmod after bind leaves a
    window). The umask is process-wide, so keep the block to the one call that binds."""
    previous = os.umask(0o777 & ~mode)
    try:
        yield
    finally:
        os.umask(previous)


def clear_stale_socket(path: Path) -> None:
    """Make way for a server's unix socket: one left by a server that died is removed; one a
    live server answers on, or a file that is not a socket, is an error naming it."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise DockyardError(f"{path} exists and is not a socket", fix="choose another path")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)  # nobody listens: left by a server that died
            return
    raise DockyardError(
        f"{path} is the socket of a server that is running",
        fix="stop that server first, or listen on another path",
    )
