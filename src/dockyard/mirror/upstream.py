"""A local upstream registry (air-gapped hosts, tests, benchmarks): images pushed from the host
engine as ``library/NAME`` are served as Docker Hub would serve them, so the cache's Hub path
(``--registry-mirror``) is exercised without any outside registry. Its access log says what it
served: :func:`served` counts blob downloads from it.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import time
from collections import Counter
from dataclasses import dataclass

from dockyard import docker_api, labels

ROLE_UPSTREAM = "upstream"
_BLOB_GET = re.compile(
    r'"GET /v2/(?P<repo>[^ ]+)/blobs/(?P<digest>sha256:[0-9a-f]{64}) [^"]*" 200 (?P<size>\d+)'
)


@dataclass(frozen=True)
class Upstream:
    name: str  # also its DNS name on ``network``
    network: str
    port: int  # published on 127.0.0.1, where the host engine pushes (localhost is trusted)

    @property
    def url(self) -> str:
        return f"http://{self.name}:5000"


def start(client: docker_api.DockerClient, name: str, network: str, image: str) -> Upstream:
    """A plain registry on ``network``, published on a free loopback port for pushes."""
    body = {
        "Image": image,
        "Hostname": name,
        "Labels": labels.managed(ROLE_UPSTREAM),
        "ExposedPorts": {"5000/tcp": {}},
        "HostConfig": {
            "NetworkMode": network,
            "PortBindings": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
        },
        "NetworkingConfig": {"EndpointsConfig": {network: {}}},
    }
    cid = client.api.create_container_from_config(body, name=name)["Id"]
    client.api.start(cid)
    port = int(client.api.port(cid, 5000)[0]["HostPort"])
    _wait_ready(port)
    return Upstream(name, network, port)


def _wait_ready(port: int, timeout: float = 30.0) -> None:
    """Until ``GET /v2/`` answers: pushing earlier gets a reset connection."""
    deadline = time.monotonic() + timeout
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/v2/")
            connection.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            connection.close()


def push(client: docker_api.DockerClient, upstream: Upstream, image: str, as_name: str) -> str:
    """Push a host image to the upstream as ``as_name`` (``library/x:1``); the tag is removed
    from the host afterwards."""
    repository, _, tag = as_name.rpartition(":")
    target = f"127.0.0.1:{upstream.port}/{repository}"
    client.api.tag(image, target, tag)
    try:
        for line in client.api.push(target, tag, stream=True, decode=True):
            if "error" in line:
                raise RuntimeError(f"push of {as_name} failed: {line['error']}")
    finally:
        client.api.remove_image(f"{target}:{tag}")
    return as_name


def served(log_text: str) -> Counter[str]:
    """Bytes of blob bodies the registry sent, per ``repository@digest`` (its access log)."""
    found: Counter[str] = Counter()
    for match in _BLOB_GET.finditer(log_text):
        found[f"{match['repo']}@{match['digest']}"] += int(match["size"])
    return found


def downloads(log_text: str) -> Counter[str]:
    """How many times each blob was sent whole."""
    return Counter(
        f"{m['repo']}@{m['digest']}" for m in _BLOB_GET.finditer(log_text) if int(m["size"]) > 0
    )


def log(client: docker_api.DockerClient, upstream: Upstream) -> str:
    raw: bytes = client.api.logs(upstream.name)
    return raw.decode(errors="replace")


def remove(client: docker_api.DockerClient, upstream: Upstream) -> None:
    with contextlib.suppress(docker_api.NotFound):
        client.api.remove_container(upstream.name, force=True, v=True)
