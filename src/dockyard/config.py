"""Pydantic models of what users configure, and YAML loading whose errors name file:line.

Validation lives here so that every front (CLI flags, YAML, the Python API) rejects bad input
the same way and before anything is created.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from dockyard.errors import DockyardError

OFFICIAL_ENGINE_IMAGE = "docker:dind"
"""Where users can pull, this is the default engine image; dockyard's own image otherwise."""

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_HOSTPORT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$")


def check_insecure_registries(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        if not _HOSTPORT.match(item):
            raise ValueError(f"invalid insecure registry {item!r}: use HOST or HOST:PORT")
    return value


def parse_size(value: object) -> int:
    """Docker's size syntax (``512m``, ``2g``, ``1.5GiB``, plain bytes) to bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"invalid size {value!r}: use a number with an optional unit, e.g. 2g")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"invalid size {value!r}: must be more than zero")
    return size


def check_name(value: str, what: str = "engine name") -> str:
    """Names become DNS names and certificate SANs: one lowercase DNS label."""
    if not _NAME.match(value):
        raise ValueError(
            f"invalid {what} {value!r}: use 1-63 lowercase letters, digits and dashes, "
            "starting and ending with a letter or digit"
        )
    return value


def check_mirrors(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid registry mirror {item!r}: use http(s)://HOST[:PORT]")
    return value


MIN_ENGINE_MEMORY = 128 * 1024**2
"""An idle engine uses about 114 MiB (dockerd 72 MB + containerd 38 MB, measured): below
this it is OOM-killed by its first ``docker load`` and the client sees only ``EOF``."""
MIN_READY_TIMEOUT = 1.0
"""An engine needs about 0.8 s from start to its first TLS-verified answer (measured)."""
NOT_ENGINE_NETWORKS = ("host", "none", "bridge")


def check_engine_memory(value: int) -> int:
    if value < MIN_ENGINE_MEMORY:
        raise ValueError(
            f"{_mib(value)} is below what an engine needs: an idle one uses about 114 MiB and "
            f"loading an image takes more; give it at least {_mib(MIN_ENGINE_MEMORY)} (e.g. 512m)"
        )
    return value


def check_ready_timeout(value: float) -> float:
    if value < MIN_READY_TIMEOUT:
        raise ValueError(
            f"{value:g} s is shorter than any engine takes to start (about 1 s here): "
            f"use at least {MIN_READY_TIMEOUT:g} (the default is 60)"
        )
    return value


def check_engine_network(value: str | None) -> str | None:
    """An engine is reached by its name on a user-defined network: Docker's built-in ones
    (host, none, bridge) resolve no names, and host would share the host's ports."""
    if value is None:
        return value
    if value in NOT_ENGINE_NETWORKS or value.startswith("container:"):
        raise ValueError(
            f"{value!r} cannot hold an engine: CI containers reach an engine by its name on a "
            "user-defined network; omit it (the engine gets its own) or name one made with "
            "docker network create"
        )
    return value


def _mib(size: int) -> str:
    return f"{size / 1024**2:.3g} MiB"


Size = Annotated[int, BeforeValidator(parse_size)]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")


class MirrorConfig(BaseModel):
    """A pull-through cache of one upstream registry, shared by every stack and pool of the host
    that names the same upstream. Credentials are named by reference, never written here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str = Field(description="the registry mirrored, e.g. https://registry-1.docker.io")
    max_size: Size = Field(20 * 1024**3, description="oldest blobs are evicted above this")
    username: str | None = None
    password_file: Path | None = Field(None, description="a file only its owner can read")
    password_env: str | None = Field(None, description="the name of a variable holding it")

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in "/":
            raise ValueError(f"invalid mirror upstream {value!r}: use http(s)://HOST[:PORT]")
        return value.rstrip("/")

    @field_validator("password_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"invalid variable name {value!r}")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> MirrorConfig:
        if self.password_file and self.password_env:
            raise ValueError("give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("a password needs a username")
        return self


def check_seed(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        if not _IMAGE.match(item):
            raise ValueError(f"invalid seed image {item!r}: use NAME[:TAG], e.g. debian:12")
    return value


EngineMemory = Annotated[int, BeforeValidator(parse_size), AfterValidator(check_engine_memory)]
ReadyTimeout = Annotated[float, AfterValidator(check_ready_timeout)]


class EngineSettings(BaseModel):
    """An engine's settings apart from its name: what a YAML file may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: Annotated[str | None, AfterValidator(check_engine_network)] = Field(
        None, description="existing network to join; default: own one"
    )
    cache: str | None = Field(None, description="data-root volume; default dockyard-cache-NAME")
    image: str | None = Field(None, description="engine image; default docker:dind or local")
    mtu: int | None = Field(None, ge=576, le=65535, description="default: the network's MTU")
    cpus: float | None = Field(None, gt=0, le=1024)
    memory: EngineMemory | None = None
    pids: int | None = Field(None, ge=16)
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    insecure: bool = Field(False, description="plaintext TCP on 2375 (no TLS): warned about")
    keep_on_failure: bool = False
    ready_timeout: ReadyTimeout = 60.0
    extra_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_name(alias, "alias") for alias in value)

    @field_validator("insecure_registries")
    @classmethod
    def _registries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_insecure_registries(value)

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_mirrors(value)


