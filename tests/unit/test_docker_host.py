"""dockyard's host engine is not the CI engine that `engine env` pointed DOCKER_HOST at."""

from pathlib import Path

from dockyard import docker_api

CLIENTS = Path("/state/pki/clients")


def test_a_docker_host_from_dockyard_engine_env_is_recognised_and_passed_over():
    env = {
        "DOCKER_HOST": "tcp://ci:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/state/pki/clients/engine-ci",
    }
    target = docker_api.host_target(env, CLIENTS)
    assert target.base_url == docker_api.DEFAULT_HOST
    assert "dockyard engine ci" in target.note
    assert docker_api.HOST_ENV in target.note


def test_dockyards_own_setting_wins_and_any_other_docker_host_is_followed():
    env = {"DOCKER_HOST": "tcp://ci:2376", "DOCKER_CERT_PATH": "/state/pki/clients/engine-ci"}
    explicit = docker_api.host_target({**env, docker_api.HOST_ENV: "unix:///d.sock"}, CLIENTS)
    assert (explicit.base_url, explicit.note) == ("unix:///d.sock", "")
    other = docker_api.host_target({"DOCKER_HOST": "tcp://build:2376"}, CLIENTS)
    assert (other.base_url, other.where) == (None, "tcp://build:2376")
    assert docker_api.host_target({}, CLIENTS).where == docker_api.DEFAULT_HOST
