"""The guard's record of who made which image tag, in memory and in its file."""

from __future__ import annotations

import json
import stat

import pytest

from dockyard.errors import DockyardError
from dockyard.guard import tagbook
from dockyard.guard.tagbook import TagBook, normalize_tag


@pytest.mark.parametrize(
    ("ref", "tag"),
    [("app", "docker.io/library/app:latest"), ("app:1", "docker.io/library/app:1"),
     ("library/app:1", "docker.io/library/app:1"),
     ("docker.io/library/app:1", "docker.io/library/app:1"),
     ("index.docker.io/foo/app", "docker.io/foo/app:latest"), ("foo/app:2", "docker.io/foo/app:2"),
     ("localhost:5000/app", "localhost:5000/app:latest"), ("localhost/app:3", "localhost/app:3"),
     ("registry.example/team/app:4", "registry.example/team/app:4"),
     ("app@sha256:ab", "docker.io/library/app@sha256:ab"),
     ("registry.example:5000/app:5@sha256:ab", "registry.example:5000/app:5@sha256:ab")],
)  # fmt: skip
def test_normalize_tag(ref, tag):
    assert normalize_tag(ref) == tag


def test_tags_are_their_makers_until_removed():
    book = TagBook()
    book.record("alice", ["app", "", "tools:1"])
    assert book.owns("alice", "app:latest")
    assert book.owns("alice", "tools:1")
    assert not book.owns("bob", "app")
    assert book.claimed_by_another("bob", "app")
    assert not book.claimed_by_another("alice", "app")
    book.forget("alice", "app")
    assert not book.owns("alice", "app")
    assert not book.claimed_by_another("bob", "app")
    book.forget("bob", "tools:1")  # not bob's to forget
    assert book.owns("alice", "tools:1")


def test_a_tag_found_gone_is_nobodys(tmp_path):
    book = TagBook(tmp_path / "tags.json")
    book.record("alice", ["app:1", "app:2"])
    book.record("bob", ["app:1"])
    book.gone("docker.io/library/app:1")
    assert not book.claimed_by_another("carol", "app:1")
    assert book.owns("alice", "app:2")
    assert not TagBook(tmp_path / "tags.json").owns("alice", "app:1")


def test_a_restarted_guard_reads_the_tags_back(tmp_path):
    path = tmp_path / "guard" / "tags.json"
    TagBook(path).record("alice", ["app:1", "app:2"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = TagBook(path)
    assert again.owns("alice", "app:1")
    again.forget("alice", "app:1")
    assert not TagBook(path).owns("alice", "app:1")
    assert TagBook(path).owns("alice", "app:2")


def test_unchanged_records_are_not_written_again(tmp_path):
    path = tmp_path / "tags.json"
    book = TagBook(path)
    book.record("alice", ["app:1"])
    path.unlink()
    book.record("alice", ["app:1"])
    book.forget("alice", "other:1")
    assert not path.exists()


def test_the_oldest_tags_go_past_the_limit(monkeypatch):
    monkeypatch.setattr(tagbook, "LIMIT", 3)
    book = TagBook()
    book.record("alice", ["a:1", "b:1", "c:1"])
    book.record("alice", ["a:1"])  # made again: now the newest
    book.record("alice", ["d:1"])
    assert [book.owns("alice", tag) for tag in ("a:1", "b:1", "c:1", "d:1")] == [
        True, False, True, True,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", '{"format": 2, "owners": {}}', '{"format": 1, "owners": {"a": "x:1"}}',
     '{"format": 1, "owners": {"a": [1]}}'],
)  # fmt: skip
def test_a_broken_file_is_an_error_naming_it_and_stays_as_it_was(tmp_path, text):
    path = tmp_path / "tags.json"
    path.write_text(text)
    with pytest.raises(DockyardError) as caught:
        TagBook(path)
    assert str(path) in str(caught.value)
    assert path.read_text() == text


def test_the_file_is_plain_json_listing_tags_oldest_first(tmp_path):
    path = tmp_path / "tags.json"
    TagBook(path).record("alice", ["b:1", "a:1"])
    owners = {"alice": ["docker.io/library/b:1", "docker.io/library/a:1"]}
    assert json.loads(path.read_text()) == {"format": 1, "owners": owners}
