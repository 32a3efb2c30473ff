"""What each dockyard image contains, as data: no I/O beyond reading packaged files.

No registry can be pulled from on the machines dockyard targets, so every image is built
locally from Debian packages. A :class:`Recipe` says what goes in; :func:`recipe_hash` is
stored in the image's ``io.dockyard.recipe`` label so a builder can tell whether an image
already matches its recipe. The hash covers the recipe, not the mirror's package versions:
``force`` rebuilds pick up Debian updates.

Measured for the engine image: Debian bookworm's default ``iptables`` (nf_tables) works for an
inner dockerd run with dockyard's capability set (NAT, published ports, ``docker build``),
so the image keeps the default alternative instead of switching to iptables-legacy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources

from dockyard import __version__, labels
from dockyard.errors import DockyardError

# Bump when the way a recipe becomes an image changes, so every image is rebuilt.
RECIPE_FORMAT = 1
SUITE = "bookworm"
# Images carry the dockyard release, not a content hash: the hash lives in a label.
TAG = ".".join(__version__.split(".")[:2])

ENGINE = "engine"
REGISTRY = "registry"
AGENT = "agent"
BASE = "base"
BUILDBOT = "buildbot"
ROLES = (BASE, ENGINE, REGISTRY, AGENT, BUILDBOT)

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Recipe:
    """One image: a root filesystem (Debian packages, or scratch) plus image config.

    ``packages`` empty means the image starts from scratch, without debootstrap.
    ``dirs`` maps a directory in the image to its mode, ``files`` a path in the image to its
    content and mode, ``host_files`` a path in the image to a host file copied at build time.
    ``busybox`` names a busybox binary in the image whose applets get symlinks next to it.
    """

    role: str
    image: str
    tag: str = TAG
    packages: tuple[str, ...] = ()
    dirs: Mapping[str, int] = field(default_factory=dict, hash=False)
    files: Mapping[str, tuple[bytes, int]] = field(default_factory=dict, hash=False)
    host_files: Mapping[str, str] = field(default_factory=dict, hash=False)
    busybox: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    workdir: str | None = None
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.tag}"


def recipe_hash(recipe: Recipe) -> str:
    """A sha256 over a canonical form of ``recipe``, the Debian suite and RECIPE_FORMAT."""
    canonical = {
        "format": RECIPE_FORMAT,
        "suite": SUITE,
        "role": recipe.role,
        "image": recipe.image,
        "tag": recipe.tag,
        "packages": sorted(recipe.packages),
        "dirs": dict(recipe.dirs),
        "files": {
            path: [hashlib.sha256(data).hexdigest(), mode]
            for path, (data, mode) in recipe.files.items()
        },
        "host_files": dict(recipe.host_files),
        "busybox": recipe.busybox,
        "entrypoint": recipe.entrypoint,
        "cmd": recipe.cmd,
        "env": dict(recipe.env),
        "workdir": recipe.workdir,
        "ports": sorted(recipe.ports),
        "volumes": sorted(recipe.volumes),
        "labels": dict(recipe.labels),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def import_changes(recipe: Recipe) -> list[str]:
    """Dockerfile instructions for ``docker import``: the image config plus the recipe label."""
    found: list[str] = []
    if recipe.entrypoint is not None:
        found.append(f"ENTRYPOINT {json.dumps(list(recipe.entrypoint))}")
    if recipe.cmd is not None:
        found.append(f"CMD {json.dumps(list(recipe.cmd))}")
    found.extend(f"ENV {key}={json.dumps(value)}" for key, value in sorted(recipe.env.items()))
    if recipe.workdir is not None:
        found.append(f"WORKDIR {recipe.workdir}")
    found.extend(f"EXPOSE {port}" for port in sorted(recipe.ports))
    if recipe.volumes:
        found.append(f"VOLUME {json.dumps(sorted(recipe.volumes))}")
    every = {**recipe.labels, labels.RECIPE: recipe_hash(recipe)}
    found.append(
        "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(every.items()))
    )
    return found


def recipe(role: str) -> Recipe:
    """The recipe for ``role`` (one of :data:`ROLES`)."""
    common = Recipe(
        role=role,
        image=f"dockyard/{role}",
        env={"PATH": _PATH},
        labels=labels.own(labels.ROLE_IMAGE, image_role=role),
    )
    match role:
        case "base":
            return replace(
                common,
                dirs={"/tmp": 0o1777},
                host_files={"/bin/busybox": "/bin/busybox"},
                busybox="/bin/busybox",
                cmd=("sh",),
            )
        case "engine":
            return replace(
                common,
                packages=("docker.io", "iptables", "ca-certificates", "procps", "tini"),
                entrypoint=("dockerd",),
                ports=("2376/tcp",),
                volumes=("/var/lib/docker",),
            )
        case "registry":
            config = resources.files("dockyard.images").joinpath("files/registry.yml").read_bytes()
            return replace(
                common,
                packages=("docker-registry", "ca-certificates"),
                files={"/etc/dockyard/registry.yml": (config, 0o644)},
                cmd=("/usr/bin/docker-registry", "serve", "/etc/dockyard/registry.yml"),
                ports=("5000/tcp",),
                volumes=("/var/lib/docker-registry",),
            )
        case "agent":
            return replace(
                common,
                packages=("docker.io", "git", "ca-certificates", "bash", "curl"),
                cmd=("sleep", "infinity"),
                workdir="/workspace",
            )
        case "buildbot":
            from dockyard.images import buildbot  # imports this module: not at the top

            return replace(
                common,
                packages=buildbot.PACKAGES,
                files=buildbot.image_files(),
                cmd=(buildbot.ENTRYPOINT,),
                ports=(f"{buildbot.UI_PORT}/tcp",),
                volumes=(buildbot.HOME,),
            )
    raise DockyardError(f"no image recipe for role {role!r}", fix=f"use one of: {', '.join(ROLES)}")
