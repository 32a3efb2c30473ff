"""The cache's container, config and read-back, decided without Docker."""

from __future__ import annotations

import json
import subprocess

import pytest

from dockyard import config
from dockyard.config import MirrorConfig
from dockyard.mirror import plan, upstream

HUB = MirrorConfig(upstream="http://up:5000", max_size="1g")


def test_one_cache_per_upstream_named_by_it():
    assert plan.name_of("http://up:5000") == plan.name_of("http://up:5000")
    assert plan.name_of("http://up:5000") != plan.name_of("http://other:5000")
    assert plan.name_of("http://up:5000").startswith("dockyard-mirror-")
    # two logins to one upstream never share a cache (each reads what its login may)
    assert plan.name_of("http://up:5000", "a") != plan.name_of("http://up:5000", "b")
    name = plan.name_of("http://up:5000")
    assert plan.url(name) == f"http://{name}:5000"


def test_the_password_goes_into_the_config_file_only():
    cfg = MirrorConfig(upstream="https://hub.example", username="ci", password_env="HUB_TOKEN")
    document = json.loads(plan.registry_config(cfg, "s3cret"))
    assert document["proxy"] == {
        "remoteurl": "https://hub.example",
        "username": "ci",
        "password": "s3cret",
    }
    assert "cache" not in document["storage"]  # no descriptor cache of evicted blobs
    assert document["http"]["debug"]["addr"].startswith("127.0.0.1:")  # not on the network
    body = plan.create_body(cfg, "dockyard/registry:0.1", "sha256:x", "net")
    assert "s3cret" not in json.dumps(body)
    files = plan.files(cfg, "s3cret")
    assert b"s3cret" in files[plan.CONFIG_PATH]
    assert b"s3cret" not in files[plan.SCRIPT_PATH]


def test_the_container_is_labelled_and_changes_when_its_config_does():
    body = plan.create_body(HUB, "dockyard/registry:0.1", "sha256:x", "net")
    own = body["Labels"]
    assert own["io.dockyard.managed"] == "true"
    assert own["io.dockyard.role"] == plan.ROLE_MIRROR
    assert own[plan.UPSTREAM] == "http://up:5000"
    assert body["HostConfig"]["Binds"] == [
        f"{plan.volume_of(plan.name_of(HUB.upstream))}:{plan.STORAGE}"
    ]
    other = MirrorConfig(upstream="http://up:5000", username="ci")
    assert plan.spec_hash(HUB, "sha256:x") != plan.spec_hash(other, "sha256:x")
    assert plan.spec_hash(HUB, "sha256:x") != plan.spec_hash(HUB, "sha256:y")


