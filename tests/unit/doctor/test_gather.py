"""Gathering never fails on a broken stack: what is missing or refused becomes a fact."""

from __future__ import annotations

import json
from types import SimpleNamespace

import requests

from dockyard import docker_api
from dockyard.doctor import checks, gather
from dockyard.errors import DockyardError


class BrokenAPI:
    """A host engine on which nothing of the stack exists and nothing can be run."""

    def __init__(self, running: set[str] = frozenset(), exec_error: Exception | None = None):
        self.running = running
        self.exec_error = exec_error or docker_api.APIError("container is not running")

    def inspect_container(self, name):
        if name not in self.running:
            raise docker_api.NotFound(f"No such container: {name}")
        return {
            "State": {"Status": "running"},
            "Config": {"Env": ["DOCKER_HOST=tcp://docker:2376"], "Labels": None},
            "Args": None,
            "NetworkSettings": {"Networks": None},
        }

    def inspect_network(self, name):
        raise docker_api.NotFound(f"network {name} not found")

    def containers(self, all, filters):  # no pull-through cache on this host
        return []

    def volumes(self, filters):
        return {"Volumes": None}

    def logs(self, name, tail):
        raise docker_api.APIError("no logs")

    def exec_create(self, container, argv):
        raise self.exec_error


def client(api: object) -> docker_api.DockerClient:
    return SimpleNamespace(api=api)  # type: ignore[return-value]


def test_an_unanswering_host_engine_is_a_fact(monkeypatch):
    def refuse():
        raise DockyardError("no Docker engine answers at unix:///var/run/docker.sock")

    monkeypatch.setattr(docker_api, "shared", refuse)
    facts = gather.gather("s")
    assert facts.host_error.startswith("no Docker engine answers")
    assert [f.check for f in checks.diagnose(facts)] == ["host-engine"]


def test_a_stack_that_is_not_there_is_facts_of_absence():
    facts = gather.gather("s", client(BrokenAPI()))
    assert not facts.network.exists
    assert not facts.engine.exists
    assert not facts.ci.exists
    assert not facts.registry.exists
    failed = {f.check for f in checks.diagnose(facts) if f.status == "fail"}
    assert failed == {"network", "ci"}


def test_probes_that_cannot_run_are_failed_runs():
    facts = gather.gather("s", client(BrokenAPI(running={"s-ci"})))
    assert facts.api is not None
    assert facts.api.code == -1
    assert "container is not running" in facts.api.output
    assert all(cert.content is None for cert in facts.certs)


def test_an_engine_lost_mid_way_is_a_fact():
    lost = BrokenAPI(running={"s-ci"}, exec_error=requests.ConnectionError("connection reset"))
    facts = gather.gather("s", client(lost))
    assert facts.host_error == "connection reset"


def test_docker_info_gives_the_driver_and_the_insecure_registries():
    shown = {
        "Driver": "overlay2",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {
                "docker.io": {"Name": "docker.io", "Secure": True},
                "registry:5000": {"Name": "registry:5000", "Secure": False},
            },
        },
    }
    info = gather.parse_info(json.dumps(shown))
    assert info == checks.DaemonInfo("overlay2", ("registry:5000",))


def test_unparseable_docker_info_is_no_info():
    assert gather.parse_info("WARNING: not json") is None
    assert gather.parse_info("[]") is None
