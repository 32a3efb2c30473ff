"""Which image to run: the user's choice, else the official image where it can be pulled,
else dockyard's own built from Debian packages (with a message, since that takes a minute)."""

from __future__ import annotations

from collections.abc import Callable

from dockyard import docker_api
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

    progress(
        f"{official} cannot be pulled here: using dockyard's {role} image "
        "(building it from Debian packages if missing, about a minute)"
    )
    return builder.ensure(role, progress=progress)


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
