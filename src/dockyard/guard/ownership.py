"""Who a client is, and whether it owns what a request touches.

A client's owner comes from its listener (a socket given an owner name), else its TLS
client certificate's common name, else its unix peer credentials. Objects it creates carry
``io.dockyard.owner=<owner>``; each need the policy returns is settled with one lookup on
the upstream, names resolved to IDs once, and any failed lookup denies.

Images are shared: anyone may read and run them, but a tag may only be moved or deleted by
the owner whose build stamped the image, or who created the tag through this guard.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from dockyard import labels
from dockyard.guard.escapes import BUILD_ID, HOST_PATH, SESSION, Need, under_prefix
from dockyard.guard.http import HTTPError
from dockyard.guard.sessions import SessionBook
from dockyard.guard.tagbook import TagBook
from dockyard.guard.upstream import Lookups

_FULL_ID = re.compile(r"[0-9a-f]{64}")
_OWNER_TEXT = re.compile(r"[^A-Za-z0-9_.@-]")
CACHE_SIZE = 4096
SESSION_WAIT = 5.0
"""Seconds a build waits for the BuildKit session it names to be opened."""


def clean_owner(name: str) -> str:
    """An owner usable as a label value and in audit lines."""
    return _OWNER_TEXT.sub("_", name)[:128] or "_"


def peer_owner(sock: socket.socket | None) -> str | None:
    """The unix peer's uid as ``uid-N`` (``SO_PEERCRED``), or ``None`` off unix sockets."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return f"uid-{uid}"


