"""Which image to run: the user's choice, else the official image where it can be pulled,
else dockyard's own built from Debian packages.

That fallback is said once per host engine and image, not on every run; the builder says
itself when it builds (it takes a minute), so nothing here claims a build that does not happen.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from dockyard import docker_api, state
from dockyard.errors import DockyardError


def image(
    client: docker_api.DockerClient,
    wanted: str | None,
    *,
    official: str,
    role: str,
    progress: Callable[[str], None],
) -> str:
    """An explicit image must exist or pull; the default prefers ``official``."""
    if wanted:
        if have_or_pull(client, wanted):
            return wanted
        raise DockyardError(
            f"{role} image {wanted} is not on the host engine and cannot be pulled",
            fix=f"check the name, or build dockyard's own: dockyard images build --role {role}",
        )
    if have_or_pull(client, official):
        return official
    from dockyard.images import builder

    if _first_time(client, official):
        progress(
            f"{official} cannot be pulled here: using dockyard's own {role} image, "
            "built from Debian packages (said once per host engine)"
        )
    return builder.ensure(role, progress=progress)


def _first_time(client: docker_api.DockerClient, official: str) -> bool:
    """True the first time ``official`` fails to pull on this host engine."""
    engine = str(client.info().get("ID", "unknown"))
    key = re.sub(r"[^A-Za-z0-9]", "_", f"{engine}-{official}")
    marker = state.state_dir() / "hosts" / f"unpullable-{key}"
    if marker.exists():
        return False
    state.write_private(marker, official.encode())
    return True


def have_or_pull(client: docker_api.DockerClient, ref: str) -> bool:
    try:
        client.api.inspect_image(ref)
        return True
    except docker_api.NotFound:
        pass
    try:
        client.api.pull(ref)
        return True
    except docker_api.APIError:
        return False


def image_id(client: docker_api.DockerClient, ref: str) -> str:
    return str(client.api.inspect_image(ref)["Id"])
