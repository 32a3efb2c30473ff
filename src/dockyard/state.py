"""Where dockyard keeps files on the host: certificates and per-host-engine caches.

``DOCKYARD_STATE_DIR`` overrides the default (``$XDG_STATE_HOME/dockyard`` or
``~/.local/state/dockyard``). The directory is created 0700: it holds private keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
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
    """Write ``data`` atomically with ``mode`` set before any byte lands."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    tmp.replace(path)