def test_the_supervisor_script_is_valid_shell_and_the_limit_a_file():
    script = plan.supervisor_script()
    assert plan.LIMIT_PATH in script
    checked = subprocess.run(
        ["sh", "-n"], input=script, text=True, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert plan.limit_file(MirrorConfig(upstream="http://x", max_size="2m")) == {
        plan.LIMIT_PATH: b"2048\n"
    }
    # a new limit is written in place: it does not change what the container is
    bigger = MirrorConfig(upstream="http://up:5000", max_size="2g")
    assert plan.spec_hash(HUB, "sha256:x") == plan.spec_hash(bigger, "sha256:x")


def test_eviction_removes_oldest_blobs_down_to_the_target(tmp_path):
    """The script's evict function, run for real on a fake blob store."""
    limit = tmp_path / "limit"
    limit.write_text("1000\n")  # KiB
    script = plan.supervisor_script().replace(plan.STORAGE, str(tmp_path / "store"))
    script = script.replace(plan.LIMIT_PATH, str(limit))
    evict = script[script.index("evict() {") : script.index("( while")]
    blobs = tmp_path / "store/docker/registry/v2/blobs/sha256"
    for index in range(4):  # 4 x 400 KiB, oldest first: 1.6 MiB over a 1000 KiB limit
        blob = blobs / f"0{index}" / f"{index:064d}"
        blob.mkdir(parents=True)
        (blob / "data").write_bytes(b"x" * 400 * 1024)
        subprocess.run(["touch", "-d", f"@{1000 + index}", str(blob / "data")], check=True)
    prelude = script[: script.index("evict() {")]
    ran = subprocess.run(
        ["sh", "-c", prelude + evict + "evict"], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    left = sorted(p.name for p in blobs.glob("*/*"))
    assert left == [f"{2:064d}", f"{3:064d}"]  # the two oldest went
    assert "evicted" in ran.stderr


def test_stats_parse_the_registry_counters_and_the_size():
    output = (
        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
        + json.dumps(
            {
                "registry": {
                    "proxy": {
                        "blobs": {"Hits": 9, "Misses": 2, "BytesPulled": 100, "BytesPushed": 900},
                        "manifests": {"Hits": 9, "Misses": 1, "BytesPulled": 5, "BytesPushed": 50},
                    }
                }
            }
        )
        + "\ndockyard-size-kb:12\ndockyard-limit-kb:2048\n"
    )
    stats = plan.parse_stats(output)
    assert (stats.hits, stats.misses, stats.bytes_pulled, stats.size) == (18, 3, 105, 12288)
    assert stats.max_size == 2 * 1024**2
    assert stats.running
    down = plan.parse_stats("bash: connect: Connection refused\ndockyard-size-kb:4\n")
    assert not down.running
    assert down.size == 4096


@pytest.mark.parametrize(
    ("log", "what"),
    [
        (
            'panic: Get "http://up:5000/v2/": dial tcp: lookup up on 127.0.0.11:53: no such host',
            "cannot reach its upstream",
        ),
        (
            'level=error msg="response completed with error" err.code=unauthorized',
            "was refused by its upstream (credentials)",
        ),
        ("write /var/lib/docker-registry/x: no space left on device", "has a full storage volume"),
    ],
)
def test_the_cause_is_read_from_the_cache_log(log, what):
    found = plan.diagnose('level=info msg="debug server listening 127.0.0.1:5001"\n' + log)
    assert found is not None
    assert found[0] == what


def test_a_cause_from_before_the_last_start_no_longer_counts():
    log = 'panic: dial tcp: connection refused\nlevel=info msg="debug server listening"\nok\n'
    assert plan.diagnose(log) is None


def test_mirror_config_refuses_bad_input():
    with pytest.raises(config.DockyardError, match="upstream"):
        config.validate(MirrorConfig, {"upstream": "ftp://x"})
    with pytest.raises(config.DockyardError, match="username"):
        config.validate(MirrorConfig, {"upstream": "http://x", "password_env": "T"})
    with pytest.raises(config.DockyardError, match="not both"):
        config.validate(
            MirrorConfig,
            {"upstream": "http://x", "username": "u", "password_env": "T", "password_file": "/p"},
        )
    with pytest.raises(config.DockyardError, match="max_size"):
        config.validate(MirrorConfig, {"upstream": "http://x", "max_size": "lots"})
    assert config.validate(MirrorConfig, {"upstream": "http://x/"}).upstream == "http://x"


def test_the_upstream_access_log_counts_blob_downloads():
    digest = "sha256:" + "a" * 64
    log = (
        f'1.2.3.4 - - [x] "GET /v2/library/t/blobs/{digest} HTTP/1.1" 200 1000 "" "Go"\n'
        f'1.2.3.4 - - [x] "GET /v2/library/t/blobs/{digest} HTTP/1.1" 200 1000 "" "Go"\n'
        f'1.2.3.4 - - [x] "HEAD /v2/library/t/blobs/{digest} HTTP/1.1" 200 0 "" "Go"\n'
        '1.2.3.4 - - [x] "GET /v2/library/t/manifests/1 HTTP/1.1" 200 500 "" "Go"\n'
    )
    assert upstream.downloads(log) == {f"library/t@{digest}": 2}
    assert upstream.served(log) == {f"library/t@{digest}": 2000}


BASIC = "HTTP/1.0 401 Unauthorized\nWww-Authenticate: Basic realm=x"


@pytest.mark.parametrize(
    ("output", "code", "credentials", "what"),
    [
        ("@plain\nHTTP/1.0 200 OK\n", 0, False, None),
        (
            '@plain\nHTTP/1.0 401 Unauthorized\nWww-Authenticate: Bearer realm="https://t"',
            0,
            True,
            None,
        ),
        ("bash: connect: Connection refused\n", 1, False, "cannot reach its upstream"),
        (f"@plain\n{BASIC}\n", 0, False, "needs credentials for its upstream"),
        (
            f"@plain\n{BASIC}\n@auth\n{BASIC}\n",
            0,
            True,
            "was refused by its upstream (credentials)",
        ),
        (f"@plain\n{BASIC}\n@auth\nHTTP/1.0 200 OK\n", 0, True, "cannot log in to its upstream"),
    ],
)
def test_the_upstream_probe_names_credential_trouble(output, code, credentials, what):
    found = plan.judge_probe(output, code, credentials=credentials)
    assert (found[0].split(":")[0] if found else None) == what


def test_the_probe_reads_credentials_from_a_file_and_skips_https():
    command = plan.probe_command("http://up:5000")
    assert command is not None
    assert plan.AUTH_PATH in command[-1]
    assert "/dev/tcp/up/5000" in command[-1]
    assert plan.probe_command("https://registry-1.docker.io") is None
    files = plan.files(MirrorConfig(upstream="http://up:5000", username="ci"), "pw")
    assert files[plan.AUTH_PATH] == b"Y2k6cHc="  # base64 ci:pw
