"""Properties over arbitrary input: the core fails only with its own errors, never crashes."""

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.guard import framing
from dockyard.guard.gojson import GoJSONError, GoObject, decode, decode_object, fold_name
from dockyard.guard.policy import evaluate
from dockyard.guard.profiles import CI_BUILD
from dockyard.guard.request import ROUTES, RequestError, canonicalize

METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "get", "PATCH"])
SCALARS = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)
JSON_VALUES = st.recursive(
    SCALARS.filter(lambda value: value not in (float("inf"), float("-inf"))),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=300))
def test_gojson_raises_only_its_own_error_on_any_bytes(body):
    with contextlib.suppress(GoJSONError):
        decode_object(body)


@given(JSON_VALUES)
def test_gojson_reads_what_json_writes(value):
    decoded = decode(json.dumps(value).encode())
    assert (decoded is None) == (value is None)
    if isinstance(value, dict):
        assert isinstance(decoded, GoObject)
        assert set(decoded.entries()) == set(value)


@given(st.text(max_size=20), st.text(max_size=20))
def test_fold_ignores_ascii_case_and_nothing_more_on_ascii(a, b):
    if a.isascii():
        assert fold_name(a) == fold_name(a.swapcase())
    if fold_name(a) == fold_name(b) and a.isascii() and b.isascii():
        assert a.lower() == b.lower()


TARGET_CHARS = st.sampled_from(
    [*list("/.%?&=;#+ab01v:\x00ÿ~"), "%2e", "%2f", "%2F", "%zz", "/v1.41"]
)


@given(METHODS, st.lists(TARGET_CHARS, max_size=30).map("".join) | st.binary(max_size=60))
def test_canonicalize_never_crashes(method, target):
    try:
        request = canonicalize(method, target)
    except RequestError:
        return
    assert request.path.startswith("/")
    assert "//" not in request.path
    assert "/../" not in request.path


@given(st.sampled_from(ROUTES))
def test_every_route_is_reachable_with_and_without_version(route):
    path = route.template
    for variable in ("{name:.*}", "{id:.*}", "{id:.+}", "{name}", "{id}", "{checkpoint}",
                     "{anyroute:.*}", "{rest:.*}"):  # fmt: skip
        path = path.replace(variable, "x")
    for prefix in ("", "/v1.41"):
        assert (
            canonicalize(route.method, prefix + path).endpoint
            == canonicalize(route.method, path).endpoint
        )


@given(
    st.sampled_from(sorted(framing.JSON_ENDPOINTS | framing.STREAM_ENDPOINTS | {"x"})),
    st.lists(
        st.tuples(
            st.sampled_from(
                ["Content-Length", "Transfer-Encoding", "Content-Type", "Upgrade", "X"]
            ),
            st.text(max_size=12),
        ),
        max_size=5,
    ),
)
def test_framing_always_answers(endpoint, headers):
    verdict = framing.check(endpoint, headers)
    assert verdict.ok or verdict.reason


@settings(max_examples=200)
@given(st.sampled_from(ROUTES), JSON_VALUES)
def test_policy_answers_any_body_on_any_route(route, value):
    path = route.template.replace("{name:.*}", "x").replace("{id:.*}", "x").replace("{id}", "x")
    try:
        request = canonicalize(route.method, path)
    except RequestError:
        return
    body = {"HostConfig": value, "Privileged": value, "Binds": value, "Mounts": value}
    verdict = evaluate(request, decode_object(json.dumps(body).encode()), CI_BUILD, "me")
    assert verdict.allow or verdict.reason
