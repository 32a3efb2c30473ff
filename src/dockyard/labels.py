"""The label vocabulary: the only state dockyard keeps.

Everything dockyard creates carries ``io.dockyard.managed=true`` plus what it is for, so
listings, ownership and garbage collection are read back from the engine itself.
"""

from __future__ import annotations

from collections.abc import Mapping

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


def managed(role: str, **extra: str) -> dict[str, str]:
    """Labels for a new object of ``role``; ``extra`` keys are label suffixes (``engine=...``)."""
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
