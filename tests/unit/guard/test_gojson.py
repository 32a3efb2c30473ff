"""JSON bodies read as Go's encoding/json reads them into dockerd's structs."""

import pytest

from dockyard.guard import gojson
from dockyard.guard.gojson import (
    GoJSONError,
    GoObject,
    GoTypeError,
    append_field,
    decode,
    decode_object,
    fold_name,
)

LONG_S = "\u017f"
KELVIN = "\u212a"
DOTLESS_I = "\u0131"
DOTTED_I = "\u0130"


@pytest.mark.parametrize(
    ("key", "field"),
    [("HostConfig", "HostConfig"), ("hostconfig", "HostConfig"), ("HOSTCONFIG", "HostConfig"),
     (f"Ho{LONG_S}tconfig", "HostConfig"), (f"{LONG_S}ecurityOpt", "SecurityOpt"),
     (f"{KELVIN}ernelMemory", "KernelMemory"), (f"Mas{KELVIN}edPaths", "MaskedPaths"),
     ("pRiViLeGeD", "Privileged")],
)  # fmt: skip
def test_keys_fold_onto_fields_as_go_does(key, field):
    assert decode_object(f'{{"{key}": 1}}'.encode()).get(field) == 1


@pytest.mark.parametrize(
    ("key", "field"),
    [(f"priv{DOTLESS_I}leged", "Privileged"), (f"Pr{DOTTED_I}vileged", "Privileged"),
     ("Privileged ", "Privileged"), ("Privi_leged", "Privileged"), ("Stra\u00dfe", "Strasse")],
)  # fmt: skip
def test_keys_go_keeps_apart(key, field):
    # Go's SimpleFold keeps U+0131 and U+0130 to themselves, and folding is never full.
    assert decode_object(f'{{"{key}": 1}}'.encode()).get(field) is None


def test_fold_name_never_upper_cases_into_ascii():
    assert fold_name(f"priv{DOTLESS_I}leged") != fold_name("privileged")
    assert fold_name(f"{KELVIN}{LONG_S}") == "KS"


def test_escaped_keys_are_unescaped_before_matching():
    assert decode_object(b'{"Priv\\u0069leged": true}').get("Privileged") is True


def test_last_duplicate_wins_across_spellings():
    body = decode_object(b'{"Privileged": false, "privileged": true}')
    assert body.boolean("Privileged") is True
    body = decode_object(b'{"privileged": true, "Privileged": false}')
    assert body.boolean("Privileged") is False


def test_duplicate_objects_merge_field_by_field():
    body = decode_object(
        b'{"HostConfig": {"Privileged": true, "Memory": 1},'
        b' "hostconfig": {"Memory": 2, "Binds": ["/:/host"]}}'
    )
    host = body.obj("HostConfig")
    assert host is not None
    assert host.get("Privileged") is True
    assert host.get("Memory") == 2
    assert host.strings("Binds") == ("/:/host",)


def test_merges_are_recursive():
    body = decode_object(b'{"A": {"B": {"C": 1, "D": 1}}, "a": {"b": {"d": 2}}}')
    inner = body.obj("A").obj("B")  # type: ignore[union-attr]
    assert (inner.get("C"), inner.get("D")) == (1, 2)  # type: ignore[union-attr]


def test_null_never_erases_an_earlier_value():
    # Go leaves a bool untouched by null; for pointers and slices keeping the old value is
    # the conservative reading.
    body = decode_object(b'{"Privileged": true, "Privileged": null}')
    assert body.boolean("Privileged") is True
    body = decode_object(b'{"HostConfig": {"Privileged": true}, "HostConfig": null}')
    assert body.obj("HostConfig").boolean("Privileged") is True  # type: ignore[union-attr]


def test_arrays_merge_element_by_element():
    body = decode_object(
        b'{"Mounts": [{"Type": "bind", "Source": "/"}], "Mounts": [{"Type": "volume"}]}'
    )
    (mount,) = body.array("Mounts") or ()
    assert isinstance(mount, GoObject)
    assert (mount.get("Type"), mount.get("Source")) == ("volume", "/")
    body = decode_object(b'{"Binds": ["/:/h", "a:/b"], "Binds": [null]}')
    assert body.strings("Binds") == ("/:/h",)


def test_map_entries_are_exact_and_last_wins():
    body = decode_object(b'{"Labels": {"a": "1", "A": "2", "a": "3"}}')
    assert body.obj("Labels").entries() == {"a": "3", "A": "2"}  # type: ignore[union-attr]


def test_duplicate_maps_merge_as_go_reuses_the_map():
    body = decode_object(b'{"Labels": {"a": "1"}, "labels": {"b": "2"}}')
    assert body.obj("Labels").entries() == {"a": "1", "b": "2"}  # type: ignore[union-attr]


