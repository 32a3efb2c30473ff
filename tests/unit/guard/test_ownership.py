"""Owner identity and the settling of needs, against scripted lookups."""

import asyncio
import socket

import pytest

from dockyard.guard import ownership
from dockyard.guard.escapes import HOST_PATH, Need

ALICE_ID = "a" * 64


class Script:
    """Lookups answering from a table of path -> (status, body); counts calls."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    async def get_json(self, path):
        self.calls.append(path)
        answer = self.answers.get(path, (404, {"message": "no such object"}))
        if isinstance(answer, Exception):
            raise answer
        return answer


def owned(owner):
    return {"Id": ALICE_ID, "Config": {"Labels": {"io.dockyard.owner": owner}}}


def settle(answers, needs, owner="alice", allow_bind=()):
    script = Script(answers)
    resolver = ownership.Resolver(script, allow_bind)  # type: ignore[arg-type]
    return asyncio.run(resolver.settle(needs, owner)), script, resolver


def test_names_resolve_to_ids_and_foreign_objects_are_denied():
    answers = {"/containers/web/json": (200, owned("alice"))}
    result, _, _ = settle(answers, [Need("container", "web")])
    assert result.ok
    assert result.ids == {("container", "web"): ALICE_ID}
    result, _, _ = settle(answers, [Need("container", "web")], owner="bob")
    assert not result.ok
    assert "another owner" in result.reason


@pytest.mark.parametrize("answer", [(500, {}), (200, "not an object"), OSError("boom")])
def test_a_failed_lookup_denies(answer):
    result, _, _ = settle({"/containers/web/json": answer}, [Need("container", "web")])
    assert not result.ok


def test_missing_objects_deny_unless_dockerd_would_create_them():
    assert not settle({}, [Need("container", "gone")])[0].ok
    assert settle({}, [Need("volume", "new", missing_ok=True)])[0].ok


def test_exec_ids_map_to_their_container():
    answers = {
        f"/exec/{'e' * 64}/json": (200, {"ContainerID": ALICE_ID}),
        f"/containers/{ALICE_ID}/json": (200, owned("alice")),
    }
    assert settle(answers, [Need("exec", "e" * 64)])[0].ok
    assert not settle(answers, [Need("exec", "e" * 64)], owner="bob")[0].ok


def test_full_ids_are_looked_up_once_names_every_time():
    answers = {
        f"/containers/{ALICE_ID}/json": (200, owned("alice")),
        "/containers/web/json": (200, owned("alice")),
    }
    script = Script(answers)
    resolver = ownership.Resolver(script)  # type: ignore[arg-type]
    for _ in range(3):
        assert asyncio.run(resolver.settle([Need("container", ALICE_ID)], "alice")).ok
        assert asyncio.run(resolver.settle([Need("container", "web")], "alice")).ok
    assert script.calls.count(f"/containers/{ALICE_ID}/json") == 1
    assert script.calls.count("/containers/web/json") == 3


def test_image_tags_belong_to_their_builder_or_tagger():
    base = {"Id": "sha256:1", "Config": {"Labels": None}}
    answers = {
        "/images/app%3A1/json": (200, owned("alice")),
        "/images/mine/json": (200, base),
    }
    assert settle(answers, [Need("image", "app:1")])[0].ok
    assert not settle(answers, [Need("image", "app:1")], owner="bob")[0].ok
    _, _, resolver = settle(answers, [])
    assert not asyncio.run(resolver.settle([Need("image", "mine")], "alice")).ok
    resolver.tags.record("alice", ["mine"])
    assert asyncio.run(resolver.settle([Need("image", "mine")], "alice")).ok
    # a stamped image is its builder's, whatever anyone tagged
    resolver.tags.record("bob", ["app:1"])
    assert not asyncio.run(resolver.settle([Need("image", "app:1")], "bob")).ok


def test_a_pulled_tag_is_absent_unclaimed_or_the_pullers():
    base = {"Id": "sha256:1", "Config": {"Labels": None}}
    answers = {
        "/images/built%3A1/json": (200, owned("alice")),
        "/images/base%3A1/json": (200, base),
        "/images/tagged%3A1/json": (200, base),
    }

    def pull(tag):
        return Need("image", tag, missing_ok=True, unclaimed_ok=True)

    _, _, resolver = settle(answers, [])
    resolver.tags.record("alice", ["tagged:1"])

    def ok(tag, owner):
        return asyncio.run(resolver.settle([pull(tag)], owner)).ok

    assert ok("absent:1", "bob")
    assert ok("base:1", "bob")  # a shared base image
    assert ok("base:1", "alice")
    assert ok("built:1", "alice")
    assert not ok("built:1", "bob")  # stamped by its builder
    assert ok("tagged:1", "alice")
    assert not ok("tagged:1", "bob")  # unlabelled, but alice tagged it here
    refusal = asyncio.run(resolver.settle([pull("built:1")], "bob"))
    assert refusal.status == 403
    assert "belongs to another owner" in refusal.reason
    # without unclaimed_ok (image.tag, image.delete) an unclaimed image is nobody's
    assert not asyncio.run(resolver.settle([Need("image", "base:1", True)], "bob")).ok
    # a recorded tag found gone (removed by ID, or outside the guard) is nobody's any more
    resolver.tags.record("alice", ["gone:1"])
    assert ok("gone:1", "bob")
    assert not resolver.tags.owns("alice", "gone:1")


def test_host_paths_are_resolved_through_symlinks(tmp_path):
    allowed = tmp_path / "ci"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/")
    need = Need(HOST_PATH, str(allowed / "escape"), missing_ok=True)
    result, _, _ = settle({}, [need], allow_bind=(str(allowed),))
    assert not result.ok
    assert "resolves to '/'" in result.reason
    inside = Need(HOST_PATH, str(allowed / "job"), missing_ok=True)
    assert settle({}, [inside], allow_bind=(str(allowed),))[0].ok


def test_identity_prefers_listener_then_certificate_then_uid():
    assert ownership.identify("job1", None, None) == "job1"
    cert = {"subject": ((("commonName", "runner 7"),),)}

    class FakeTLS:
        def getpeercert(self):
            return cert

    assert ownership.identify(None, FakeTLS(), None) == "runner_7"  # type: ignore[arg-type]
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert ownership.identify(None, None, left).startswith("uid-")


@pytest.mark.parametrize(
    ("kind", "answer", "learned"),
    [
        ("container", b'{"Id": "%s", "Warnings": []}' % ALICE_ID.encode(), True),
        ("exec", b'{"Id": "%s"}' % ALICE_ID.encode(), True),
        ("container", b'{"Id": "short"}', False),  # only full IDs, which are never reused
        ("container", b"not json", False),
        ("container", b"[1, 2]", False),
    ],
)
def test_what_a_client_created_needs_no_lookup_to_be_its_own(kind, answer, learned):
    script = Script({})
    resolver = ownership.Resolver(script)  # type: ignore[arg-type]
    resolver.created(kind, answer, "alice")
    mine = asyncio.run(resolver.settle([Need(kind, ALICE_ID)], "alice"))
    theirs = asyncio.run(resolver.settle([Need(kind, ALICE_ID)], "bob"))
    assert (mine.ok, bool(script.calls)) == (learned, not learned)
    assert not theirs.ok


class Engine(Script):
    """Scripted lookups that also create volumes (as dockerd: an existing one is returned)."""

    async def request_json(self, method, path, body=None):
        if method == "GET":
            return await self.get_json(path)
        self.calls.append((method, path, body))
        name = body["Name"]
        existing = self.answers.get(f"/volumes/{name}")
        if existing is None:
            made = {"Name": name, "Labels": body["Labels"], "Options": body["DriverOpts"]}
            self.answers[f"/volumes/{name}"] = (200, made)
            return 201, made
        return 201, existing[1]


def test_a_missing_volume_a_create_mounts_is_made_owned_first():
    engine = Engine({})
    resolver = ownership.Resolver(engine, stamp={"io.dockyard.managed": "true"})  # type: ignore[arg-type]
    need = Need("volume", "cache", missing_ok=True, create=(("type", "tmpfs"),))
    assert asyncio.run(resolver.settle([need], "alice")).ok
    assert engine.calls[-1] == (
        "POST",
        "/volumes/create",
        {
            "Name": "cache",
            "Labels": {"io.dockyard.managed": "true", "io.dockyard.owner": "alice"},
            "DriverOpts": {"type": "tmpfs"},
        },
    )
    # now it exists, alice's: reused by her, refused to bob
    assert asyncio.run(resolver.settle([need], "alice")).ok
    denied = asyncio.run(resolver.settle([need], "bob"))
    assert not denied.ok
    assert "another owner" in denied.reason


def test_a_volume_made_by_another_owner_meanwhile_is_refused():
    engine = Engine({})
    resolver = ownership.Resolver(engine)  # type: ignore[arg-type]

    async def race(method, path, body=None):
        return 201, {"Name": body["Name"], "Labels": {"io.dockyard.owner": "bob"}}

    engine.request_json = race  # type: ignore[method-assign]
    result = asyncio.run(resolver.settle([Need("volume", "v", True, create=())], "alice"))
    assert not result.ok
    assert "belongs to another owner" in result.reason


def test_a_volume_name_reused_by_another_owner_does_not_inherit_the_old_owner():
    """Volume names (even 64 hex digits) can be made again: their owner is never cached."""
    name = "c" * 64
    answers = {f"/volumes/{name}": (200, {"Name": name, "Labels": {"io.dockyard.owner": "alice"}})}
    script = Script(answers)
    resolver = ownership.Resolver(script)  # type: ignore[arg-type]
    assert asyncio.run(resolver.settle([Need("volume", name)], "alice")).ok
    answers[f"/volumes/{name}"] = (200, {"Name": name, "Labels": {"io.dockyard.owner": "bob"}})
    assert not asyncio.run(resolver.settle([Need("volume", name)], "alice")).ok


def test_an_anonymous_volume_belongs_to_the_owner_of_the_containers_using_it():
    name = "d" * 64
    users = f"/containers/json?all=1&filters=%7B%22volume%22%3A%20%5B%22{name}%22%5D%7D"
    answers = {
        f"/volumes/{name}": (200, {"Name": name, "Labels": None}),
        users: (200, [{"Labels": {"io.dockyard.owner": "alice"}}]),
    }
    assert settle(answers, [Need("volume", name)])[0].ok
    assert not settle(answers, [Need("volume", name)], owner="bob")[0].ok
    answers[users] = (200, [])  # no container uses it any more: nobody's
    assert not settle(answers, [Need("volume", name)])[0].ok
    answers[users] = (200, [{"Labels": {"io.dockyard.owner": "alice"}}, {"Labels": {}}])
    assert not settle(answers, [Need("volume", name)])[0].ok
    named = {"/volumes/data": (200, {"Name": "data", "Labels": {}})}
    assert not settle(named, [Need("volume", "data")])[0].ok  # a host's own volume
