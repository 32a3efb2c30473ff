"""Limits no engine can work with are refused before anything is created, saying why."""

import pytest

from dockyard import config
from dockyard.config import EngineOptions, StackConfig
from dockyard.errors import DockyardError
from dockyard.pool.config import PoolConfig


@pytest.mark.parametrize("memory", ["1k", "64m", "127m"])
def test_memory_below_an_idle_engine_is_refused_naming_the_minimum(memory):
    with pytest.raises(DockyardError, match=r"memory: .* an idle one uses about 114 MiB.*128 MiB"):
        config.validate(EngineOptions, {"name": "m1", "memory": memory})


def test_enough_memory_is_accepted_everywhere_an_engine_is_configured():
    assert config.validate(EngineOptions, {"name": "m1", "memory": "128m"}).memory == 128 * 2**20
    assert config.validate(StackConfig, {"engine": {"memory": "1g"}}).engine.memory == 2**30
    with pytest.raises(DockyardError, match=r"engine\.memory"):
        config.validate(StackConfig, {"engine": {"memory": "64m"}})


@pytest.mark.parametrize("network", ["host", "none", "bridge", "container:abc"])
def test_networks_that_cannot_hold_an_engine_are_refused(network):
    with pytest.raises(DockyardError, match=r"network: .* cannot hold an engine.*user-defined"):
        config.validate(EngineOptions, {"name": "m1", "network": network})


def test_a_user_defined_network_is_accepted():
    assert config.validate(EngineOptions, {"name": "m1", "network": "jenkins"}).network == "jenkins"


@pytest.mark.parametrize("timeout", [0.01, 0.5])
def test_a_ready_timeout_no_engine_can_meet_is_refused(timeout):
    with pytest.raises(DockyardError, match=r"ready_timeout: .* shorter than any engine takes"):
        config.validate(EngineOptions, {"name": "m1", "ready_timeout": timeout})
    with pytest.raises(DockyardError, match="ready_timeout"):
        config.validate(StackConfig, {"engine": {"ready_timeout": timeout}})


def test_pool_engines_get_the_same_limits():
    fields = PoolConfig.model_fields
    assert "memory" in fields
    assert "ready_timeout" in fields
    with pytest.raises(DockyardError, match="114 MiB"):
        config.validate(PoolConfig, {"name": "p", "memory": "64m"})
