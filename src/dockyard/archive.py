"""Tar archives of in-memory files, the way the Engine API's archive endpoint takes them.

One place decides modes: private keys (``*key.pem``) are 0600 and the directories holding them
0700, in every container and volume dockyard writes them to. Other directories are left to the
extraction (created 0755 when missing, existing ones untouched).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import PurePosixPath


def tar(files: dict[str, bytes], *, owner: int = 0, mode: int = 0o644) -> bytes:
    """A tar of ``files`` (path -> content) owned by ``owner``."""
    buffer = io.BytesIO()
    key_dirs = sorted(
        {str(PurePosixPath(p.lstrip("/")).parent) for p in files if p.endswith("key.pem")} - {"."}
    )
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory in key_dirs:
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o700
            entry.uid = entry.gid = owner
            archive.addfile(entry)
        for path, data in files.items():
            entry = tarfile.TarInfo(path.lstrip("/"))
            entry.size = len(data)
            entry.mode = 0o600 if path.endswith("key.pem") else mode
            entry.uid = entry.gid = owner
            archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()
