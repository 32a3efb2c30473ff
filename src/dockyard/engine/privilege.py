"""How much privilege an engine container gets on this host: a pure decision over probes.

Docker's ``--privileged`` asks for every capability; hosts whose capability bounding set lacks
one (these build machines lack CAP_SYS_RESOURCE) refuse it. The fallback grants ALL minus the
missing ones plus the unconfined options an inner dockerd needs. Sysbox, where installed, needs
no privilege at all and wins.

A capability the host engine does not know (Docker 20.10 knows no PERFMON, BPF or
CHECKPOINT_RESTORE) is never part of its ``ALL``, so it is not dropped either: naming it in
``CapDrop`` is refused (``unknown capability``). The engine's own answer says which those are.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from typing import Any

SYSBOX_RUNTIME = "sysbox-runc"

# Linux capability numbers (include/uapi/linux/capability.h), for decoding CapBnd.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip


class Mode(enum.StrEnum):
    SYSBOX = "sysbox"
    PRIVILEGED = "privileged"
    CAPS = "caps"


@dataclass(frozen=True)
class Probe:
    """What was observed on the host engine. ``None`` means not tried."""

    runtimes: frozenset[str] = frozenset()
    privileged_error: str | None = None
    privileged_ok: bool | None = None
    missing_caps: tuple[str, ...] = ()
    unknown_caps: tuple[str, ...] = ()  # refused by the host engine as unknown names
    caps_ok: bool | None = None
    caps_error: str | None = None
    in_container: bool = False  # dockyard (and so the host engine) runs inside a container

    @property
    def cap_drop(self) -> tuple[str, ...]:
        """What the explicit set drops: capabilities the host lacks and its engine knows."""
        return tuple(cap for cap in self.missing_caps if cap not in self.unknown_caps)


@dataclass(frozen=True)
class Decision:
    """A chosen mode, or (``mode is None``) the probe to run next, named by ``needs``."""

    mode: Mode | None
    reason: str
    cap_drop: tuple[str, ...] = ()
    needs: str | None = None


class NoEngineModeError(Exception):
    """Neither sysbox, nor --privileged, nor the explicit capability set works here."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


_UNKNOWN_CAP = re.compile(r'unknown capability:?\s*"?(?:CAP_)?([A-Z_]+)"?', re.IGNORECASE)

# What a container that runs dockyard and its engine needs (``docker run`` flags).
NESTED_FLAGS = (
    "--cap-add ALL --security-opt seccomp=unconfined --security-opt apparmor=unconfined "
    "--security-opt systempaths=unconfined --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw "
    "-v VOLUME:/var/lib/docker"
)


def missing_capabilities(capbnd_hex: str) -> tuple[str, ...]:
    """Capabilities absent from a ``CapBnd:`` mask of ``/proc/PID/status``."""
    mask = int(capbnd_hex, 16)
    return tuple(name for bit, name in enumerate(CAPABILITIES) if not mask >> bit & 1)


def unknown_capability(error: str | None) -> str | None:
    """The capability an engine refused as unknown (``invalid CapDrop: unknown capability``)."""
    match = _UNKNOWN_CAP.search(error or "")
    return match.group(1).upper() if match else None


def after_caps_try(probe: Probe, ok: bool, error: str | None) -> Probe:
    """Record one try of the explicit set; an unknown capability means: try without it."""
    unknown = None if ok else unknown_capability(error)
    if unknown is not None and unknown in probe.cap_drop:
        return dataclasses.replace(probe, unknown_caps=(*probe.unknown_caps, unknown))
    return dataclasses.replace(probe, caps_ok=ok, caps_error=error)


def decide(probe: Probe) -> Decision:
    """The mode to use, the probe still needed, or :class:`NoEngineModeError`."""
    if SYSBOX_RUNTIME in probe.runtimes:
        return Decision(Mode.SYSBOX, "the sysbox-runc runtime is installed: no privilege needed")
    if probe.privileged_ok is None:
        return Decision(None, "not probed yet", needs="privileged")
    if probe.privileged_ok:
        return Decision(Mode.PRIVILEGED, "the host grants --privileged")
    if probe.caps_ok is None:
        return Decision(None, "--privileged refused", cap_drop=probe.cap_drop, needs="caps")
    refused = _first_line(probe.privileged_error)
    if probe.caps_ok:
        dropped = ", ".join(probe.cap_drop) or "none"
        return Decision(
            Mode.CAPS,
            f"--privileged refused ({refused}); using all capabilities except {dropped}",
            cap_drop=probe.cap_drop,
        )
    raise NoEngineModeError(
        f"no way to run an engine on this host: --privileged refused ({refused}) and the "
        f"explicit capability set refused ({_first_line(probe.caps_error)})",
        fix=_no_mode_fix(probe),
    )


def _no_mode_fix(probe: Probe) -> str:
    """A fix that works where this host is: inside a container, its flags are the cause."""
    lacking = [cap for cap in ("SYS_ADMIN", "NET_ADMIN", "MKNOD") if cap in probe.missing_caps]
    if probe.in_container:
        lacks = f" (it lacks {', '.join(lacking)})" if lacking else ""
        return (
            f"dockyard runs inside a container that cannot pass on what dockerd needs{lacks}: "
            f"start that container with {NESTED_FLAGS}, or --privileged"
        )
    if lacking:
        return (
            f"this host's capability bounding set lacks {', '.join(lacking)}, which dockerd "
            "needs: run dockyard where they are granted, or install sysbox-runc"
        )
    return (
        "the host engine refuses both (an authorization plugin, a rootless engine, or a "
        "security policy: see the errors above): allow privileged containers for dockyard's "
        "engines, or install sysbox-runc"
    )


def host_config(mode: Mode, cap_drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Engine API ``HostConfig`` fields that grant ``mode`` to an inner dockerd."""
    if mode is Mode.SYSBOX:
        return {"Runtime": SYSBOX_RUNTIME}
    if mode is Mode.PRIVILEGED:
        return {"Privileged": True}
    # What --privileged would have given, spelled out: every grantable capability, no seccomp,
    # AppArmor or SELinux confinement, unmasked /proc and /sys, and a writable cgroup tree
    # (without it inner containers fail: "mkdir /sys/fs/cgroup/cpuset/docker: read-only").
    return {
        "CapAdd": ["ALL"],
        "CapDrop": list(cap_drop),
        "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "label=disable"],
        "MaskedPaths": [],
        "ReadonlyPaths": [],
        "CgroupnsMode": "host",
        "Binds": ["/sys/fs/cgroup:/sys/fs/cgroup:rw"],
    }


def _first_line(text: str | None) -> str:
    """The most telling line of an engine error: its last non-empty one."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"
