"""The cache alone, read over HTTP from the host as an engine reads it: it stays under its size
limit by evicting (and re-fetches what it evicted), and an unreachable upstream is named."""

from __future__ import annotations

import io
import json
import secrets
import time
import urllib.error
import urllib.request

import pytest

from dockyard import labels
from dockyard.config import MirrorConfig
from dockyard.doctor import checks, gather
from dockyard.mirror import plan, upstream
from dockyard.mirror import service as mirror

pytestmark = pytest.mark.docker

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def address(docker_client, name, network):
    found = docker_client.api.inspect_container(name)
    return f"http://{found['NetworkSettings']['Networks'][network]['IPAddress']}:{plan.PORT}"


def pull(base, repository, tag):
    """A pull as dockerd does it: the manifest, then every blob it names."""
    request = urllib.request.Request(
        f"{base}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        manifest = json.load(answer)
    for blob in [manifest["config"], *manifest["layers"]]:
        with urllib.request.urlopen(f"{base}/v2/{repository}/blobs/{blob['digest']}") as answer:
            assert len(answer.read()) == blob["size"]


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def big_images(docker_client, base_image):
    """Two images of about 1.5 MB of incompressible layer each, built here."""
    made = []
    for _ in range(2):
        tag = f"dockyard-test/big-{secrets.token_hex(3)}:1"
        dockerfile = f"FROM {base_image}\nRUN head -c 1500000 /dev/urandom > /blob\n"
        docker_client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, labels=labels.managed("test")
        )
        made.append(tag)
    yield made
    for tag in made:
        docker_client.api.remove_image(tag, force=True)


def test_a_cache_at_its_limit_evicts_and_still_serves(docker_client, hub, big_images):
    for index, image in enumerate(big_images):
        upstream.push(docker_client, hub, image, f"library/big{index}:1")
    cfg = MirrorConfig(upstream=hub.url, max_size="2m")
    found = mirror.ensure(docker_client, cfg, hub.network)
    base = address(docker_client, found.name, hub.network)
    wait_for(lambda: mirror.stats(docker_client, found.name).running, what="the cache")

    pull(base, "library/big0", "1")
    pull(base, "library/big1", "1")  # 3 MB held: over the 2 MB limit
    wait_for(
        lambda: mirror.stats(docker_client, found.name).size <= cfg.max_size,
        what="eviction under the limit",
    )
    assert "evicted" in mirror.logs(docker_client, found.name)
    before = sum(upstream.downloads(upstream.log(docker_client, hub)).values())
    pull(base, "library/big0", "1")  # what was evicted is fetched again, not an error
    assert sum(upstream.downloads(upstream.log(docker_client, hub)).values()) > before
    wait_for(
        lambda: mirror.stats(docker_client, found.name).size <= cfg.max_size,
        what="eviction under the limit again",
    )


def test_an_unreachable_upstream_is_named_and_the_cache_recovers(docker_client, hub):
    cfg = MirrorConfig(upstream=f"http://{hub.name}-gone:5000")  # no such host
    found = mirror.ensure(docker_client, cfg, hub.network)
    wait_for(
        lambda: mirror.report(docker_client, found.name)["problem"] is not None,
        what="the cause in the cache's log",
    )
    report = mirror.report(docker_client, found.name)
    assert report["problem"].startswith("cannot reach its upstream"), report
    assert report["state"] == "running"  # the supervisor keeps retrying
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        pull(address(docker_client, found.name, hub.network), "library/t14", "1")
    # doctor names it, whichever stack it is asked about
    finding = checks.check_mirror(gather.gather(f"absent-{secrets.token_hex(2)}", docker_client))
    assert finding is not None
    assert finding.status == "fail"
    assert f"mirror {found.name} ({cfg.upstream}) cannot reach its upstream" in finding.cause
