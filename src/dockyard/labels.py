"""The label vocabulary: the only state dockyard keeps.

Everything dockyard creates carries ``io.dockyard.managed=true`` plus what it is for, so
listings, ownership and garbage collection are read back from the engine itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dockyard.errors import DockyardError

PREFIX = "io.dockyard."
MANAGED = PREFIX + "managed"
ROLE = PREFIX + "role"
ENGINE = PREFIX + "engine"
STACK = PREFIX + "stack"
LEASE = PREFIX + "lease"
OWNER = PREFIX + "owner"
PRIVILEGE = PREFIX + "privilege"
ENDPOINT = PREFIX + "endpoint"
RECIPE = PREFIX + "recipe"
VERSION = PREFIX + "version"

# Roles of objects dockyard creates.
ROLE_ENGINE = "engine"
ROLE_ENGINE_DATA = "engine-data"
ROLE_NETWORK = "network"
ROLE_IMAGE = "image"
ROLE_PROBE = "probe"
ROLE_CLIENT = "client"
ROLE_STACK = "stack"
ROLE_GUARDED = "guarded"
"""Objects a guard's clients created (with their ``owner``)."""


USER_LABELS_ENV = "DOCKYARD_LABELS"
"""``key=value,key=value`` added to everything dockyard creates (a CI job ID, a test run)."""


def user_labels(text: str | None = None) -> dict[str, str]:
    """Parse ``DOCKYARD_LABELS``; dockyard's own vocabulary cannot be overridden by it."""
    text = os.environ.get(USER_LABELS_ENV, "") if text is None else text
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DockyardError(
                f"{USER_LABELS_ENV}: {item!r} is not key=value",
                fix="use comma-separated key=value pairs",
            )
        if key.strip() in (MANAGED, ROLE):
            raise DockyardError(f"{USER_LABELS_ENV}: {key.strip()} is dockyard's own label")
        found[key.strip()] = value.strip()
    return found


def managed(role: str, **extra: str) -> dict[str, str]:
    """Labels for a new object of ``role``; ``extra`` keys are label suffixes (``engine=...``)."""
    return {**user_labels(), **own(role, **extra)}


def own(role: str, **extra: str) -> dict[str, str]:
    """dockyard's labels alone, without DOCKYARD_LABELS: for content that must not vary by
    who built it (image recipes, whose hash is their identity)."""
    labels = {MANAGED: "true", ROLE: role}
    for key, value in extra.items():
        labels[PREFIX + key.replace("_", "-")] = value
    return labels


def is_managed(labels: Mapping[str, str] | None) -> bool:
    return bool(labels) and (labels or {}).get(MANAGED) == "true"


def selector(role: str | None = None, **extra: str) -> list[str]:
    """A Docker ``label=`` filter list selecting dockyard objects."""
    found = [f"{MANAGED}=true"]
    if role is not None:
        found.append(f"{ROLE}={role}")
    found.extend(f"{PREFIX}{k.replace('_', '-')}={v}" for k, v in extra.items())
    return found
