"""How full an engine's data root is: ``df`` output in, a verdict in words out (pure).

A full cache volume fails builds with bare I/O errors (``head: standard output: I/O
error``) that name neither the engine nor the disk: doctor and ``engine ls`` say it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]
DF = ["df", "-Pk"]  # POSIX format, 1024-byte blocks: the same columns everywhere


@dataclass(frozen=True)
class DiskUse:
    """The filesystem of the engine's data root, from ``df`` inside the engine."""

    path: str
    size: int  # bytes
    free: int  # bytes available to the daemon

    @property
    def percent_free(self) -> float:
        return 100.0 * self.free / self.size if self.size else 0.0


FULL_BYTES = 256 * 1024**2  # less than this left: a layer or two and builds fail
FULL_PERCENT = 1.0
LOW_PERCENT = 10.0


def parse_df(text: str, path: str) -> DiskUse | None:
    """``df -Pk PATH`` output (POSIX format, 1024-byte blocks) -> size and free space."""
    lines = [line.split() for line in text.strip().splitlines()]
    if len(lines) < 2 or len(lines[-1]) < 6:
        return None
    fields = lines[-1]
    try:
        return DiskUse(path, int(fields[1]) * 1024, int(fields[3]) * 1024)
    except ValueError:
        return None


def summary(disk: DiskUse) -> str:
    """One table cell: free of size, and FULL or LOW when it is."""
    status, _ = disk_verdict(disk)
    mark = {"fail": "FULL: ", "warn": "LOW: "}.get(status, "")
    return f"{mark}{_free(disk)}"


def _free(disk: DiskUse) -> str:
    return f"{_mib(disk.free)} free of {_mib(disk.size)} ({disk.percent_free:.0f}%)"


def disk_verdict(disk: DiskUse) -> tuple[Status, str]:
    """Pure: how full a data root is, in words a user acts on."""
    text = _free(disk)
    if disk.free < FULL_BYTES or disk.percent_free < FULL_PERCENT:
        return "fail", f"is full: {text}; builds fail with I/O errors"
    if disk.percent_free < LOW_PERCENT:
        return "warn", f"is nearly full: {text}"
    return "ok", f"has {text}"


def _mib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / 1024**2:.0f} MiB"
