"""Engine cold start to ready, and idle memory, against two baselines measured in the same run.

- dockyard: ``engine create`` (mutual TLS, ECDSA certificates issued on the host, ready when a
  TLS-verified API call through the network name succeeds).
- tutorial: DinD as most tutorials start it, ``dockerd --host=tcp://0.0.0.0:2375`` (plaintext,
  no ``--tls=false``), ready when ``docker version`` answers through the network name.
- dind-rsa: docker:dind-style start-up: the container generates an RSA-4096 CA, server and
  client certificate with openssl, then serves TLS on 2376; ready when a TLS call answers.

All three use the same engine image, privilege mode, network and cache-volume layout, and the
same readiness probe (the docker CLI inside the engine container), so the differences are the
start-up designs, not the harness. The network and volumes are removed after each sample.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from dockyard import config, docker_api, labels
from dockyard.engine import host, service
from dockyard.engine.privilege import host_config
from dockyard.images import builder

POLL = 0.05

DIND_RSA_SCRIPT = r"""
set -e
d=/certs; mkdir -p $d/ca $d/server $d/client
openssl genrsa -out $d/ca/key.pem 4096 2>/dev/null
openssl req -new -x509 -days 825 -key $d/ca/key.pem -out $d/ca/cert.pem -subj /CN=docker:dind-CA
for who in server client; do
  openssl genrsa -out $d/$who/key.pem 4096 2>/dev/null
  openssl req -new -key $d/$who/key.pem -out $d/$who/csr.pem -subj /CN=docker:dind-$who
  if [ $who = server ]; then
    printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
      "$(hostname)" > $d/$who/ext.cnf
  else
    printf 'extendedKeyUsage=clientAuth\n' > $d/$who/ext.cnf
  fi
  openssl x509 -req -in $d/$who/csr.pem -CA $d/ca/cert.pem -CAkey $d/ca/key.pem \
    -CAcreateserial -out $d/$who/cert.pem -days 825 -extfile $d/$who/ext.cnf 2>/dev/null
  cp $d/ca/cert.pem $d/$who/ca.pem
done
exec dockerd --host=tcp://0.0.0.0:2376 --tlsverify --tlscacert=$d/server/ca.pem \
  --tlscert=$d/server/cert.pem --tlskey=$d/server/key.pem --storage-driver=overlay2
"""


def _baseline(
    client: docker_api.DockerClient,
    image: str,
    name: str,
    command: list[str],
    probe: list[str],
    probe_env: dict[str, str],
) -> float:
    """Start a hand-made DinD container and time it to its first answered probe."""
    decision = host.privilege_decision(client, image)
    assert decision.mode is not None
    net = client.api.create_network(name, labels=labels.managed("bench"))
    volume = f"{name}-data"
    client.api.create_volume(volume, labels=labels.managed("bench"))
    hostcfg = host_config(decision.mode, decision.cap_drop)
    hostcfg["Binds"] = [*hostcfg.get("Binds", []), f"{volume}:/var/lib/docker"]
    hostcfg["NetworkMode"] = name
    hostcfg["Init"] = True
    body = {
        "Image": image,
        "Entrypoint": command[:1],
        "Cmd": command[1:],
        "Hostname": name,
        "Labels": labels.managed("bench"),
        "HostConfig": hostcfg,
        "NetworkingConfig": {"EndpointsConfig": {name: {"Aliases": [name]}}},
    }
    cid = client.api.create_container_from_config(body, name=name)["Id"]
    try:
        started = time.monotonic()
        client.api.start(cid)
        while time.monotonic() - started < 120:
            exec_id = client.api.exec_create(cid, probe, environment=probe_env)["Id"]
            client.api.exec_start(exec_id)
            if client.api.exec_inspect(exec_id)["ExitCode"] == 0:
                return time.monotonic() - started
            time.sleep(POLL)
        raise RuntimeError(f"{name} never became ready")
    finally:
        client.api.remove_container(cid, force=True, v=True)
        client.api.remove_volume(volume, force=True)
        client.api.remove_network(net["Id"])


def tutorial(client: docker_api.DockerClient, image: str) -> float:
    name = f"bench-tut-{secrets.token_hex(3)}"
    return _baseline(
        client, image, name,
        ["dockerd", "--host=tcp://0.0.0.0:2375", "--storage-driver=overlay2"],
        ["docker", "version"], {"DOCKER_HOST": f"tcp://{name}:2375"},
    )  # fmt: skip


def dind_rsa(client: docker_api.DockerClient, image: str) -> float:
    name = f"bench-rsa-{secrets.token_hex(3)}"
    return _baseline(
        client, image, name, ["sh", "-c", DIND_RSA_SCRIPT],
        ["docker", "version"],
        {"DOCKER_HOST": f"tcp://{name}:2376", "DOCKER_TLS_VERIFY": "1",
         "DOCKER_CERT_PATH": "/certs/client"},
    )  # fmt: skip


def dockyard_create(client: docker_api.DockerClient, image: str) -> float:
    name = f"bench-dy-{secrets.token_hex(3)}"
    options = config.EngineOptions(name=name, image=image)
    started = time.monotonic()
    try:
        service.create(options, client=client)
        return time.monotonic() - started
    finally:
        service.rm(name, volumes=True, client=client)


def idle_memory_mib(client: docker_api.DockerClient, image: str) -> dict[str, float]:
    """RSS of each process in an idle engine, read from the host's /proc."""
    name = f"bench-mem-{secrets.token_hex(3)}"
    service.create(config.EngineOptions(name=name, image=image), client=client)
    try:
        time.sleep(5)  # let start-up transients settle
        top = client.api.top(name, ps_args="-eo pid,comm")
        usage: dict[str, float] = {}
        for pid, comm in top["Processes"]:
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kib = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
            usage[comm] = usage.get(comm, 0.0) + rss_kib / 1024
        return usage
    finally:
        service.rm(name, volumes=True, client=client)


def _samples(label: str, runs: int, sample: Callable[[], float]) -> list[float]:
    values = []
    for index in range(runs):
        value = sample()
        values.append(value)
        print(f"  {label} run {index + 1}/{runs}: {value:.3f} s", flush=True)
    return values


def main(runs: int) -> None:
    client = docker_api.connect()
    image = builder.ensure("engine")
    host.privilege_decision(client, image)  # probe once outside the timings
    print(f"engine cold start to ready, {runs} runs each, image {image}")
    results = {
        "dockyard (mTLS, ECDSA)": _samples(
            "dockyard", runs, lambda: dockyard_create(client, image)
        ),
        "tutorial (plain 2375)": _samples("tutorial", runs, lambda: tutorial(client, image)),
        "dind-style (RSA-4096)": _samples("dind-rsa", runs, lambda: dind_rsa(client, image)),
    }
    ours = statistics.median(results["dockyard (mTLS, ECDSA)"])
    print(f"\n{'variant':<26}{'median s':>10}{'min s':>8}{'max s':>8}{'vs dockyard':>13}")
    for label, values in results.items():
        median = statistics.median(values)
        print(
            f"{label:<26}{median:>10.3f}{min(values):>8.3f}{max(values):>8.3f}"
            f"{median / ours:>12.1f}x"
        )
    print(f"target: dockyard median <= 1.0 s: {'met' if ours <= 1.0 else 'NOT met'} ({ours:.3f} s)")
    memory = idle_memory_mib(client, image)
    total = sum(memory.values())
    detail = ", ".join(f"{k} {v:.0f}" for k, v in sorted(memory.items(), key=lambda kv: -kv[1]))
    print(f"\nidle memory of one engine: {total:.0f} MiB RSS ({detail})")
