"""Pools as users configure them (``pools.yaml``), validated before ``serve`` creates anything."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from dockyard import config
from dockyard.pool import leases

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POOL_NAME = 40  # engine names (dockyard-POOL-TOKEN) must stay one 63-character DNS label


def parse_duration(value: object, *, allow_zero: bool = False) -> int:
    """``90``, ``90s``, ``30m``, ``1h``, ``7d`` to seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"invalid duration {value!r}: use e.g. 90s, 30m, 1h or 7d")
        seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"invalid duration {value!r}: must be more than zero")
    return seconds


Duration = Annotated[int, BeforeValidator(parse_duration)]


class KeyedLimits(BaseModel):
    """Bounds on keyed caches, enforced by gc: stale caches are rebuilt, disks do not fill."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_age: Duration = Field(7 * 86400, description="a cache older than this is removed")
    max_count: int = Field(4, ge=1, description="cache volumes kept per key (the newest)")


class PoolConfig(BaseModel):
    """One pool: the engines it makes, how many, and what survives a lease."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    image: str | None = Field(None, description="engine image; default as engine create")
    network: str | None = Field(None, description="engines join it; default dockyard-pool-NAME")
    cpus: float | None = Field(None, gt=0, le=1024)
    memory: config.EngineMemory | None = None
    pids: int | None = Field(None, ge=16)
    warm: int = Field(2, ge=0, description="ready engines kept idle")
    max: int = Field(8, ge=1, description="engines of this pool at most, leased or not")
    cache: Literal["ephemeral", "keyed"] = "ephemeral"
    ttl: Duration = Field(3600, description="lease TTL when a request gives none")
    max_ttl: Duration = Field(86400, description="the longest TTL a request may ask for")
    keyed: KeyedLimits = Field(default_factory=KeyedLimits)
    ready_timeout: config.ReadyTimeout = 60.0
    mirror: config.MirrorConfig | None = Field(None, description="a pull-through cache")
    seed: tuple[str, ...] = Field((), description="images a warm engine pulls while it waits")
    insecure_registries: tuple[str, ...] = Field(
        (), description="registries its engines reach over plain HTTP (warned about)"
    )

    @field_validator("insecure_registries")
    @classmethod
    def _insecure(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return config.check_insecure_registries(value)

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return config.check_seed(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        config.check_name(value, "pool name")
        if len(value) > MAX_POOL_NAME:
            raise ValueError(f"pool name {value!r} is longer than {MAX_POOL_NAME} characters")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> PoolConfig:
        if self.warm > self.max:
            raise ValueError(f"warm ({self.warm}) is more than max ({self.max})")
        if self.cache == "keyed" and self.warm:
            raise ValueError(
                "a keyed pool starts each engine on its key's volume when leased: set warm: 0"
            )
        if self.ttl > self.max_ttl:
            raise ValueError(f"ttl ({self.ttl}s) is more than max_ttl ({self.max_ttl}s)")
        return self

    @property
    def network_name(self) -> str:
        return self.network or f"dockyard-pool-{self.name}"

    def spec(self) -> leases.PoolSpec:
        return leases.PoolSpec(
            self.name, self.warm, self.max, self.cache, self.ttl, max_ttl=self.max_ttl
        )


class PoolsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pools: list[PoolConfig] = Field(min_length=1)

    @field_validator("pools")
    @classmethod
    def _unique(cls, value: list[PoolConfig]) -> list[PoolConfig]:
        names = [p.name for p in value]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"pool names must be unique: {', '.join(doubled)} repeated")
        return value


DEFAULT = PoolConfig(name="default")
"""Without a config file: one ephemeral pool, 2 warm, at most 8."""


def load(path: Path | None) -> list[PoolConfig]:
    """The pools of ``path`` (errors name file:line), or the default pool."""
    if path is None:
        return [DEFAULT]
    return config.load_yaml(path, PoolsFile).pools
