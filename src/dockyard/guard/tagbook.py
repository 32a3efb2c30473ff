"""Which image tags each owner created through the guard, kept across restarts.

An image a client builds carries its owner label. A tag it puts on an unlabelled image (a
pulled base, a tag of one) can only be known as its own from having seen it made, so the
guard writes it down: in memory, and with a file, in the file too, so that a restarted
guard still lets the owner move or delete its tags (without one, they fail closed after a
restart: nobody may move them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from dockyard import state
from dockyard.errors import DockyardError

LIMIT = 10_000
"""Tags kept per owner; past it the oldest are forgotten (and then fail closed)."""

FORMAT = 1


def normalize_tag(ref: str) -> str:
    """A reference as dockerd resolves it: ``app`` is ``docker.io/library/app:latest``,
    ``foo/app:1`` is ``docker.io/foo/app:1`` (clients send either form); a digest reference
    keeps its digest and gets no tag."""
    name, at, digest = ref.partition("@")
    domain, slash, rest = name.partition("/")
    if not slash or not ("." in domain or ":" in domain or domain == "localhost"):
        domain, rest = "docker.io", name
    if domain in ("docker.io", "index.docker.io"):
        domain = "docker.io"
        if "/" not in rest:
            rest = f"library/{rest}"
    if not at and ":" not in rest.rsplit("/", 1)[-1]:
        rest += ":latest"
    return f"{domain}/{rest}{at}{digest}"


class TagBook:
    """Tags by owner, oldest first; saved to ``path`` (0600, atomically) on every change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.owners: dict[str, dict[str, None]] = {}
        if path is not None and path.exists():
            self.owners = _read(path)

    def owns(self, owner: str, ref: str) -> bool:
        return normalize_tag(ref) in self.owners.get(owner, {})

    def claimed_by_another(self, owner: str, ref: str) -> bool:
        tag = normalize_tag(ref)
        return any(tag in tags for who, tags in self.owners.items() if who != owner)

    def record(self, owner: str, refs: Iterable[str]) -> None:
        tags = self.owners.setdefault(owner, {})
        new = False
        for tag in map(normalize_tag, filter(None, refs)):
            new |= tag not in tags
            tags.pop(tag, None)  # (made again: now the newest)
            tags[tag] = None
        while len(tags) > LIMIT:
            del tags[next(iter(tags))]
        if new:  # (a tag made again is saved as the newest with the next new one)
            self._save()

    def forget(self, owner: str, ref: str) -> None:
        """The owner removed the tag: nobody holds it any more."""
        tags, tag = self.owners.get(owner, {}), normalize_tag(ref)
        if tag in tags:
            del tags[tag]
            self._save()

    def gone(self, ref: str) -> None:
        """The tag no longer exists (removed by ID, or outside the guard): nobody's now."""
        tag = normalize_tag(ref)
        holders = [tags for tags in self.owners.values() if tag in tags]
        for tags in holders:
            del tags[tag]
        if holders:
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        owners = {owner: list(tags) for owner, tags in self.owners.items() if tags}
        text = json.dumps({"format": FORMAT, "owners": owners}, indent=1)
        state.write_private(self.path, text.encode())


def _read(path: Path) -> dict[str, dict[str, None]]:
    fix = "restore it, or remove it to start afresh (the tags it held then fail closed)"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DockyardError(f"cannot read the guard's tag records {path}: {exc}", fix=fix) from None
    owners = saved.get("owners") if isinstance(saved, dict) else None
    if (
        not isinstance(saved, dict)
        or saved.get("format") != FORMAT
        or not isinstance(owners, dict)
        or not all(
            isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)
            for tags in owners.values()
        )
    ):
        raise DockyardError(f"{path} is not a guard's tag records (format {FORMAT})", fix=fix)
    return {str(owner): dict.fromkeys(tags) for owner, tags in owners.items()}