def test_strict_mode_rejects_case_variant_duplicates():
    decode_object(b'{"a": {"x": 1}, "b": 2}', strict=True)
    for body in (
        b'{"Privileged": 1, "privileged": 2}',
        b'{"x": {"A": 1, "a": 2}}',
        f'{{"Hostconfig": 1, "Ho{LONG_S}tconfig": 2}}'.encode(),
        b'{"a": 1, "a": 1}',
    ):
        with pytest.raises(GoJSONError, match="duplicate"):
            decode_object(body, strict=True)


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"{", b'{"a": 1} x', b'{"a": 1}]', b'{"a": 1}{}', b'{"a": NaN}',
     b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1e999}', b"{'a': 1}", b'{"a": 01}',
     b'{"a": "\xff"}', b'\xef\xbb\xbf{"a": 1}', b'{"a": "\\ud800"}', b'{"a": "\x01"}',
     b'{"a": 1,}', b"[" * 100 + b"]" * 100, b'{"a": ' + b"9" * 5000 + b"}"],
)  # fmt: skip
def test_anything_go_could_read_differently_is_rejected(body):
    with pytest.raises(GoJSONError):
        decode_object(body)


@pytest.mark.parametrize("body", [b"[]", b"null", b"1", b'"x"', b"true"])
def test_top_level_must_be_an_object(body):
    decode(body)
    with pytest.raises(GoTypeError, match="expected a JSON object"):
        decode_object(body)


def test_whitespace_around_the_value_is_fine():
    assert decode_object(b' \t\r\n{"a": [1, 2.5, "x", true, null]} \n').get("a") == (
        1, 2.5, "x", True, None,
    )  # fmt: skip


def test_surrogate_pairs_are_fine():
    assert decode_object(b'{"a": "\\ud83d\\ude00"}').get("a") == "\U0001f600"


@pytest.mark.parametrize(
    ("body", "method"),
    [(b'{"a": 1}', "obj"), (b'{"a": {}}', "array"), (b'{"a": 1}', "string"),
     (b'{"a": "true"}', "boolean"), (b'{"a": [1]}', "strings"), (b'{"a": {}}', "strings")],
)  # fmt: skip
def test_wrong_types_raise(body, method):
    with pytest.raises(GoTypeError):
        getattr(decode_object(body), method)("a")


def test_strings_accepts_a_lone_string_like_strslice():
    assert decode_object(b'{"CapAdd": "ALL"}').strings("CapAdd") == ("ALL",)


def test_append_field_is_applied_last_and_merges_maps():
    body = b'{"Image": "x", "Labels": {"a": "1", "io.dockyard.owner": "forged"}}  '
    stamped = append_field(body, "Labels", {"io.dockyard.owner": "me"})
    assert decode_object(stamped).obj("Labels").entries() == {  # type: ignore[union-attr]
        "a": "1", "io.dockyard.owner": "me",
    }  # fmt: skip
    assert decode_object(append_field(b"{ }", "Labels", {"k": "v"})).keys() == ("Labels",)
    with pytest.raises(GoJSONError):
        append_field(b"[]", "Labels", {})


def test_floods_of_duplicates_are_rejected():
    eight = ", ".join(
        f'"{"pRiVileged"[: i % 10] + "privileged"[i % 10 :]}": {{}}' for i in range(8)
    )
    decode_object(f"{{{eight}}}".encode())
    with pytest.raises(GoJSONError, match="repeated 9 times"):
        decode_object(f'{{{eight}, "PRIVILEGED": {{}}}}'.encode())


def test_wide_objects_are_read_in_linear_time():
    body = "{" + ", ".join(f'"k{i}": {i}' for i in range(100_000)) + ', "Privileged": true}'
    decoded = decode_object(body.encode())
    assert decoded.boolean("Privileged") is True
    assert all(decoded.get(f"K{i}") == i for i in range(0, 100_000, 1000))


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_bodies_nested_deeper_than_the_limit_are_refused(opening):
    closing = "]" if opening == "[" else "}"
    depth = gojson.MAX_DEPTH + 1
    with pytest.raises(gojson.GoJSONError, match="deeper"):
        gojson.decode(opening * depth + "1" + closing * depth)
    assert gojson.decode(opening * gojson.MAX_DEPTH + "1" + closing * gojson.MAX_DEPTH)


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = '{"a": "' + "[{" * gojson.MAX_DEPTH + '\\"]", "b": ["x"]}'
    assert gojson.decode_object(text.encode()).strings("b") == ("x",)


@pytest.mark.parametrize(
    "body",
    [b'{"\\udc00": 1}', b'{"a": [["ok", "\\ud800"]]}', b'{"a": {"b": ["\\ud800x"]}}'],
)
def test_lone_surrogates_anywhere_are_refused(body):
    with pytest.raises(gojson.GoJSONError, match="surrogate"):
        gojson.decode(body)
