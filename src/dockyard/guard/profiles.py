"""The built-in profiles, custom ones from a YAML policy file, and docker-socket-proxy's
environment switches read as a profile (so its users can migrate without rewriting).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from dockyard.errors import DockyardError
from dockyard.guard.escapes import Rules, capability
from dockyard.guard.policy import Profile
from dockyard.guard.request import ROUTES

CI_BUILD = Profile(
    name="ci-build",
    allow=frozenset(
        {
            "system.ping",
            "system.version",
            "system.info",
            "system.events",
            "system.auth",
            "container.*",
            "exec.*",
            "build",
            "build.cancel",
            "session",
            "grpc",
            "image.list",
            "image.inspect",
            "image.history",
            "image.create",
            "image.push",
            "image.tag",
            "image.delete",
            "image.save",
            "image.search",
            "distribution.inspect",
            "volume.create",
            "volume.list",
            "volume.inspect",
            "volume.delete",
            "volume.prune",
            "network.*",
        }
    ),
    # copy is the pre-1.20 archive API, which CI clients no longer use.
    deny=frozenset({"container.copy"}),
    # Every current CLI builds with BuildKit: sessions are tied to their owner, and buildx's
    # /grpc is read frame by frame, each Solve judged.
    rules=Rules(buildkit=True, grpc=True),
)

READ_ONLY = Profile(
    name="read-only",
    allow=frozenset(
        {
            "system.ping",
            "system.version",
            "system.info",
            "system.events",
            "system.df",
            "container.list",
            "container.inspect",
            "container.logs",
            "container.top",
            "container.stats",
            "container.changes",
            "exec.inspect",
            "image.list",
            "image.inspect",
            "image.history",
            "volume.list",
            "volume.inspect",
            "network.list",
            "network.inspect",
        }
    ),
    ownership=False,
)

ALLOW_ALL = Profile(name="allow-all", allow=frozenset({"*"}), escapes=False, ownership=False)

BUILTIN: Mapping[str, Profile] = {p.name: p for p in (CI_BUILD, READ_ONLY, ALLOW_ALL)}


class PolicyError(DockyardError):
    """A policy file or environment that cannot be read; nothing is guessed."""


class ProfileSpec(BaseModel):
    """One custom profile in a policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extends: str | None = None
    allow: list[str] = []
    deny: list[str] = []
    escapes: bool | None = None
    ownership: bool | None = None
    allow_bind: list[str] = []
    capabilities: list[str] = []
    buildkit: bool | None = None
    grpc: bool | None = None


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profiles: dict[str, ProfileSpec]


def _build(name: str, spec: ProfileSpec, known: Mapping[str, Profile]) -> Profile:
    base = known.get(spec.extends or "", Profile(name=name, allow=frozenset()))
    if spec.extends and spec.extends not in known:
        raise PolicyError(
            f"profile {name!r} extends unknown profile {spec.extends!r}",
            fix=f"define {spec.extends!r} earlier in the file or use one of {sorted(BUILTIN)}",
        )
    caps = {capability(cap) for cap in spec.capabilities}
    if "ALL" in caps:
        raise PolicyError(f"profile {name!r}: capability ALL cannot be allowed")
    rules = Rules(
        allow_bind=base.rules.allow_bind + tuple(spec.allow_bind),
        capabilities=base.rules.capabilities | caps,
        buildkit=base.rules.buildkit if spec.buildkit is None else spec.buildkit,
        grpc=base.rules.grpc if spec.grpc is None else spec.grpc,
    )
    return Profile(
        name=name,
        allow=base.allow | frozenset(spec.allow),
        deny=base.deny | frozenset(spec.deny),
        escapes=base.escapes if spec.escapes is None else spec.escapes,
        ownership=base.ownership if spec.ownership is None else spec.ownership,
        rules=rules,
    )


def load_policy(text: str, source: str = "policy") -> dict[str, Profile]:
    """The built-in profiles plus those a YAML policy file defines (in file order)."""
    try:
        data = YAML(typ="safe").load(io.StringIO(text))
        parsed = PolicyFile.model_validate(data)
    except YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PolicyError(f"{source}: {where}: {first['msg']}") from None
    profiles = dict(BUILTIN)
    for name, spec in parsed.profiles.items():
        if name in BUILTIN:
            raise PolicyError(f"{source}: profile {name!r} would replace a built-in profile")
        profiles[name] = _build(name, spec, profiles)
    return profiles


# docker-socket-proxy's sections (its haproxy.cfg path prefixes) as endpoint patterns.
SOCKET_PROXY_SECTIONS: Mapping[str, tuple[str, ...]] = {
    "AUTH": ("system.auth",),
    "BUILD": ("build", "build.*"),
    "COMMIT": ("commit",),
    "CONFIGS": ("config.*",),
    "CONTAINERS": ("container.*", "checkpoint.*"),
    "DISTRIBUTION": ("distribution.*",),
    "EVENTS": ("system.events",),
    "EXEC": ("exec.*",),
    "GRPC": ("grpc",),
    "IMAGES": ("image.*",),
    "INFO": ("system.info",),
    "NETWORKS": ("network.*",),
    "NODES": ("node.*",),
    "PING": ("system.ping",),
    "PLUGINS": ("plugin.*",),
    "SECRETS": ("secret.*",),
    "SERVICES": ("service.*",),
    "SESSION": ("session",),
    "SWARM": ("swarm.*",),
    "SYSTEM": ("system.df",),
    "TASKS": ("task.*",),
    "VERSION": ("system.version",),
    "VOLUMES": ("volume.*",),
}
SOCKET_PROXY_DEFAULTS = frozenset({"EVENTS", "PING", "VERSION"})
# Allowed even with POST=0, as docker-socket-proxy does.
SOCKET_PROXY_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "ALLOW_START": ("container.start",),
    "ALLOW_STOP": ("container.stop",),
    "ALLOW_RESTARTS": ("container.stop", "container.restart", "container.kill"),
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise PolicyError(f"environment {name}={value!r} is not a switch", fix=f"set {name}=0 or 1")


def from_socket_proxy_env(env: Mapping[str, str]) -> Profile:
    """docker-socket-proxy's switches as a profile.

    Its sections become endpoints, ``POST=0`` keeps only GET and HEAD routes. Unlike
    docker-socket-proxy, bodies are still checked for every escape class: migrating must not
    keep the hole it was migrated away from. Ownership stays off, as it had none.
    """
    enabled = [
        pattern
        for section, patterns in SOCKET_PROXY_SECTIONS.items()
        if _switch(env, section, section in SOCKET_PROXY_DEFAULTS)
        for pattern in patterns
    ]
    writes = _switch(env, "POST", False)
    allowed = {
        route.endpoint
        for route in ROUTES
        if (writes or route.method in ("GET", "HEAD"))
        and any(fnmatchcase(route.endpoint, pattern) for pattern in enabled)
    }
    for switch, endpoints in SOCKET_PROXY_ACTIONS.items():
        if _switch(env, switch, False):
            allowed.update(endpoints)
    return Profile(
        name="docker-socket-proxy",
        allow=frozenset(allowed),
        ownership=False,
        rules=Rules(
            buildkit=_switch(env, "SESSION", False) or _switch(env, "GRPC", False),
            grpc=_switch(env, "GRPC", False),
        ),
    )