class EngineOptions(EngineSettings):
    """Everything ``engine create`` accepts. Every field but the name has a safe default."""

    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)


M = TypeVar("M", bound=BaseModel)


def engine_options(flags: dict[str, Any], file: Path | None = None) -> EngineOptions:
    """Options from an optional YAML file, then ``DOCKYARD_ENGINE_IMAGE``, then flags."""
    merged: dict[str, Any] = {}
    source = "options"
    if file is not None:
        merged = load_yaml(file, EngineSettings).model_dump(exclude_unset=True)
        source = str(file)
    if "image" not in merged and os.environ.get("DOCKYARD_ENGINE_IMAGE"):
        merged["image"] = os.environ["DOCKYARD_ENGINE_IMAGE"]
    return validate(EngineOptions, merged | flags, source)


def validate(model: type[M], data: dict[str, Any], source: str = "options") -> M:
    """Build ``model`` from ``data`` or raise one DockyardError naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DockyardError(f"{source}: {_explain(exc)}") from exc


def load_yaml(path: Path, model: type[M]) -> M:
    """Load a YAML file into ``model``; errors name ``file:line`` and the field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DockyardError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        document = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DockyardError(f"{where}: invalid YAML: {problem}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise DockyardError(f"{path}:1: the config must be a mapping of fields")
    try:
        return model.model_validate(_plain(document))
    except ValidationError as exc:
        first = exc.errors()[0]
        line = _line_of(document, first["loc"])
        raise DockyardError(f"{path}:{line}: {_explain(exc)}") from exc


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(top)"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _line_of(document: Any, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the deepest part of ``loc`` the YAML document still has."""
    line, node = 1, document
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line


# --- stacks ----------------------------------------------------------------------------------


class StackEngine(BaseModel):
    """The stack's engine (``docker: dind``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = Field(None, description="engine image; default docker:dind or local")
    mtu: int | None = Field(None, ge=576, le=65535, description="default: the network's MTU")
    cpus: float | None = Field(None, gt=0, le=1024)
    memory: EngineMemory | None = None
    pids: int | None = Field(None, ge=16)
    registry_mirrors: tuple[str, ...] = ()
    ready_timeout: ReadyTimeout = 60.0

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_mirrors(value)


class StackRegistry(BaseModel):
    """The push target: a distribution registry on the stack's network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    image: str | None = Field(None, description="default: registry:2, else dockyard/registry")


class StackCI(BaseModel):
    """The CI container: what the pipelines run in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["agent", "buildbot", "jenkins"] = "agent"
    image: str | None = Field(None, description="default: the preset's image")
    ui_port: int | None = Field(
        None, ge=1, le=65535, description="publish the CI web UI on 127.0.0.1:PORT"
    )


class StackConfig(BaseModel):
    """A whole stack: network, engine, registry, CI container. Every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("dockyard", description="prefix of every object the stack creates")
    docker: Literal["dind", "socket", "socket-unsafe"] = Field(
        "dind",
        description="dind: a TLS engine on the network; socket: the host's engine through "
        "dockyard's guard (ci-build policy); socket-unsafe: the host's raw socket (root on "
        "the host)",
    )
    network_mtu: int | None = Field(None, ge=576, le=65535)
    engine: StackEngine = Field(default_factory=StackEngine)
    registry: StackRegistry = Field(default_factory=StackRegistry)
    ci: StackCI = Field(default_factory=StackCI)
    mirror: MirrorConfig | None = Field(None, description="a pull-through cache for the engine")
    seed: tuple[str, ...] = Field((), description="images the engine pulls once it is up")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "stack name")

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_seed(value)

    @model_validator(mode="after")
    def _own_engine(self) -> StackConfig:
        if (self.mirror is not None or self.seed) and self.docker != "dind":
            raise ValueError("mirror and seed configure the stack's own engine: docker: dind")
        return self
