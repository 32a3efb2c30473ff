"""The image recipes are pure data: their hash must be stable and track every change."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from ruamel.yaml import YAML

from dockyard import labels
from dockyard.errors import DockyardError
from dockyard.images import recipes
from dockyard.images.recipes import Recipe, import_changes, recipe, recipe_hash


@pytest.mark.parametrize("role", recipes.ROLES)
def test_every_role_has_a_labelled_recipe(role: str) -> None:
    found = recipe(role)
    assert found.role == role
    assert found.ref == f"dockyard/{role}:{recipes.TAG}"
    assert found.labels == labels.own(labels.ROLE_IMAGE, image_role=role)
    assert "/usr/bin" in found.env["PATH"]


def test_roles_are_the_five_images() -> None:
    assert set(recipes.ROLES) == {"base", "engine", "registry", "agent", "buildbot"}


def test_tag_is_the_dockyard_release() -> None:
    assert re.fullmatch(r"\d+\.\d+", recipes.TAG)


def test_unknown_role_names_the_known_ones() -> None:
    with pytest.raises(DockyardError, match="no image recipe") as caught:
        recipe("nope")
    assert "engine" in (caught.value.fix or "")


@pytest.mark.parametrize("role", recipes.ROLES)
def test_hash_is_stable(role: str) -> None:
    first = recipe_hash(recipe(role))
    assert first == recipe_hash(recipe(role))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)


def test_hashes_differ_between_roles() -> None:
    assert len({recipe_hash(recipe(role)) for role in recipes.ROLES}) == len(recipes.ROLES)


def test_package_order_does_not_matter() -> None:
    engine = recipe("engine")
    shuffled = replace(engine, packages=tuple(reversed(engine.packages)))
    assert recipe_hash(shuffled) == recipe_hash(engine)


@pytest.mark.parametrize(
    "change",
    [
        {"packages": ("docker.io",)},
        {"files": {"/etc/dockyard/registry.yml": (b"other", 0o644)}},
        {"files": {"/etc/dockyard/registry.yml": (b"x", 0o600)}},
        {"dirs": {"/srv": 0o755}},
        {"host_files": {"/bin/true": "/bin/true"}},
        {"cmd": ("sh",)},
        {"entrypoint": ("sh", "-c")},
        {"env": {"A": "1"}},
        {"workdir": "/srv"},
        {"ports": ("1/tcp",)},
        {"volumes": ("/data",)},
        {"labels": {"a": "b"}},
        {"tag": "9.9"},
    ],
)
def test_hash_tracks_every_field(change: dict[str, object]) -> None:
    plain = Recipe(role="r", image="i", files={"/etc/dockyard/registry.yml": (b"x", 0o644)})
    assert recipe_hash(replace(plain, **change)) != recipe_hash(plain)  # type: ignore[arg-type]


def test_hash_covers_suite_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    before = recipe_hash(recipe("base"))
    monkeypatch.setattr(recipes, "SUITE", "trixie")
    after_suite = recipe_hash(recipe("base"))
    monkeypatch.setattr(recipes, "RECIPE_FORMAT", recipes.RECIPE_FORMAT + 1)
    assert len({before, after_suite, recipe_hash(recipe("base"))}) == 3


def test_engine_runs_dockerd_on_a_data_volume() -> None:
    engine = recipe("engine")
    assert {"docker.io", "iptables", "ca-certificates", "procps"} <= set(engine.packages)
    assert engine.entrypoint == ("dockerd",)
    assert engine.volumes == ("/var/lib/docker",)
    assert engine.ports == ("2376/tcp",)


def test_registry_serves_its_own_config() -> None:
    registry = recipe("registry")
    assert registry.packages[0] == "docker-registry"
    assert registry.cmd is not None
    path = registry.cmd[-1]
    assert registry.cmd == ("/usr/bin/docker-registry", "serve", path)
    data, mode = registry.files[path]
    assert mode == 0o644
    config = YAML(typ="safe").load(data)
    assert config["http"]["addr"] == ":5000"
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/docker-registry"
    assert "auth" not in config
    assert registry.ports == ("5000/tcp",)


def test_agent_is_a_ci_client() -> None:
    agent = recipe("agent")
    assert {"docker.io", "git", "ca-certificates", "bash", "curl"} <= set(agent.packages)
    assert agent.cmd == ("sleep", "infinity")


def test_base_is_static_busybox_from_scratch() -> None:
    base = recipe("base")
    assert base.packages == ()
    assert base.busybox == "/bin/busybox"
    assert base.host_files == {"/bin/busybox": "/bin/busybox"}
    assert base.cmd == ("sh",)
    assert base.dirs["/tmp"] == 0o1777


def test_import_changes_carry_config_and_recipe_label() -> None:
    engine = recipe("engine")
    changes = import_changes(engine)
    assert 'ENTRYPOINT ["dockerd"]' in changes
    assert "EXPOSE 2376/tcp" in changes
    assert 'VOLUME ["/var/lib/docker"]' in changes
    assert not any(c.startswith("CMD") for c in changes)
    (label_line,) = [c for c in changes if c.startswith("LABEL ")]
    assert f'"{labels.RECIPE}"="{recipe_hash(engine)}"' in label_line
    assert f'"{labels.MANAGED}"="true"' in label_line


def test_import_changes_quote_values() -> None:
    changes = import_changes(Recipe(role="r", image="i", env={"A": 'x "y" z'}, workdir="/w"))
    assert 'ENV A="x \\"y\\" z"' in changes
    assert "WORKDIR /w" in changes


def test_hash_does_not_depend_on_who_builds(monkeypatch):
    """DOCKYARD_LABELS tags objects, not image content: a test run must not force rebuilds."""
    monkeypatch.delenv("DOCKYARD_LABELS", raising=False)
    plain = {role: recipes.recipe_hash(recipes.recipe(role)) for role in recipes.ROLES}
    monkeypatch.setenv("DOCKYARD_LABELS", "ci.job=42")
    assert {role: recipes.recipe_hash(recipes.recipe(role)) for role in recipes.ROLES} == plain


def test_buildbot_recipe_runs_master_and_worker_from_debian_packages() -> None:
    found = recipe("buildbot")
    assert found.ref == f"dockyard/buildbot:{recipes.TAG}"
    assert found.labels == labels.own(labels.ROLE_IMAGE, image_role="buildbot")
    assert {"buildbot", "buildbot-worker", "docker.io", "git", "ca-certificates", "curl"} <= set(
        found.packages
    )
    # debootstrap skips virtual packages: python3-pycparser's ply dependency is named.
    assert "python3-ply" in found.packages
    assert found.cmd == ("/usr/local/bin/dockyard-buildbot",)
    assert found.files["/usr/local/bin/dockyard-buildbot"][1] == 0o755
    assert "/etc/dockyard/buildbot/master.cfg" in found.files
    assert found.ports == ("8010/tcp",)
    assert found.volumes == ("/var/lib/buildbot",)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", recipe_hash(found))
    assert recipe_hash(found) == recipe_hash(recipe("buildbot"))


def test_image_recipes_import_nothing_above_the_images_layer():
    """Arrows point down: no recipe reaches up into stacks, presets or the CLI."""
    import ast
    from pathlib import Path

    for module in Path(recipes.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("dockyard.stack", "dockyard.cli")), module
