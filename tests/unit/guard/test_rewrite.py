"""What is forwarded: targets rebuilt from the canonical request, filters and stamps."""

import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from dockyard.guard import rewrite
from dockyard.guard.gojson import decode_object
from dockyard.guard.request import canonicalize

OWNED = "io.dockyard.owner=alice"


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/v1.41/containers/json?all=1", "/v1.41/containers/json?all=1"),
        ("/v1.041/_ping", "/v1.41/_ping"),
        ("/_ping", "/_ping"),
        ("/v1.41/containers/a%20b/json", "/v1.41/containers/a%20b/json"),
        ("/v1.41/images/create?fromImage=a&tag=3", "/v1.41/images/create?fromImage=a&tag=3"),
        ("/v1.41/build?t=a%2Bb&t=c", "/v1.41/build?t=a%2Bb&t=c"),
    ],
)  # fmt: skip
def test_targets_are_rebuilt_to_mean_the_same(target, forwarded):
    request = canonicalize("GET" if "build" not in target else "POST", target)
    if "images/create" in target:
        request = canonicalize("POST", target)
    assert rewrite.target(request) == forwarded
    again = canonicalize(request.method, forwarded)
    assert (again.path, again.query, again.endpoint) == (
        request.path,
        request.query,
        request.endpoint,
    )


def test_the_object_in_the_path_becomes_the_resolved_id():
    request = canonicalize("POST", "/v1.41/containers/web/stop?t=1")
    assert rewrite.target(request, ref="abc123") == "/v1.41/containers/abc123/stop?t=1"
    request = canonicalize("DELETE", "/networks/ci-net")
    assert rewrite.target(request, ref="f00d") == "/networks/f00d"


def query_of(pairs):
    return dict(pairs)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (None, {"label": [OWNED]}),
        ('{"status":["running"]}', {"status": ["running"], "label": [OWNED]}),
        ('{"label":{"x=1":true}}', {"label": ["x=1", OWNED]}),
        ('{"label":["io.dockyard.owner=bob"]}', {"label": ["io.dockyard.owner=bob", OWNED]}),
    ],
)
def test_owner_filter_is_added_never_replaced(filters, expected):
    query = (("all", "1"),) + ((("filters", filters),) if filters else ())
    result = rewrite.with_filter(query, OWNED)
    assert json.loads(query_of(result)["filters"]) == expected
    assert query_of(result)["all"] == "1"


def test_only_one_filters_parameter_reaches_dockerd():
    result = rewrite.with_filter((("filters", "{}"), ("filters", '{"label":["x"]}')), OWNED)
    assert [key for key, _ in result].count("filters") == 1


@pytest.mark.parametrize("bad", ["[1]", "not json", '{"label":[1]}', '{"label":{"x":false}}'])
def test_unreadable_filters_are_refused(bad):
    with pytest.raises(rewrite.RewriteError):
        rewrite.with_filter((("filters", bad),), OWNED)


def test_build_labels_are_merged_with_the_stamp_winning():
    query = (("t", "x"), ("labels", '{"a":"1","io.dockyard.owner":"bob"}'), ("labels", "{}"))
    result = rewrite.with_build_labels(query, {"io.dockyard.owner": "alice"})
    assert [key for key, _ in result].count("labels") == 1
    assert json.loads(query_of(result)["labels"]) == {"a": "1", "io.dockyard.owner": "alice"}


def test_null_build_labels_are_none_as_go_reads_them():
    """The 20.10 CLI sends ``labels=null`` for a BuildKit build of a tar from stdin."""
    result = rewrite.with_build_labels((("labels", "null"),), {"io.dockyard.owner": "alice"})
    assert json.loads(query_of(result)["labels"]) == {"io.dockyard.owner": "alice"}


def test_stamped_bodies_merge_labels_as_dockerd_reads_them():
    body = b'{"Image":"x","labels":{"a":"1","io.dockyard.owner":"bob"}}'
    stamped = decode_object(rewrite.stamped_body(body, {"io.dockyard.owner": "alice"}))
    assert stamped.obj("Labels").entries() == {"a": "1", "io.dockyard.owner": "alice"}
    assert decode_object(rewrite.stamped_body(b"", {"k": "v"})).obj("Labels").entries() == {
        "k": "v"
    }


def test_forwarded_query_is_plain_form_encoding():
    request = canonicalize("GET", "/containers/json?filters=%7B%7D")
    target = rewrite.target(request, query=rewrite.with_filter(request.query, OWNED))
    assert dict(parse_qsl(urlsplit(target).query))["filters"] == json.dumps(
        {"label": [OWNED]}, separators=(",", ":")
    )
