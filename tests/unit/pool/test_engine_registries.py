"""What a pool engine trusts: the pool's plain-HTTP registries plus its mirror's address."""

from __future__ import annotations

from dockyard.mirror.service import Mirror
from dockyard.pool.config import PoolConfig
from dockyard.pool.service import engine_registries

CACHE = Mirror("dockyard-mirror-x", "http://dockyard-mirror-x:5000", "dockyard-mirror-x:5000", "u")


def test_nothing_asked_nothing_trusted():
    assert engine_registries(PoolConfig(name="ci"), None) == {}


def test_the_pool_registries_alone():
    pool = PoolConfig(name="ci", insecure_registries=("r:5000",))
    assert engine_registries(pool, None) == {"insecure_registries": ("r:5000",)}


def test_the_pool_registries_and_the_mirror_both():
    pool = PoolConfig(name="ci", insecure_registries=("r:5000",))
    assert engine_registries(pool, CACHE) == {
        "registry_mirrors": ("http://dockyard-mirror-x:5000",),
        "insecure_registries": ("r:5000", "dockyard-mirror-x:5000"),
    }
    assert engine_registries(PoolConfig(name="ci"), CACHE) == {
        "registry_mirrors": ("http://dockyard-mirror-x:5000",),
        "insecure_registries": ("dockyard-mirror-x:5000",),
    }
