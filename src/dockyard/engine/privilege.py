"""How much privilege an engine container gets on this host: a pure decision over probes.

Docker's ``--privileged`` asks for every capability; hosts whose capability bounding set lacks
one (these build machines lack CAP_SYS_RESOURCE) refuse it. The fallback grants ALL minus the
missing ones plus the unconfined options an inner dockerd needs. Sysbox, where installed, needs
no privilege at all and wins.
"""

from __future__ import annotations

import enum
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
    caps_ok: bool | None = None
    caps_error: str | None = None


@dataclass(frozen=True)
class Decision:
    """A chosen mode, or (``mode is None``) the probe to run next, named by ``needs``."""

    mode: Mode | None
    reason: str
    cap_drop: tuple[str, ...] = ()
    needs: str | None = None


class NoEngineModeError(Exception):
    """Neither sysbox, nor --privileged, nor the explicit capability set works here."""


def missing_capabilities(capbnd_hex: str) -> tuple[str, ...]:
    """Capabilities absent from a ``CapBnd:`` mask of ``/proc/PID/status``."""
    mask = int(capbnd_hex, 16)
    return tuple(name for bit, name in enumerate(CAPABILITIES) if not mask >> bit & 1)


def decide(probe: Probe) -> Decision:
    """The mode to use, the probe still needed, or :class:`NoEngineModeError`."""
    if SYSBOX_RUNTIME in probe.runtimes:
        return Decision(Mode.SYSBOX, "the sysbox-runc runtime is installed: no privilege needed")
    if probe.privileged_ok is None:
        return Decision(None, "not probed yet", needs="privileged")
    if probe.privileged_ok:
        return Decision(Mode.PRIVILEGED, "the host grants --privileged")
    if probe.caps_ok is None:
        return Decision(None, "--privileged refused", needs="caps")
    refused = _first_line(probe.privileged_error)
    if probe.caps_ok:
        dropped = ", ".join(probe.missing_caps) or "none"
        return Decision(
            Mode.CAPS,
            f"--privileged refused ({refused}); using all capabilities except {dropped}",
            cap_drop=probe.missing_caps,
        )
    raise NoEngineModeError(
        f"no way to run an engine on this host: --privileged refused ({refused}) and the "
        f"explicit capability set refused ({_first_line(probe.caps_error)})"
    )


class CgroupBinding(enum.StrEnum):
    """How whatever runs inside an engine ends up accounted under the engine's own cgroup."""

    NAMESPACE = "namespace"  # private cgroup namespace: the engine's cgroup is its root
    PARENT = "parent"  # host namespace: inner dockerd gets --cgroup-parent=<engine's cgroup>
    RUNTIME = "runtime"  # sysbox virtualises the cgroup tree itself


@dataclass(frozen=True)
class CgroupPlan:
    """The cgroup namespace an engine container gets (``None``: the runtime's) and why."""

    namespace: str | None
    binding: CgroupBinding


def cgroup_plan(mode: Mode, cgroup_version: int) -> CgroupPlan:
    """Private cgroup namespace where it works, the host's (plus a cgroup parent) elsewhere.

    A privileged container gets a writable cgroup mount rooted at its own cgroup on v1 and v2.
    The explicit capability set gets a read-only one: on v2 the start prologue remounts it
    (it holds CAP_SYS_ADMIN); on v1, with its several controller mounts, it keeps the
    measured host namespace and the host's tree mounted read-write, and the prologue passes
    the engine's own cgroup to dockerd as ``--cgroup-parent``.
    """
    if mode is Mode.SYSBOX:
        return CgroupPlan(None, CgroupBinding.RUNTIME)
    if mode is Mode.PRIVILEGED or cgroup_version >= 2:
        return CgroupPlan("private", CgroupBinding.NAMESPACE)
    return CgroupPlan("host", CgroupBinding.PARENT)


def host_config(
    mode: Mode, cap_drop: tuple[str, ...] = (), cgroupns: str | None = None
) -> dict[str, Any]:
    """Engine API ``HostConfig`` fields that grant ``mode`` to an inner dockerd.

    ``cgroupns`` is :attr:`CgroupPlan.namespace`; ``None`` keeps each mode's former default.
    """
    if mode is Mode.SYSBOX:
        return {"Runtime": SYSBOX_RUNTIME}
    if mode is Mode.PRIVILEGED:
        return {"Privileged": True} | ({"CgroupnsMode": cgroupns} if cgroupns else {})
    # What --privileged would have given, spelled out: every grantable capability, no seccomp,
    # AppArmor or SELinux confinement, unmasked /proc and /sys, and a writable cgroup tree
    # (without it inner containers fail: "mkdir /sys/fs/cgroup/cpuset/docker: read-only").
    found: dict[str, Any] = {
        "CapAdd": ["ALL"],
        "CapDrop": list(cap_drop),
        "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "label=disable"],
        "MaskedPaths": [],
        "ReadonlyPaths": [],
        "CgroupnsMode": cgroupns or "host",
    }
    if found["CgroupnsMode"] == "host":
        found["Binds"] = ["/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    return found


def _first_line(text: str | None) -> str:
    """The most telling line of an engine error: its last non-empty one."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"
