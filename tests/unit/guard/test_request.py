"""Requests routed as dockerd's gorilla/mux routes them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.guard.request import (
    ROUTES,
    UNKNOWN,
    RequestError,
    canonicalize,
    clean_path,
    parse_query,
    parse_version,
    route,
)


@pytest.mark.parametrize(
    ("target", "version"),
    [("/containers/create", None), ("/v1.41/containers/create", (1, 41)),
     ("/v1.41.0/containers/create", (1, 41)), ("/v1.041/containers/create", (1, 41)),
     ("/v01.41/containers/create", (1, 41)), ("/v1/containers/create", (1,)),
     ("/v1./containers/create", (1,)), ("/v.1/containers/create", (0, 1)),
     ("/v./containers/create", (0,)), ("/v1..41/containers/create", (1, 0, 41)),
     ("/%63ontainers/create", None), ("/v1.41/%63ontainers/%63reate", (1, 41)),
     ("/containers/create?x=/images/json", None),
     ("/containers/create?name=../../images/load", None),
     ("/v1.44/containers/create?name=web&platform=linux%2Famd64", (1, 44))],
)  # fmt: skip
def test_every_form_of_container_create(target, version):
    request = canonicalize("POST", target)
    assert request.endpoint == "container.create"
    assert request.path == "/containers/create"
    assert request.version == version


@pytest.mark.parametrize(
    "target",
    [
        "//containers/create",
        "/v1.41//containers/create",
        "/v1.41/containers/../containers/create",
        "/containers/./create",
        "/containers/create/.",
        "/images/../containers/create",
        "/%2e%2e/containers/create",
        "/containers%2F..%2Fcontainers/create",
        "/v1.41/./containers/create",
        "/containers/x/../create",
    ],
)
def test_unclean_paths_are_rejected_because_dockerd_redirects_them(target):
    with pytest.raises(RequestError, match="not clean"):
        canonicalize("POST", target)


@pytest.mark.parametrize(
    ("method", "target", "reason"),
    [
        ("POST", "/containers/%zzcreate", "percent"),
        ("POST", "/containers/%2", "percent"),
        ("POST", "/containers/create?a=%zz", "percent"),
        ("POST", "/build?networkmode=host;x=1", "semicolon"),
        ("POST", "containers/create", "absolute"),
        ("OPTIONS", "*", "absolute"),
        ("POST", "http://docker/containers/create", "absolute"),
        ("POST", "/containers/create#x", "'#'"),
        ("POST", b"/containers/cr\xc3\xa9ate", "non-ASCII"),
        ("POST", "/containers/\x00", "control"),
        ("POST", "/containers/%00/json", "control"),
        ("POST", "/containers/%ff/json", "UTF-8"),
        ("POST", "/containers/create?name=%ff", "UTF-8"),
        ("POST", "/a b", "control"),
    ],
)
def test_targets_go_could_read_differently_are_rejected(method, target, reason):
    with pytest.raises(RequestError, match=reason):
        canonicalize(method, target)


@pytest.mark.parametrize(
    ("method", "target", "endpoint", "kind", "ref"),
    [
        ("GET", "/containers/json", "container.list", None, None),
        ("GET", "/v1.41/containers/abc/json", "container.inspect", "container", "abc"),
        ("GET", "/containers/a/b/json", "container.inspect", "container", "a/b"),
        ("GET", "/containers/a%2Fb/logs", "container.logs", "container", "a/b"),
        ("POST", "/containers/web/exec", "container.exec", "container", "web"),
        ("POST", "/exec/123/start", "exec.start", "exec", "123"),
        ("GET", "/exec/123/json", "exec.inspect", "exec", "123"),
        ("PUT", "/containers/web/archive", "container.archive.put", "container", "web"),
        ("HEAD", "/containers/web/archive", "container.archive.head", "container", "web"),
        ("DELETE", "/containers/web", "container.delete", "container", "web"),
        ("DELETE", "/containers/web/checkpoints/c1", "checkpoint.delete", "container", "web"),
        (
            "POST",
            "/images/reg.io:5000/team/app:1.0/push",
            "image.push",
            "image",
            "reg.io:5000/team/app:1.0",
        ),
        ("POST", "/images/app/tag", "image.tag", "image", "app"),
        ("DELETE", "/images/reg.io/app:1", "image.delete", "image", "reg.io/app:1"),
        ("GET", "/images/app/json", "image.inspect", "image", "app"),
        ("POST", "/build", "build", None, None),
        ("POST", "/session", "session", None, None),
        ("POST", "/grpc", "grpc", None, None),
        ("GET", "/_ping", "system.ping", None, None),
        ("HEAD", "/_ping", "system.ping", None, None),
        ("GET", "/v1.41/info", "system.info", None, None),
        ("GET", "/networks/", "network.list", None, None),
        ("GET", "/networks/n1", "network.inspect", "network", "n1"),
        ("POST", "/networks/n1/connect", "network.connect", "network", "n1"),
        ("PUT", "/volumes/v1", "volume.update", "volume", "v1"),
        ("POST", "/services/s1/update", "service.update", "service", "s1"),
        (
            "POST",
            "/plugins/vieux/sshfs:latest/enable",
            "plugin.enable",
            "plugin",
            "vieux/sshfs:latest",
        ),
        ("OPTIONS", "/anything/at/all", "system.options", None, None),
    ],
)
def test_routes(method, target, endpoint, kind, ref):
    request = canonicalize(method, target)
    assert (request.endpoint, request.kind, request.ref) == (endpoint, kind, ref)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("post", "/containers/create"),
        ("GET", "/containers/create"),
        ("PATCH", "/containers/x/update"),
        ("HEAD", "/containers/json"),
        ("POST", "/containers/create/"),
        ("POST", "/v1.41"),
        ("GET", "/v1.41/"),
        ("GET", "/v/containers/json"),
        ("GET", "/vx1/containers/json"),
        ("POST", "/CONTAINERS/create"),
        ("GET", "/services/a/b"),
        ("GET", "/"),
    ],
)
def test_what_dockerd_does_not_serve_is_unknown(method, target):
    assert canonicalize(method, target).endpoint == UNKNOWN


def test_query_never_affects_routing():
    request = canonicalize("GET", "/containers/json?path=/containers/create&all=1")
    assert request.endpoint == "container.list"
    assert request.params("path") == ("/containers/create",)


def test_query_parsed_like_go():
    assert parse_query("a=1&a=2&b&&c=x+y%2Bz&=v&t=%E2%9C%93") == (
        ("a", "1"), ("a", "2"), ("b", ""), ("c", "x y+z"), ("", "v"), ("t", "\u2713"),
    )  # fmt: skip
    request = canonicalize("POST", "/build?t=a&t=b&networkmode=bridge")
    assert request.param("t") == "a"
    assert request.params("t") == ("a", "b")
    assert request.param("missing") is None


def test_path_plus_is_not_a_space():
    assert canonicalize("GET", "/images/a+b/json").ref == "a+b"


@pytest.mark.parametrize(
    ("path", "clean"),
    [("", "/"), ("/", "/"), ("//", "/"), ("/a//b", "/a/b"), ("/a/./b/", "/a/b/"),
     ("/a/../../b", "/b"), ("a/b", "/a/b"), ("/a/b/..", "/a"), ("/..", "/")],
)  # fmt: skip
def test_clean_path_matches_gorilla(path, clean):
    assert clean_path(path) == clean


@pytest.mark.parametrize(
    ("text", "version"),
    [("1.41", (1, 41)), ("1.41.0.0", (1, 41)), ("1", (1,)), ("0", (0,)), ("", (0,)),
     ("1.99999999999999999999", (1, 2**63 - 1))],
)  # fmt: skip
def test_versions_compare_like_dockerd(text, version):
    assert parse_version(text) == version


def test_route_table_has_no_duplicate_method_and_template():
    keys = [(route.method, route.template) for route in ROUTES]
    assert len(keys) == len(set(keys))


def _first_route_by_scan(method: str, path: str):
    """The definition: the first route in registration order whose pattern matches."""
    return next((r for r in ROUTES if r.method == method and r.pattern.fullmatch(path)), None)


_SEGMENTS = st.sampled_from(
    ["containers", "images", "exec", "networks", "_ping", "json", "create", "abc", "x:y", "",
     "debug", "pprof", "vars", "grpc", "session", "plugins", "swarm", "nodes", "a b"]
)  # fmt: skip


@given(
    method=st.sampled_from(sorted({r.method for r in ROUTES} | {"PATCH"})),
    segments=st.lists(_SEGMENTS, min_size=1, max_size=5),
)
def test_the_route_index_picks_what_a_scan_of_every_route_picks(method, segments):
    path = "/" + "/".join(segments)
    found, _ = route(method, path)
    assert found is _first_route_by_scan(method, path)
