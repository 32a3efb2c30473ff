"""Where dockyard keeps files on the host: certificates and per-host-engine caches.

``DOCKYARD_STATE_DIR`` overrides the default (``$XDG_STATE_HOME/dockyard`` or
``~/.local/state/dockyard``). The directory is created 0700: it holds private keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
