"""The builder against the real engine, and its reading of the host's apt sources."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from dockyard import labels
from dockyard.errors import DockyardError
from dockyard.images import builder, recipes


@pytest.mark.docker
def test_ensure_base_builds_once_and_runs(docker_client) -> None:
    ref = builder.ensure("base")
    assert ref == recipes.recipe("base").ref
    image = docker_client.images.get(ref)
    assert image.labels[labels.RECIPE] == recipes.recipe_hash(recipes.recipe("base"))
    output = docker_client.containers.run(
        ref,
        ["sh", "-c", "echo hello > /tmp/out && cat /tmp/out"],
        remove=True,
        labels=labels.managed("test"),
    )
    assert output == b"hello\n"
    again = builder.build("base")
    assert again == builder.BuildResult(ref, built=False, seconds=again.seconds)


@pytest.mark.docker
def test_forced_build_replaces_the_old_image(docker_client) -> None:
    # A private copy of the base recipe: rebuilding the shared image would pull it from under
    # tests running in parallel.
    private = replace(recipes.recipe("base"), image=f"dockyard-test/base-{secrets.token_hex(3)}")
    try:
        before = docker_client.images.get(builder.build_recipe(private).image).id
        steps: list[str] = []
        result = builder.build_recipe(private, force=True, progress=steps.append)
        assert result.built
        assert steps[-1] == f"import image {result.image}"
        assert docker_client.images.get(result.image).id != before
        assert before not in {image.id for image in docker_client.images.list(all=True)}
    finally:
        docker_client.api.remove_image(private.ref, force=True)


def test_unknown_role_fails_before_touching_anything() -> None:
    with pytest.raises(DockyardError, match="no image recipe"):
        builder.build("nope")


def test_mirror_from_deb822_skips_disabled_and_other_suites(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n"
        "Enabled: no\n\n"
        "# security first\nTypes: deb\nURIs: http://sec.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src deb\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: contrib main\n"
    )
    assert builder.debian_mirror(apt_dir=tmp_path) == "http://mirror.example/debian"


def test_mirror_from_one_line_list_with_options(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main contrib\n"
    )
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "z.list.disabled").write_text(
        "deb http://disabled.example/debian bookworm main\n"
    )
    assert builder.debian_mirror(apt_dir=tmp_path) == "http://list.example/debian"


def test_mirror_falls_back_to_debian(tmp_path: Path) -> None:
    assert builder.debian_mirror(apt_dir=tmp_path) == builder.FALLBACK_MIRROR
