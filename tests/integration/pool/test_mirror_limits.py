"""The cache alone, read over HTTP from the host as an engine reads it: it stays under its size
limit by evicting (and re-fetches what it evicted), and an unreachable upstream is named."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import secrets
import urllib.error
import urllib.request

import pytest

from dockyard import docker_api, labels
from dockyard.config import MirrorConfig
from dockyard.doctor import checks, gather
from dockyard.engine import client as engine_client
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


def test_a_cache_at_its_limit_evicts_and_still_serves(tools, docker_client, hub, big_images):
    for index, image in enumerate(big_images):
        upstream.push(docker_client, hub, image, f"library/big{index}:1")
    cfg = MirrorConfig(upstream=hub.url, max_size="2m")
    found = mirror.ensure(docker_client, cfg, hub.network)
    base = address(docker_client, found.name, hub.network)
    tools.wait_for(lambda: mirror.stats(docker_client, found.name).running, what="the cache")

    pull(base, "library/big0", "1")
    pull(base, "library/big1", "1")  # 3 MB held: over the 2 MB limit
    tools.wait_for(
        lambda: mirror.stats(docker_client, found.name).size <= cfg.max_size,
        what="eviction under the limit",
    )
    assert "evicted" in mirror.logs(docker_client, found.name)
    before = sum(upstream.downloads(upstream.log(docker_client, hub)).values())
    pull(base, "library/big0", "1")  # what was evicted is fetched again, not an error
    assert sum(upstream.downloads(upstream.log(docker_client, hub)).values()) > before
    tools.wait_for(
        lambda: mirror.stats(docker_client, found.name).size <= cfg.max_size,
        what="eviction under the limit again",
    )


def test_an_unreachable_upstream_is_named_and_the_cache_recovers(tools, docker_client, hub):
    cfg = MirrorConfig(upstream=f"http://{hub.name}-gone:5000")  # no such host
    found = mirror.ensure(docker_client, cfg, hub.network)
    tools.wait_for(
        lambda: mirror.report(docker_client, found.name)["problem"] is not None,
        what="the cause in the cache's log",
    )
    report = mirror.report(docker_client, found.name)
    assert report["problem"].startswith("cannot reach its upstream"), report
    assert report["state"] == "running"  # the supervisor keeps retrying
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        pull(address(docker_client, found.name, hub.network), "library/t14", "1")
    # doctor names it for the stack whose network it serves (a stack's network is its name)
    finding = checks.check_mirror(gather.gather(hub.network, docker_client))
    assert finding is not None
    assert finding.status == "fail"
    assert f"mirror {found.name} ({cfg.upstream}) cannot reach its upstream" in finding.cause


@pytest.fixture
def private_hub(docker_client, hub, base_image):
    """An upstream on the hub's network that demands user ``ci`` with password ``right``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt("right", crypt.mksalt(crypt.METHOD_BLOWFISH))
    found = upstream.start(
        docker_client,
        f"{hub.name}-private",
        hub.network,
        hub_image(docker_client),
        htpasswd=f"ci:{hashed}\n",
    )
    try:
        auth = {"username": "ci", "password": "right"}
        upstream.push(docker_client, found, base_image, "library/t14:1", auth=auth)
        yield found
    finally:
        upstream.remove(docker_client, found)


def hub_image(docker_client):
    from dockyard.images import builder, recipes

    return builder.ensure(recipes.REGISTRY)


def problem_of(docker_client, name):
    return mirror.report(docker_client, name)["problem"] or ""


