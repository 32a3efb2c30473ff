"""BuildKit sessions and build IDs each owner holds through the guard.

A BuildKit client opens ``POST /session`` (hijacked, then h2c) under an ID it picks
(``X-Docker-Expose-Session-Uuid``), and names that ID in its builds; dockerd then calls back
that session's file-sync, auth and secrets services. Any build naming another client's
session would read that client's files and secrets, so a build may name only a session its
own client holds open here, and an ID is held by one connection at a time. Nothing outlives
its session: the claim goes when the connection does.

Build IDs are held the same way, for as long as their build runs: a build context sent
apart (``buildid=upload-request:ID``, a tar from stdin) and ``/build/cancel?id=ID`` must
name a build of the same client, or another client could feed it a Dockerfile or stop it.
"""

from __future__ import annotations

SESSION_HEADER = "x-docker-expose-session-uuid"
UPLOAD_PREFIX = "upload-request:"
"""A ``buildid`` with this prefix sends the context of the build whose ID follows."""


class SessionBook:
    """Live session (or build) IDs and their owners."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    def claim(self, owner: str, ident: str) -> str | None:
        """Hold ``ident`` for ``owner``; the reason it cannot be, else ``None``."""
        if not ident:
            return "a BuildKit session needs an ID (X-Docker-Expose-Session-Uuid)"
        if ident in self.owners:
            return f"BuildKit ID {ident[:80]!r} is already in use"
        self.owners[ident] = owner
        return None

    def release(self, ident: str) -> None:
        self.owners.pop(ident, None)

    def owns(self, owner: str, ident: str) -> bool:
        return self.owners.get(ident) == owner
