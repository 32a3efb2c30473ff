"""JSON read the way dockerd's Go ``encoding/json`` reads it into its structs.

A policy that reads a body differently from dockerd can be walked around, so this module
reproduces the three rules that matter:

* A key selects a struct field when it equals the field's name under Unicode *simple* case
  folding (``"Ho\\u017ftconfig"`` with a long s selects ``HostConfig``, the Kelvin sign
  U+212A selects ``k``; the dotless i U+0131 selects nothing: Go's ``SimpleFold`` keeps it
  to itself).
* Keys are applied in order into the same value: for a repeated field the last one wins, and
  two objects merge field by field, recursively (Go decodes into the existing struct or map).
  A JSON ``null`` never erases what an earlier duplicate set: Go leaves booleans, strings and
  numbers untouched by ``null`` and the policy must not see less than dockerd does.
* Arrays given twice merge element by element (Go reuses the slice's elements).

Where Go would be lenient (invalid UTF-8 becomes U+FFFD, a trailing ``]`` after the value goes
unnoticed) this module rejects instead: anything ambiguous fails closed.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeAlias

MAX_DEPTH = 64
"""Deeper bodies are rejected; no Engine API body comes near this."""

MAX_DUPLICATES = 8
"""More spellings of one key than this are rejected: no client sends them, and merging
thousands of duplicates would let a 1 MiB body cost quadratic time."""


class GoJSONError(ValueError):
    """The body cannot be read exactly as dockerd would read it; the guard denies it."""


class GoTypeError(GoJSONError):
    """A field holds a JSON type that dockerd's struct would refuse."""


GoValue: TypeAlias = "bool | int | float | str | tuple[GoValue, ...] | GoObject | None"


def fold_name(name: str) -> str:
    """The key Go compares under simple case folding.

    Python's ``casefold`` is full folding; kept to single-character results it agrees with
    Go's simple folding on every character that can fold onto an ASCII field name (ASCII
    letters, U+017F and U+212A).
    """
    if name.isascii():
        return name.upper()  # (the loop below, for the usual case)
    out = []
    for char in name:
        folded = char.casefold()
        if len(folded) != 1:
            folded = char
        # Never upper-case a non-ASCII result: "ı".upper() is "I", yet Go keeps them apart.
        out.append(folded.upper() if folded.isascii() else folded)
    return "".join(out)


def merge(old: GoValue, new: GoValue) -> GoValue:
    """What dockerd holds after decoding ``new`` on top of ``old`` (see the module doc)."""
    if new is None:
        return old
    if isinstance(old, GoObject) and isinstance(new, GoObject):
        return GoObject(old.pairs + new.pairs)
    if isinstance(old, tuple) and isinstance(new, tuple):
        return tuple(
            merge(old[index], item) if index < len(old) else item for index, item in enumerate(new)
        )
    return new


def _type_name(value: GoValue) -> str:
    if isinstance(value, GoObject):
        return "object"
    if isinstance(value, tuple):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "number"


@dataclass(frozen=True, slots=True)
class GoObject:
    """A JSON object as its raw ordered pairs, read through Go's struct or map rules."""

    pairs: tuple[tuple[str, GoValue], ...]
    _fields: dict[str, list[GoValue]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields: dict[str, list[GoValue]] = {}
        for key, value in self.pairs:
            fields.setdefault(fold_name(key), []).append(value)
        object.__setattr__(self, "_fields", fields)

    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.pairs)

    def get(self, name: str) -> GoValue:
        """Struct field ``name`` as dockerd decodes it (``None`` when absent or null)."""
        values = self._fields.get(fold_name(name), [])
        return functools.reduce(merge, values[1:], values[0]) if values else None

    def obj(self, name: str) -> GoObject | None:
        value = self.get(name)
        if value is None or isinstance(value, GoObject):
            return value
        raise GoTypeError(f"{name}: expected an object, got {_type_name(value)}")

    def array(self, name: str) -> tuple[GoValue, ...] | None:
        value = self.get(name)
        if value is None or isinstance(value, tuple):
            return value
        raise GoTypeError(f"{name}: expected an array, got {_type_name(value)}")

    def string(self, name: str) -> str | None:
        value = self.get(name)
        if value is None or isinstance(value, str):
            return value
        raise GoTypeError(f"{name}: expected a string, got {_type_name(value)}")

    def boolean(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise GoTypeError(f"{name}: expected a boolean, got {_type_name(value)}")

    def strings(self, name: str) -> tuple[str, ...]:
        """A ``[]string`` field; a lone string is accepted too, as Docker's StrSlice does."""
        value = self.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, tuple):
            items = tuple("" if item is None else item for item in value)
            if all(isinstance(item, str) for item in items):
                return items  # type: ignore[return-value]
        raise GoTypeError(f"{name}: expected a list of strings")

    def entries(self) -> dict[str, GoValue]:
        """The object read as a Go map: exact keys, duplicates merged, last one winning."""
        found: dict[str, GoValue] = {}
        for key, value in self.pairs:
            found[key] = merge(found[key], value) if key in found else value
        return found


