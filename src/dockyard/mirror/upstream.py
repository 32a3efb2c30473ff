"""A local upstream registry (air-gapped hosts, tests, benchmarks): images pushed from the host
engine as ``library/NAME`` are served as Docker Hub would serve them, so the cache's Hub path
(``--registry-mirror``) is exercised without any outside registry. Its access log says what it
served: :func:`served` counts blob downloads from it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from dockyard import archive, docker_api, labels

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


def start(
    client: docker_api.DockerClient,
    name: str,
    network: str,
    image: str,
    *,
    htpasswd: str | None = None,
) -> Upstream:
    """A plain registry on ``network``, published on a free loopback port for pushes; with
    ``htpasswd`` (bcrypt lines), one that demands those credentials, as a private Hub would."""
    body: dict[str, Any] = {
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
    files: dict[str, bytes] = {}
    if htpasswd is not None:
        body |= {"Entrypoint": ["/usr/bin/docker-registry"], "Cmd": ["serve", _CONFIG]}
        files = {_CONFIG: _auth_config().encode(), _HTPASSWD: htpasswd.encode()}
    cid = client.api.create_container_from_config(body, name=name)["Id"]
    try:
        if files:
            client.api.put_archive(cid, "/", archive.tar(files, mode=0o600))
        client.api.start(cid)
        port = int(client.api.port(cid, 5000)[0]["HostPort"])
        _wait_ready(port)
    except BaseException:
        client.api.remove_container(cid, force=True, v=True)  # nothing half-made remains
        raise
    return Upstream(name, network, port)


_CONFIG = "/etc/dockyard/upstream.yml"
_HTPASSWD = "/etc/dockyard/htpasswd"


def _auth_config() -> str:
    document = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": "/var/lib/docker-registry"}},
        "http": {"addr": ":5000"},
        "auth": {"htpasswd": {"realm": "dockyard-upstream", "path": _HTPASSWD}},
    }
    return json.dumps(document)


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


def push(
    client: docker_api.DockerClient,
    upstream: Upstream,
    image: str,
    as_name: str,
    auth: dict[str, str] | None = None,
) -> str:
    """Push a host image to the upstream as ``as_name`` (``library/x:1``); the tag is removed
    from the host afterwards."""
    repository, _, tag = as_name.rpartition(":")
    target = f"127.0.0.1:{upstream.port}/{repository}"
    client.api.tag(image, target, tag)
    try:
        for line in client.api.push(target, tag, stream=True, decode=True, auth_config=auth):
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
