"""Pool configs: defaults, validation, and errors that name file:line and the field."""

from __future__ import annotations

import pytest

from dockyard.errors import DockyardError
from dockyard.pool import api
from dockyard.pool import config as pool_config


def test_without_a_file_there_is_one_default_pool():
    (pool,) = pool_config.load(None)
    assert (pool.name, pool.warm, pool.max, pool.cache) == ("default", 2, 8, "ephemeral")
    assert pool.network_name == "dockyard-pool-default"


def test_a_file_is_read_with_durations_and_sizes(tmp_path):
    path = tmp_path / "pools.yaml"
    path.write_text(
        "pools:\n  - name: ci\n    ttl: 30m\n    memory: 2g\n"
        "  - name: builds\n    cache: keyed\n    warm: 0\n    keyed: {max_age: 2d}\n"
    )
    ci, builds = pool_config.load(path)
    assert ci.ttl == 1800
    assert ci.memory == 2 * 1024**3
    assert builds.keyed.max_age == 2 * 86400
    assert builds.spec().cache == "keyed"


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("pools:\n  - name: ci\n    warm: 9\n    max: 8\n", ":2:", "warm (9) is more than max"),
        ("pools:\n  - name: b\n    cache: keyed\n", ":2:", "warm: 0"),
        ("pools:\n  - name: ci\n    ttl: soon\n", ":3:", "invalid duration"),
        ("pools:\n  - name: Bad_Name\n", ":2:", "pool name"),
        ("pools:\n  - name: ci\n  - name: ci\n", ":1:", "ci repeated"),
        ("pools:\n  - name: ci\n    colour: red\n", ":3:", "colour"),
    ],
)
def test_bad_files_name_the_line_and_field(tmp_path, text, where, words):
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    with pytest.raises(DockyardError) as caught:
        pool_config.load(path)
    assert f"{path}{where}" in caught.value.message
    assert words in caught.value.message


def test_durations():
    assert pool_config.parse_duration("90") == 90
    assert pool_config.parse_duration("1h") == 3600
    assert pool_config.parse_duration("0s", allow_zero=True) == 0
    with pytest.raises(ValueError, match="more than zero"):
        pool_config.parse_duration("0")


def test_the_openapi_document_describes_every_route_and_resolves_its_refs():
    document = api.OPENAPI
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/leases",
        "/leases/{id}",
        "/leases/{id}/renew",
        "/pools",
        "/healthz",
        "/openapi.json",
    }
    schemas = document["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas


def test_a_pool_names_its_mirror_and_seed(tmp_path):
    path = tmp_path / "pools.yaml"
    path.write_text(
        "pools:\n  - name: ci\n    mirror: {upstream: 'https://hub.example/', max_size: 20g}\n"
        "    seed: [debian:12, python:3.12]\n"
    )
    (ci,) = pool_config.load(path)
    assert ci.mirror is not None
    assert ci.mirror.upstream == "https://hub.example"
    assert ci.mirror.max_size == 20 * 1024**3
    assert ci.seed == ("debian:12", "python:3.12")


def test_a_bad_mirror_or_seed_names_its_line(tmp_path):
    path = tmp_path / "pools.yaml"
    path.write_text("pools:\n  - name: ci\n    seed: ['Not An Image']\n")
    with pytest.raises(DockyardError, match=r"pools.yaml:3: .*invalid seed image"):
        pool_config.load(path)
    path.write_text("pools:\n  - name: ci\n    mirror:\n      upstream: hub.example\n")
    with pytest.raises(DockyardError, match=r"pools.yaml:4: .*invalid mirror upstream"):
        pool_config.load(path)


def test_insecure_registries_are_checked_like_engine_create(tmp_path):
    path = tmp_path / "pools.yaml"
    path.write_text("pools:\n  - name: ci\n    insecure_registries: [10.96.0.7:5000]\n")
    (pool,) = pool_config.load(path)
    assert pool.insecure_registries == ("10.96.0.7:5000",)
    path.write_text("pools:\n  - name: ci\n    insecure_registries: ['http://r:5000']\n")
    with pytest.raises(DockyardError, match="invalid insecure registry 'http://r:5000'"):
        pool_config.load(path)
