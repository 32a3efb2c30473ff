"""Tags put on shared (unlabelled) images: their maker's to move or delete, across restarts."""

from __future__ import annotations

import contextlib

import pytest

from dockyard.guard.tagbook import TagBook

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(("tagger", "remover"), [("28", "20.10"), ("20.10", "28")])
def test_a_restarted_guard_still_knows_who_tagged_a_base_image(
    guard_factory, owners, docker_client, base_image, tmp_path, tagger, remover
):
    """The two CLIs name the tag differently (``docker.io/...`` or not): one tag to dockerd."""
    alice, bob = owners
    records = tmp_path / "tags.json"
    ref = f"dockyard-test/tagged:{alice}"
    try:
        first = guard_factory(owners, tags=TagBook(records))
        first.docker(alice, "tag", base_image, ref, cli=tagger)
        first.stop()
        again = guard_factory(owners, tags=TagBook(records))
        denied = again.docker(bob, "rmi", ref, check=False, cli=remover)
        assert b"belongs to another owner" in denied.stderr, denied.stderr
        again.docker(alice, "rmi", ref, cli=remover)
        assert not docker_client.images.list(name=ref)
        # removed: nobody holds the tag any more, and the record says so
        assert not TagBook(records).owns(alice, ref)
    finally:
        with contextlib.suppress(Exception):
            docker_client.api.remove_image(ref)