def cert_owner(peercert: Any) -> str | None:
    """The common name of a verified TLS client certificate (``ssl.getpeercert()``)."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return clean_owner(str(value))
    return None


def identify(listener_owner: str | None, transport_ssl: ssl.SSLObject | None, sock: Any) -> str:
    """The owner of a new connection, first by listener, then certificate, then peer uid."""
    if listener_owner:
        return listener_owner
    if transport_ssl is not None:
        found = cert_owner(transport_ssl.getpeercert())
        if found:
            return found
    return peer_owner(sock) or "anonymous"


class OwnershipLookupError(Exception):
    """An ownership question the upstream could not answer; the request is denied."""


@dataclass(frozen=True, slots=True)
class Settlement:
    ok: bool
    reason: str = ""
    status: int = 403
    """What a refusal answers: 404 for what does not exist, as dockerd would (clients such as
    docker-compose inspect before they create), 403 otherwise."""
    ids: dict[tuple[str, str], str] = field(default_factory=dict)
    """The ID each (kind, ref) need resolved to."""


_INSPECT = {
    "container": "/containers/{}/json",
    "exec": "/exec/{}/json",
    "volume": "/volumes/{}",
    "network": "/networks/{}",
    "image": "/images/{}/json",
}


def _owner_label(kind: str, body: Any) -> str | None:
    found = body.get("Labels") if kind in ("volume", "network") else None
    if kind in ("container", "image"):
        found = (body.get("Config") or {}).get("Labels")
    return (found or {}).get(labels.OWNER)


def _ident(kind: str, body: Any) -> str:
    return str(body.get("Name") if kind == "volume" else body.get("Id"))


class Resolver:
    """Settles a verdict's needs for one owner, with immutable answers cached by full ID."""

    def __init__(
        self,
        lookups: Lookups,
        allow_bind: Iterable[str] = (),
        tags: TagBook | None = None,
        stamp: Mapping[str, str] | None = None,
    ) -> None:
        self.lookups = lookups
        self.stamp = dict(stamp or {})
        """Labels for the volumes the guard creates for a client, besides its owner's."""
        self.allow_bind = tuple(allow_bind)
        self.cache: OrderedDict[tuple[str, str], tuple[str | None, str]] = OrderedDict()
        self.tags = tags or TagBook()
        """Tags each owner created through the guard: theirs to move or delete later."""
        self.sessions = SessionBook()
        """BuildKit sessions open through the guard, by owner."""
        self.builds = SessionBook()
        """IDs of builds running through the guard, by owner."""

    async def _inspect(self, kind: str, ref: str) -> tuple[str | None, str] | None:
        """(owner label, ID) of an object, ``None`` when it does not exist."""
        cached = self.cache.get((kind, ref))
        if cached is not None:
            return cached
        try:
            status, body = await self.lookups.get_json(_INSPECT[kind].format(quote(ref, safe="")))
        except (OSError, HTTPError, ValueError) as exc:
            raise OwnershipLookupError(f"looking up {kind} {ref!r} failed: {exc}") from None
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise OwnershipLookupError(f"looking up {kind} {ref!r} answered {status}")
        if kind == "exec":
            container = await self._inspect("container", str(body.get("ContainerID")))
            found = (container[0] if container else None, ref)
        else:
            found = (_owner_label(kind, body), _ident(kind, body))
        if kind not in ("image", "volume") and found[1] == ref:
            self._keep(kind, found)  # (a volume's name can be reused: never kept)
        return found

    async def _create_volume(self, need: Need, owner: str) -> str | None:
        """Make the volume a container create names, owned by ``owner``; why it failed."""
        body = {
            "Name": need.ref,
            "Labels": {**self.stamp, labels.OWNER: owner},
            "DriverOpts": dict(need.create or ()),
        }
        try:
            status, made = await self.lookups.request_json("POST", "/volumes/create", body)
        except (OSError, HTTPError, ValueError) as exc:
            return f"creating volume {need.ref!r} failed: {exc}"
        if status != 201 or not isinstance(made, dict):
            return f"creating volume {need.ref!r} answered {status}"
        if _owner_label("volume", made) != owner:  # made by someone else meanwhile
            return f"volume {need.ref!r} belongs to another owner"
        return None

    async def _anonymous_owner(self, name: str) -> str | None:
        """The owner of an unlabelled anonymous volume (dockerd names them by 64 hex digits):
        the one owner of every container using it, read from the engine each time."""
        if not _FULL_ID.fullmatch(name):
            return None
        query = quote(json.dumps({"volume": [name]}), safe="")
        try:
            status, found = await self.lookups.get_json(f"/containers/json?all=1&filters={query}")
        except (OSError, HTTPError, ValueError) as exc:
            raise OwnershipLookupError(
                f"looking up users of volume {name!r} failed: {exc}"
            ) from None
        if status != 200 or not isinstance(found, list) or not found:
            return None
        owners = {(item.get("Labels") or {}).get(labels.OWNER) for item in found}
        return owners.pop() if len(owners) == 1 else None

    def _keep(self, kind: str, found: tuple[str | None, str]) -> None:
        """Remember an owner by full ID: IDs are never reused, and labels never change."""
        if _FULL_ID.fullmatch(found[1]):
            self.cache[(kind, found[1])] = found
            if len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)

    def created(self, kind: str, answer: bytes, owner: str) -> None:
        """Learn the owner of what ``owner`` just created from dockerd's answer (``{"Id":
        ...}``), sparing the lookup its next request would need."""
        try:
            ident = json.loads(answer).get("Id")
        except (ValueError, AttributeError):
            return
        if isinstance(ident, str):
            self._keep(kind, (owner, ident))

    async def _claimed(self, book: SessionBook, owner: str, ident: str) -> bool:
        """Whether ``owner`` holds ``ident``, waiting a little for it: a BuildKit client
        opens its session, starts its build and uploads its context all at once (dockerd
        waits for them too)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SESSION_WAIT
        while not book.owns(owner, ident):
            if ident in book.owners or loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def _host_path(self, need: Need) -> str | None:
        real = os.path.realpath(need.ref)
        if under_prefix(real, self.allow_bind):
            return None
        return f"host path {need.ref!r} resolves to {real!r}, outside the allowed prefixes"

    async def settle(self, needs: Iterable[Need], owner: str) -> Settlement:
        ids: dict[tuple[str, str], str] = {}
        for need in needs:
            if need.kind == HOST_PATH:
                problem = self._host_path(need)
                if problem:
                    return Settlement(False, problem)
                continue
            if need.kind in (SESSION, BUILD_ID):
                book, what = (
                    (self.sessions, "BuildKit session")
                    if need.kind == SESSION
                    else (self.builds, "build")
                )
                if not await self._claimed(book, owner, need.ref):
                    return Settlement(False, f"{what} {need.ref[:80]!r} is not yours")
                continue
            try:
                found = await self._inspect(need.kind, need.ref)
            except OwnershipLookupError as exc:
                return Settlement(False, str(exc))
            if found is None:
                if need.kind == "image":
                    self.tags.gone(need.ref)
                if need.create is not None:
                    problem = await self._create_volume(need, owner)
                    if problem:
                        return Settlement(False, problem)
                    continue
                if need.missing_ok:
                    continue
                return Settlement(False, f"no such {need.kind}: {need.ref}", status=404)
            label, ident = found
            if need.kind == "volume" and label is None:
                try:
                    label = await self._anonymous_owner(need.ref)
                except OwnershipLookupError as exc:
                    return Settlement(False, str(exc))
            mine = label == owner
            if need.kind == "image" and label is None:
                # An unstamped image (pulled, or a base) moves by tag: whoever tagged it here.
                mine = self.tags.owns(owner, need.ref)
                if need.unclaimed_ok and not mine:
                    mine = not self.tags.claimed_by_another(owner, need.ref)
            if not mine:
                return Settlement(False, f"{need.kind} {need.ref!r} belongs to another owner")
            ids[(need.kind, need.ref)] = ident
        return Settlement(True, ids=ids)
