"""Whether a request's framing lets the guard read the body exactly as dockerd will.

Authorization plugins were bypassed by bodies they never saw: chunked or empty-length bodies
(CVE-2024-41110), bodies over their size limit, Content-Type parameters. Here every doubt is a
denial: the guard buffers and decodes JSON bodies only when their length is declared once,
within a limit, with a JSON media type; streamed bodies (build contexts, image loads,
archives) are only accepted on endpoints whose policy needs the path and query alone.

One more Go behaviour matters: ``r.ParseForm`` reads an ``application/x-www-form-urlencoded``
body (and ``FormValue`` a multipart one) into the same form as the query, *ahead* of it, so
a form body could override ``networkmode`` or ``remote`` of a build the policy read from the
query. Form bodies are denied on every endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from dockyard.guard import memo

JSON_BODY_LIMIT = 1024 * 1024
"""Largest JSON body the guard buffers and reads (1 MiB)."""

IGNORED_BODY_LIMIT = 64 * 1024
"""Largest body accepted on an endpoint whose handler never reads one."""


class Body(Enum):
    NONE = "none"
    """The handler never reads a body."""
    JSON = "json"
    """The handler decodes JSON: the guard must read it first."""
    STREAM = "stream"
    """The handler streams the body (tar, image archive): relayed without buffering."""


JSON_ENDPOINTS = frozenset(
    {
        "checkpoint.create",
        "commit",
        "config.create",
        "config.update",
        "container.copy",
        "container.create",
        "container.exec",
        # dockerd before 24.0 applies a HostConfig sent to start on API < 1.24.
        "container.start",
        "container.update",
        "exec.start",
        "network.connect",
        "network.create",
        "network.disconnect",
        "node.update",
        "plugin.pull",
        "plugin.set",
        "plugin.upgrade",
        "secret.create",
        "secret.update",
        "service.create",
        "service.update",
        "swarm.init",
        "swarm.join",
        "swarm.unlock",
        "swarm.update",
        "system.auth",
        "volume.create",
        "volume.update",
    }
)

NEEDS_BODY = frozenset(
    {
        "container.create",
        "container.exec",
        "container.update",
        "network.create",
        "service.create",
        "service.update",
    }
)
"""JSON endpoints for which an absent body is a client error: denied rather than guessed."""

STREAM_ENDPOINTS = frozenset(
    {
        "container.archive.put",
        "build",
        "image.create",  # docker import streams the image when fromSrc=-
        "image.load",
        "plugin.create",
    }
)

UPGRADES: Mapping[str, str] = MappingProxyType(
    {
        "container.attach": "tcp",
        "exec.start": "tcp",
        "container.attach.ws": "websocket",
        "session": "h2c",
        "grpc": "h2c",
    }
)
"""Endpoints dockerd hijacks, and the protocol its clients ask to switch to; any other
Upgrade is denied (after a switch the guard relays bytes it no longer parses)."""

FORM_MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def body_kind(endpoint: str) -> Body:
    if endpoint in JSON_ENDPOINTS:
        return Body.JSON
    if endpoint in STREAM_ENDPOINTS:
        return Body.STREAM
    return Body.NONE


@dataclass(frozen=True, slots=True)
class Framing:
    """The verdict on framing; when ``ok``, how the body is to be read."""

    ok: bool
    reason: str = ""
    body: Body = Body.NONE
    length: int | None = None
    """The declared Content-Length, ``None`` when chunked or absent."""
    chunked: bool = False
    upgrade: str | None = None


def _deny(reason: str) -> Framing:
    return Framing(ok=False, reason=reason)


_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x09\x20-\x7e])*"'
_PARAM = re.compile(rf"[ \t]*;[ \t]*({_TCHARS})=({_TCHARS}|{_QUOTED})[ \t]*")
_MEDIA_TYPE = re.compile(rf"[ \t]*({_TCHARS}/{_TCHARS})[ \t]*")


def media_type(value: str) -> str | None:
    """The lower-cased media type of a Content-Type, or ``None`` unless it parses cleanly.

    A strict reading of Go's ``mime.ParseMediaType``: parameters are allowed (dockerd accepts
    ``application/json; charset=utf-8``) but must be well-formed and not repeated.
    """
    head = _MEDIA_TYPE.match(value)
    if head is None:
        return None
    position, names = head.end(), set()
    while position < len(value):
        param = _PARAM.match(value, position)
        if param is None:
            return None
        name = param.group(1).lower()
        if name in names:
            return None
        names.add(name)
        position = param.end()
    return head.group(1).lower()


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def check(endpoint: str, headers: Iterable[tuple[str | bytes, str | bytes]]) -> Framing:
    """Judge the framing headers of a request already routed to ``endpoint``."""
    return _check(endpoint, tuple(headers))


@memo.cached(lambda endpoint, headers: sum(len(name) + len(value) for name, value in headers))
def _check(endpoint: str, headers: tuple[tuple[str | bytes, str | bytes], ...]) -> Framing:
    """(Cached: pure, and clients repeat the same heads.)"""
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(_text(name).strip().lower(), []).append(_text(value).strip())
    kind = body_kind(endpoint)

    for single in ("content-length", "transfer-encoding", "content-type", "upgrade"):
        if len(found.get(single, [])) > 1:
            return _deny(f"repeated {single} header")
    lengths, encodings = found.get("content-length", []), found.get("transfer-encoding", [])
    if lengths and encodings:
        return _deny("both Content-Length and Transfer-Encoding")
    chunked = bool(encodings)
    if chunked and encodings[0].lower() != "chunked":
        return _deny(f"unsupported Transfer-Encoding {encodings[0]!r}")
    length: int | None = None
    if lengths:
        if not lengths[0].isdigit() or not lengths[0].isascii() or len(lengths[0]) > 18:
            return _deny(f"invalid Content-Length {lengths[0]!r}")
        length = int(lengths[0])
    has_body = chunked or bool(length)

    content_type = found.get("content-type", [""])[0]
    mime = media_type(content_type) if content_type else ""
    if mime is None:
        return _deny(f"malformed Content-Type {content_type!r}")
    if mime in FORM_MEDIA_TYPES:
        return _deny(f"form body ({mime}) would be read as query parameters")
    if "http2-settings" in found:
        return _deny("HTTP/2 upgrade is not relayed")
    upgrade = found.get("upgrade", [None])[0]
    if upgrade is not None:
        expected = UPGRADES.get(endpoint)
        if expected is None:
            return _deny(f"Upgrade on {endpoint}, which dockerd does not hijack")
        if upgrade.lower() != expected:
            return _deny(f"Upgrade to {upgrade[:40]!r} on {endpoint}: only {expected!r} is relayed")

    if kind is Body.JSON:
        if chunked:
            return _deny("chunked body on a JSON endpoint")
        if length is None and endpoint in NEEDS_BODY:
            return _deny("JSON body without Content-Length")
        if length and length > JSON_BODY_LIMIT:
            return _deny(f"JSON body over {JSON_BODY_LIMIT} bytes")
        if has_body and mime != "application/json":
            return _deny(f"Content-Type {content_type!r} is not application/json")
    elif kind is Body.NONE:
        if chunked:
            return _deny(f"chunked body on {endpoint}, which takes none")
        if length and length > IGNORED_BODY_LIMIT:
            return _deny(f"body on {endpoint}, which takes none")
    return Framing(ok=True, body=kind, length=length, chunked=chunked, upgrade=upgrade)
