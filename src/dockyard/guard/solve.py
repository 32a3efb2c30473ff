"""BuildKit's Control API (buildx's ``POST /grpc``), judged per gRPC call and message.

Pure functions of a method name and a message's bytes, read with :mod:`.protowire` by the
field numbers of BuildKit's public API (``moby.buildkit.v1`` ``SolveRequest``, ``pb.Op``
and friends). What is not known exactly is refused: an unknown method or field, an LLB op
kind the guard does not read, a value outside the harmless ones.

A Solve is what can escape: its entitlements (``network.host``, ``security.insecure``), a
raw LLB definition's exec ops (host network, insecure mode, cgroup parent), frontend
attributes that force host networking or a cgroup parent, and exporter attributes that
name image tags (which need the same ownership as ``docker tag``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard import labels
from dockyard.guard.protowire import ProtoError, fields, map_entry, string_map

SERVICE = "/moby.buildkit.v1.Control/"
SOLVE = SERVICE + "Solve"
STATUS = SERVICE + "Status"
READ_ONLY = frozenset({SERVICE + "ListWorkers", SERVICE + "Info", "/grpc.health.v1.Health/Check"})
"""Calls that only describe the daemon."""

_EXPORTERS = frozenset({"", "moby", "local", "tar"})
"""dockerd's exporters: its image store (``moby``) or back to the client's session."""
_IMAGE_ATTRS = frozenset({"name"})
_FRONTENDS = frozenset({"", "dockerfile.v0"})
_NETWORK_MODES = frozenset({"", "sandbox", "none"})
_SOURCE_SCHEMES = frozenset({"docker-image", "local", "git", "http", "https"})
_LOCAL_SESSION = "local.session"


class SolveDeniedError(Exception):
    """A call the guard refuses; the message is what the client prints."""


@dataclass(slots=True)
class Solve:
    """What a readable, harmless Solve still needs settled: tags to own, sessions to hold."""

    ref: str = ""
    tags: list[str] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)


def _deny(reason: str) -> SolveDeniedError:
    return SolveDeniedError(reason)


def judge_solve(message: bytes, entitlements: frozenset[str] = frozenset()) -> Solve:
    """The needs of a ``SolveRequest``, or :class:`SolveDeniedError`."""
    try:
        return _solve(message, entitlements)
    except ProtoError as exc:
        raise _deny(f"unreadable Solve: {exc}") from None


def _solve(message: bytes, allowed: frozenset[str]) -> Solve:
    found = Solve()
    exporter = frontend = ""
    exporter_attrs: list[tuple[str, str]] = []
    definitions: list[bytes] = []
    for part in fields(message):
        number = part.number
        if number == 1:
            found.ref = part.text()
        elif number == 2:
            definitions.append(part.data())
        elif number == 3:
            exporter = part.text()
        elif number == 4:
            exporter_attrs.append(string_map(part))
        elif number == 5:
            if part.text():
                found.sessions.add(part.text())
        elif number == 6:
            frontend = part.text()
        elif number == 7:
            _frontend_attr(*string_map(part))
        elif number == 8:
            if part.data():
                raise _deny("cache imports and exports are not allowed through the guard")
        elif number == 9:
            if part.text() not in allowed:
                raise _deny(f"entitlement {part.text()[:40]!r} is not allowed by this profile")
        elif number == 10:
            _name, definition = map_entry(part)
            definitions.append(definition)
        else:
            raise _deny(f"SolveRequest field {number} is not read by the guard")
    if exporter not in _EXPORTERS:
        raise _deny(f"exporter {exporter[:40]!r}")
    if frontend not in _FRONTENDS:
        raise _deny(f"frontend {frontend[:40]!r}")
    for key, value in exporter_attrs:
        if exporter in ("", "moby"):
            if key not in _IMAGE_ATTRS:
                raise _deny(f"image exporter attribute {key[:40]!r}")
            found.tags.extend(name.strip() for name in value.split(",") if name.strip())
    for definition in definitions:
        _definition(definition, found)
    return found


# The Dockerfile frontend loads another frontend image a client names with these, whose LLB is
# solved inside BuildKit without passing the guard's checks of raw definitions.
_FRONTEND_SWAPS = ("source", "cmdline")


def _frontend_attr(key: str, value: str) -> None:
    if key in _FRONTEND_SWAPS:
        raise _deny(f"frontend attribute {key} (another frontend image) is not allowed")
    if key == "force-network-mode" and value.strip().lower() not in _NETWORK_MODES:
        raise _deny(f"frontend attribute force-network-mode={value[:40]!r}")
    if key == "cgroup-parent" and value:
        raise _deny("frontend attribute cgroup-parent")
    if key.startswith("label:") and key[6:].strip().lower().startswith(labels.PREFIX):
        raise _deny(f"label {key[6:80]!r} is reserved for dockyard")


def _definition(data: bytes, found: Solve) -> None:
    """``pb.Definition``: its ops (field 1) are read; its metadata and source maps (2, 3)
    only describe them."""
    for part in fields(data):
        if part.number == 1:
            _op(part.data(), found)
        elif part.number not in (2, 3):
            raise _deny(f"LLB definition field {part.number} is not read by the guard")


def _op(data: bytes, found: Solve) -> None:
    for part in fields(data):
        number = part.number
        if number == 2:
            _exec(part.data())
        elif number == 3:
            _source(part.data(), found)
        elif number == 5:
            raise _deny("LLB build ops (nested builds) are not allowed")
        elif number not in (1, 4, 6, 7, 10, 11):
            raise _deny(f"LLB op field {number} is not read by the guard")


def _exec(data: bytes) -> None:
    for part in fields(data):
        number = part.number
        if number == 1:
            _meta(part.data())
        elif number == 2:
            _mount(part.data())
        elif number == 3:
            if part.integer() not in (0, 2):  # UNSET (sandbox), NONE; 1 is HOST
                raise _deny("LLB exec with host networking")
        elif number == 4:
            if part.integer() != 0:  # SANDBOX; 1 is INSECURE
                raise _deny("LLB exec in insecure (privileged) mode")
        elif number != 5:
            raise _deny(f"LLB exec field {number} is not read by the guard")


def _meta(data: bytes) -> None:
    for part in fields(data):
        if part.number == 10:
            if part.data():
                raise _deny("LLB exec with a cgroup parent")
        elif part.number not in (1, 2, 3, 4, 5, 6, 7, 9, 11, 12):
            raise _deny(f"LLB exec meta field {part.number} is not read by the guard")


def _mount(data: bytes) -> None:
    for part in fields(data):
        if part.number == 6:
            if part.integer() not in range(5):  # BIND SECRET SSH CACHE TMPFS
                raise _deny(f"LLB mount type {part.integer()}")
        elif part.number not in (1, 2, 3, 4, 5, 19, 20, 21, 22, 23, 24):
            raise _deny(f"LLB mount field {part.number} is not read by the guard")


def _source(data: bytes, found: Solve) -> None:
    for part in fields(data):
        if part.number == 1:
            scheme = part.text().partition("://")[0]
            if scheme not in _SOURCE_SCHEMES:
                raise _deny(f"LLB source {part.text()[:60]!r}")
        elif part.number == 2:
            key, value = string_map(part)
            if key == _LOCAL_SESSION and value:
                found.sessions.add(value)  # a local source reads that session's files
        else:
            raise _deny(f"LLB source field {part.number} is not read by the guard")


def judge_call(method: str) -> str | None:
    """Why a call is refused before its message is read, or ``None``."""
    if method in READ_ONLY or method in (SOLVE, STATUS):
        return None
    return f"gRPC method {method[:80]!r} is not allowed through the guard"


def status_ref(message: bytes) -> str:
    """The build a ``StatusRequest`` follows (field 1)."""
    try:
        refs = [part.text() for part in fields(message) if part.number == 1]
        others = [part.number for part in fields(message) if part.number != 1]
    except ProtoError as exc:
        raise _deny(f"unreadable Status: {exc}") from None
    if others:
        raise _deny(f"StatusRequest field {others[0]} is not read by the guard")
    return refs[-1] if refs else ""