def test_credential_trouble_fails_the_pull_and_is_named(
    tools, docker_client, hub, private_hub, tmp_path, monkeypatch
):
    monkeypatch.setenv("DOCKYARD_TEST_HUB_TOKEN", "wrong")
    wrong = MirrorConfig(
        upstream=private_hub.url, username="ci", password_env="DOCKYARD_TEST_HUB_TOKEN"
    )
    refused = mirror.ensure(docker_client, wrong, hub.network)
    base = address(docker_client, refused.name, hub.network)
    tools.wait_for(lambda: mirror.stats(docker_client, refused.name).running, what="the cache")
    with pytest.raises(urllib.error.HTTPError) as error:
        pull(base, "library/t14", "1")
    # distribution 2.8 hides the refusal: it falls back to its own store ("manifest unknown")
    assert "MANIFEST_UNKNOWN" in error.value.read().decode()
    assert problem_of(docker_client, refused.name).startswith(
        "was refused by its upstream (credentials)"
    )
    finding = checks.check_mirror(gather.gather(hub.network, docker_client))
    assert finding is not None
    assert "refused by its upstream (credentials)" in finding.cause
    # and it is not the concern of a stack it does not serve
    elsewhere = gather.gather(f"absent-{secrets.token_hex(2)}", docker_client)
    assert checks.check_mirror(elsewhere) is None
    # The secret is in the cache's 0600 files only: not in what inspect shows.
    assert "wrong" not in json.dumps(docker_client.api.inspect_container(refused.name))
    for path in (plan.CONFIG_PATH, plan.AUTH_PATH):
        mode = engine_client.run(docker_client, refused.name, ["stat", "-c", "%a", path])
        assert mode.output.strip() == "600", path

    # A rotated secret behind the same reference reaches the cache: no label holds the secret,
    # so ensure compares the files inside and restarts the registry with the new ones.
    monkeypatch.setenv("DOCKYARD_TEST_HUB_TOKEN", "rotated")
    assert mirror.ensure(docker_client, wrong, hub.network).name == refused.name
    auth = docker_api.copy_out(docker_client, refused.name, plan.AUTH_PATH)
    assert auth == base64.b64encode(b"ci:rotated")
    tools.wait_for(lambda: mirror.stats(docker_client, refused.name).running, what="the cache")

    # Right credentials, same cache (recreated, its volume kept): accepted by the upstream,
    # but distribution 2.8 sends them only to token servers, never as Basic auth; named too.
    secret = tmp_path / "hub-password"
    secret.write_text("right\n")
    secret.chmod(0o600)
    right = MirrorConfig(upstream=private_hub.url, username="ci", password_file=secret)
    basic = mirror.ensure(docker_client, right, hub.network)
    assert basic.name == refused.name
    tools.wait_for(lambda: mirror.stats(docker_client, basic.name).running, what="the cache")
    assert "uses HTTP Basic auth" in problem_of(docker_client, basic.name)

    anonymous = mirror.ensure(docker_client, MirrorConfig(upstream=private_hub.url), hub.network)
    tools.wait_for(lambda: mirror.stats(docker_client, anonymous.name).running, what="the cache")
    assert problem_of(docker_client, anonymous.name).startswith("needs credentials")


def test_a_full_cache_volume_fails_that_pull_and_keeps_serving_the_rest(
    tools, docker_client, hub, big_images
):
    upstream.push(docker_client, hub, big_images[0], "library/big0:1")
    cfg = MirrorConfig(upstream=hub.url)  # 20g limit, on a 1.5 MB disk
    name = plan.name_of(cfg.upstream)
    docker_client.api.create_volume(
        plan.volume_of(name),
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1500k"},
        labels=labels.managed(plan.ROLE_MIRROR_DATA, mirror=name),
    )
    found = mirror.ensure(docker_client, cfg, hub.network)
    base = address(docker_client, found.name, hub.network)
    tools.wait_for(lambda: mirror.stats(docker_client, found.name).running, what="the cache")
    pull(base, "library/t14", "1")  # small: fits
    with contextlib.suppress(urllib.error.HTTPError, OSError, AssertionError):
        for _ in range(3):  # the first pull may stream it while the store fails
            pull(base, "library/big0", "1")
    tools.wait_for(
        lambda: (mirror.report(docker_client, found.name)["problem"] or "").startswith(
            "has a full storage volume"
        ),
        what="the full volume named",
    )
    pull(base, "library/t14", "1")  # what it holds is still served
