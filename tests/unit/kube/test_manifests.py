"""The engine's Kubernetes manifests: pure, and every field known to the client's models."""

from __future__ import annotations

import base64

import pytest

from dockyard import config, labels
from dockyard.engine import startup
from dockyard.engine.spec import DATA_ROOT, PROBE_TLS_DIR, SERVER_TLS_DIR
from dockyard.kube import manifests
from dockyard.kube.manifests import KubeEngine

ENGINE = KubeEngine(name="eng-a", namespace="ci", image="dockyard/engine:0.1")
KEYED = KubeEngine(
    name="eng-b",
    namespace="ci",
    image="dockyard/engine:0.1",
    cache_claim="dockyard-cache-main",
    memory_limit="2Gi",
)


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda: manifests.pod(ENGINE), "V1Pod"),
        (lambda: manifests.pod(KEYED), "V1Pod"),
        (lambda: manifests.pod(KubeEngine("e", "ci", "i", address="10.96.0.9")), "V1Pod"),
        (lambda: manifests.service(ENGINE), "V1Service"),
        (lambda: manifests.cache_claim(KEYED), "V1PersistentVolumeClaim"),
        (lambda: manifests.tls_secret(ENGINE, {"a": b"1"}, {"b": b"2"}), "V1Secret"),
        (lambda: manifests.client_secret(ENGINE, {"ca.pem": b"x"}), "V1Secret"),
    ],
)
def test_manifests_are_valid_client_models(build, kind, roundtrip):
    obj = build()
    assert roundtrip(obj, kind) == obj


def test_pod_runs_dockerd_with_tls_from_the_secret_and_probe_calls_its_own_name():
    pod = manifests.pod(ENGINE)
    spec = pod["spec"]
    (container,) = spec["containers"]
    # dockerd runs behind the one-host start prologue, inline: sh -c TEXT $0 dockerd ARGS
    assert container["command"][:2] == ["sh", "-c"]
    assert container["command"][2] == startup.script().decode()
    assert container["args"][0] == "dockerd"
    assert "--tlsverify" in container["args"]
    assert f"--tlscert={SERVER_TLS_DIR}/cert.pem" in container["args"]
    assert spec["hostname"] == "eng-a"
    probe = container["readinessProbe"]["exec"]["command"]
    assert "--host=tcp://eng-a:2376" in probe
    assert "--tlsverify" in probe
    assert f"--tlscert={PROBE_TLS_DIR}/cert.pem" in probe
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[SERVER_TLS_DIR]["readOnly"] is True
    assert mounts[DATA_ROOT]["name"] == "data"
    tls = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "eng-a-tls"
    assert tls["secret"]["defaultMode"] == 0o400


def test_with_a_service_address_the_probe_calls_the_service_name_resolved_to_it():
    addressed = KubeEngine(name="eng-a", namespace="ci", image="i", address="10.96.0.7")
    pod = manifests.pod(addressed)
    probe = pod["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    assert "--host=tcp://eng-a.ci.svc:2376" in probe
    assert pod["spec"]["hostAliases"] == [
        {"ip": "10.96.0.7", "hostnames": ["eng-a.ci", "eng-a.ci.svc", "eng-a.ci.svc.cluster.local"]}
    ]
    assert "hostAliases" not in manifests.pod(ENGINE)["spec"]
    assert manifests.service(addressed)["spec"]["publishNotReadyAddresses"] is True


def test_ephemeral_data_root_is_an_empty_dir_and_a_keyed_one_a_claim():
    data = next(v for v in manifests.pod(ENGINE)["spec"]["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "emptyDir": {}}
    keyed = next(v for v in manifests.pod(KEYED)["spec"]["volumes"] if v["name"] == "data")
    assert keyed["persistentVolumeClaim"]["claimName"] == "dockyard-cache-main"
    assert manifests.pod(KEYED)["metadata"]["labels"][labels.PREFIX + "cache"] == (
        "dockyard-cache-main"
    )
    claim = manifests.cache_claim(KEYED)
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["labels"][labels.ROLE] == labels.ROLE_ENGINE_DATA


def test_engine_pods_are_privileged():
    assert manifests.pod(ENGINE)["spec"]["containers"][0]["securityContext"] == {"privileged": True}


def test_resources_requests_always_limits_when_asked():
    assert "limits" not in manifests.pod(ENGINE)["spec"]["containers"][0]["resources"]
    keyed = manifests.pod(KEYED)["spec"]["containers"][0]["resources"]
    assert keyed["limits"] == {"memory": "2Gi"}
    assert keyed["requests"]["cpu"] == "250m"


def test_service_selects_the_engine_and_its_names_are_in_the_sans():
    svc = manifests.service(ENGINE)
    assert svc["spec"]["selector"] == {labels.ENGINE: "eng-a", labels.ROLE: labels.ROLE_ENGINE}
    assert svc["spec"]["ports"][0]["port"] == 2376
    assert ENGINE.dns_names == ("eng-a", "eng-a.ci", "eng-a.ci.svc", "eng-a.ci.svc.cluster.local")


def test_secrets_hold_only_what_is_given_base64():
    secret = manifests.tls_secret(ENGINE, {"cert.pem": b"C"}, {"key.pem": b"K"})
    assert secret["data"] == {
        "server-cert.pem": base64.b64encode(b"C").decode(),
        "probe-key.pem": base64.b64encode(b"K").decode(),
    }
    assert secret["metadata"]["labels"][labels.MANAGED] == "true"


def test_labels_are_valid_kubernetes_labels():
    import re

    key = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
    value = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
    for k, v in manifests.object_labels(KEYED).items():
        assert key.match(k), k
        assert value.match(v), v


def test_from_options_maps_cache_to_a_claim_and_limits():
    options = config.EngineOptions(name="e1", cache="key-1", cpus=1.5, memory=2 * 1024**3)
    engine = manifests.from_options(options, "ci")
    assert engine.cache_claim == "key-1"
    assert engine.cpu_limit == "1500m"
    assert engine.memory_limit == "2048Mi"
    assert engine.image == config.OFFICIAL_ENGINE_IMAGE
    assert manifests.from_options(config.EngineOptions(name="e2"), "ci").cache_claim is None


def test_job_environment_points_at_the_service_address_with_tls():
    assert manifests.job_environment(ENGINE, "10.96.0.9") == {
        "DOCKER_HOST": "tcp://10.96.0.9:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": manifests.CLIENT_TLS_DIR,
    }


def test_the_model_check_catches_a_misspelt_field(roundtrip):
    pod = manifests.pod(ENGINE)
    pod["spec"]["containers"][0]["readinesProbe"] = pod["spec"]["containers"][0].pop(
        "readinessProbe"
    )
    assert roundtrip(pod, "V1Pod") != pod
