"""dockyard's host engine is not the CI engine that `engine env` pointed DOCKER_HOST at."""

from pathlib import Path

from dockyard import docker_api

STATE = Path("/state")


def test_a_docker_host_from_dockyard_engine_env_is_recognised_and_passed_over():
    env = {
        "DOCKER_HOST": "tcp://ci:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/state/pki/clients/engine-ci",
    }
    target = docker_api.host_target(env, STATE)
    assert target.base_url == docker_api.DEFAULT_HOST
    assert "dockyard engine ci" in target.note
    assert docker_api.HOST_ENV in target.note


def test_dockyards_own_setting_wins_and_any_other_docker_host_is_followed():
    env = {"DOCKER_HOST": "tcp://ci:2376", "DOCKER_CERT_PATH": "/state/pki/clients/engine-ci"}
    explicit = docker_api.host_target({**env, docker_api.HOST_ENV: "unix:///d.sock"}, STATE)
    assert (explicit.base_url, explicit.note) == ("unix:///d.sock", "")
    other = docker_api.host_target({"DOCKER_HOST": "tcp://build:2376"}, STATE)
    assert (other.base_url, other.where) == (None, "tcp://build:2376")
    assert docker_api.host_target({}, STATE).where == docker_api.DEFAULT_HOST


def test_a_docker_host_from_dockyard_lease_is_recognised_too():
    env = {"DOCKER_HOST": "tcp://p-1:2376", "DOCKER_CERT_PATH": "/state/leases/abc123"}
    target = docker_api.host_target(env, STATE)
    assert target.base_url == docker_api.DEFAULT_HOST
    assert "the engine of lease abc123" in target.note