def _reject_constant(name: str) -> Any:
    raise GoJSONError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise GoJSONError(f"number {text[:20]} overflows a float64")
    return value


def _pairs_hook(strict: bool, escapes: bool) -> Any:
    limit = 1 if strict else MAX_DUPLICATES

    def hook(pairs: list[tuple[str, Any]]) -> GoObject:
        found = GoObject(
            tuple(
                (_checked(key) if escapes else key, _freeze(value, escapes)) for key, value in pairs
            )
        )
        for folded, values in found._fields.items():
            if len(values) > limit:
                mode = " (strict mode)" if strict else ""
                raise GoJSONError(f"duplicate key {folded!r} repeated {len(values)} times{mode}")
        return found

    return hook


def _freeze(value: Any, escapes: bool) -> GoValue:
    """Arrays become tuples (objects are built frozen by the hook as they are read); with
    ``escapes``, strings are checked for lone surrogates (Go would replace them)."""
    if isinstance(value, list):
        return tuple(_freeze(item, escapes) for item in value)
    if escapes and isinstance(value, str):
        return _checked(value)
    return value  # type: ignore[no-any-return]


def _checked(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise GoJSONError("string holds an unpaired UTF-16 surrogate escape") from None
    return text


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _depth(text: str) -> int:
    """Nesting depth, counted outside strings, so recursion limits are never reached.

    (An unterminated string only makes the count higher: the body is refused either way.)
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0  # (too few openings to nest deeper: most bodies stop here)
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def decode(body: bytes | str, *, strict: bool = False) -> GoValue:
    """Any JSON value, or :class:`GoJSONError` saying why dockerd's reading could differ."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GoJSONError(f"invalid UTF-8 at byte {exc.start}") from None
    else:
        text = body
    if _depth(text) > MAX_DEPTH:
        raise GoJSONError(f"nested deeper than {MAX_DEPTH} levels")
    # A lone surrogate can only come from a \u escape, or from a str given as it is.
    escapes = "\\u" in text or not isinstance(body, bytes)
    try:
        raw = json.loads(
            text,
            object_pairs_hook=_pairs_hook(strict, escapes),
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except GoJSONError:
        raise
    except (ValueError, RecursionError) as exc:
        # json.JSONDecodeError covers bad syntax and trailing data; ValueError also covers
        # integers too long to convert.
        raise GoJSONError(f"invalid JSON: {exc}") from None
    return _freeze(raw, escapes)


def decode_object(body: bytes | str, *, strict: bool = False) -> GoObject:
    """A body that must hold one JSON object (every Engine API JSON body does)."""
    value = decode(body, strict=strict)
    if not isinstance(value, GoObject):
        raise GoTypeError(f"expected a JSON object, got {_type_name(value)}")
    return value


def append_field(body: bytes, name: str, value: object) -> bytes:
    """``body`` with one more top-level key, which dockerd applies last.

    Used to stamp labels: because Go merges a repeated map field into the map it already
    decoded, an appended ``"Labels": {...}`` adds to (and overrides within) what the client
    sent rather than replacing it. ``body`` must already have passed :func:`decode_object`.
    """
    stripped = body.rstrip(b" \t\r\n")
    if not stripped.endswith(b"}"):
        raise GoJSONError("not a JSON object")
    head = stripped[:-1].rstrip(b" \t\r\n")
    separator = b"" if head.endswith(b"{") else b","
    field = json.dumps({name: value}, ensure_ascii=True)[1:-1].encode("ascii")
    return head + separator + field + b"}"
