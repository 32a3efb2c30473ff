"""CI pod templates and RBAC: native sidecar from 1.29, classic before; loopback-only engine."""

from __future__ import annotations

import pytest

from dockyard.kube import templates


def make(ci="generic", version=(1, 29), cache_key=None):
    return templates.pod(
        ci, image="docker:dind", job_image="docker:cli", server_version=version, cache_key=cache_key
    )


@pytest.mark.parametrize("ci", ["jenkins", "gitlab", "generic"])
@pytest.mark.parametrize("version", [(1, 20), (1, 29), (1, 31)])
def test_templates_are_valid_pods(ci, version, roundtrip):
    pod = make(ci, version)
    assert roundtrip(pod, "V1Pod") == pod


def test_native_sidecar_from_1_29_is_an_always_restarting_init_container_with_startup_probe():
    spec = make(version=(1, 29))["spec"]
    (engine,) = spec["initContainers"]
    assert engine["restartPolicy"] == "Always"
    assert "info" in engine["startupProbe"]["exec"]["command"]
    assert "--tlsverify" in engine["startupProbe"]["exec"]["command"]
    assert "--host=tcp://docker:2376" in engine["startupProbe"]["exec"]["command"]
    assert [c["name"] for c in spec["containers"]] == ["job"]


def test_classic_sidecar_before_1_29_and_the_job_waits_for_the_engine():
    spec = make(version=(1, 20))["spec"]
    assert "initContainers" not in spec
    job, engine = spec["containers"]
    assert "restartPolicy" not in engine
    assert "until docker version" in job["command"][-1]


def test_engine_listens_on_loopback_only_under_the_name_docker():
    spec = make()["spec"]
    engine = spec["initContainers"][0]
    assert "--host=tcp://127.0.0.1:2376" in engine["args"]
    assert not any(a.startswith("--host=tcp://0.0.0.0") for a in engine["args"])
    assert spec["hostAliases"] == [{"ip": "127.0.0.1", "hostnames": ["docker"]}]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env == {
        "DOCKER_HOST": "tcp://docker:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/etc/dockyard/client",
    }


def test_cache_key_puts_the_data_root_on_that_claim():
    volumes = {v["name"]: v for v in make(cache_key="main")["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "main"
    assert {v["name"]: v for v in make()["spec"]["volumes"]}["data"] == {
        "name": "data",
        "emptyDir": {},
    }


def test_job_container_names_per_ci():
    assert make("gitlab")["spec"]["containers"][0]["name"] == "build"
    assert make("jenkins")["spec"]["containers"][0]["name"] == "docker-client"


def test_parse_version():
    assert templates.parse_version("v1.20.2") == (1, 20)
    assert templates.parse_version("1.27+") == (1, 27)
    assert templates.native_sidecars((1, 29))
    assert not templates.native_sidecars((1, 28))


def test_rbac_is_namespaced_and_least_privilege(roundtrip):
    account, role, binding = templates.rbac("ci")
    assert role["kind"] == "Role"
    assert role["metadata"]["namespace"] == "ci"
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {
        "pods",
        "pods/log",
        "secrets",
        "services",
        "persistentvolumeclaims",
        "events",
        "leases",
    }
    assert all("*" not in rule["verbs"] for rule in role["rules"])
    events = next(r for r in role["rules"] if r["resources"] == ["events"])
    assert "create" not in events["verbs"]
    assert binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "dockyard",
        "namespace": "ci",
    }
    assert roundtrip(role, "V1Role") == role
    assert roundtrip(binding, "V1RoleBinding") == binding
    assert account["kind"] == "ServiceAccount"
