"""What the guard forwards once a request is allowed: pure functions of the decision.

The target is rebuilt from the canonical request (never the client's raw text), so dockerd
routes exactly what the policy judged; the object in the path becomes the ID its ownership
was checked on, so a rename in between cannot swap it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from dockyard.guard.gojson import append_field
from dockyard.guard.request import CanonicalRequest, route

_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class RewriteError(ValueError):
    """A parameter the guard must extend is not in a form it can extend safely."""


def target(
    request: CanonicalRequest,
    *,
    ref: str | None = None,
    query: tuple[tuple[str, str], ...] | None = None,
) -> str:
    """The origin-form target to send upstream, with the path's object replaced by ``ref``."""
    path = request.path
    if ref is not None and request.ref is not None and ref != request.ref:
        found, _ = route(request.method, path)
        match = found.pattern.fullmatch(path) if found else None
        group = "name" if request.path_params.get("name") else "id"
        if match is None:
            raise RewriteError(f"cannot place {ref!r} in {path!r}")
        start, end = match.span(group)
        path = path[:start] + ref + path[end:]
    if request.version is not None:
        path = "/v" + ".".join(str(part) for part in request.version) + path
    pairs = request.query if query is None else query
    encoded = urlencode(pairs, quote_via=quote)
    return quote(path, safe=_PATH_SAFE) + (f"?{encoded}" if encoded else "")


def _filters(text: str) -> dict[str, list[str]]:
    """dockerd's ``filters.FromJSON``: ``{"k": ["v"]}`` or the legacy ``{"k": {"v": true}}``."""
    try:
        raw = json.loads(text) if text.strip() else {}
    except ValueError:
        raise RewriteError("filters is not JSON") from None
    if not isinstance(raw, dict):
        raise RewriteError("filters is not a JSON object")
    found: dict[str, list[str]] = {}
    for key, values in raw.items():
        if (isinstance(values, list) and all(isinstance(v, str) for v in values)) or (
            isinstance(values, dict) and all(v is True for v in values.values())
        ):
            found[key] = list(values)
        else:
            raise RewriteError(f"filter {key!r} is neither a list nor a set of strings")
    return found


def with_filter(query: tuple[tuple[str, str], ...], label: str) -> tuple[tuple[str, str], ...]:
    """``query`` with ``label`` added to its label filters (dockerd ANDs them: no widening).

    dockerd reads the first ``filters`` parameter; any others are dropped here.
    """
    texts = [value for key, value in query if key == "filters"]
    found = _filters(texts[0] if texts else "")
    found["label"] = [*found.get("label", []), label]
    rest = tuple(pair for pair in query if pair[0] != "filters")
    return (*rest, ("filters", json.dumps(found, separators=(",", ":"))))


def with_build_labels(
    query: tuple[tuple[str, str], ...], stamp: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """A build's ``labels`` (dockerd reads the first) merged with the stamp, which wins."""
    texts = [value for key, value in query if key == "labels"]
    try:
        current = json.loads(texts[0]) if texts and texts[0].strip() else {}
    except ValueError:
        raise RewriteError("build labels are not JSON") from None
    if current is None:  # BuildKit CLIs send null for no labels; Go reads it as empty
        current = {}
    if not isinstance(current, dict):
        raise RewriteError("build labels are not a JSON object")
    rest = tuple(pair for pair in query if pair[0] != "labels")
    return (*rest, ("labels", json.dumps({**current, **stamp}, separators=(",", ":"))))


def stamped_body(body: bytes, stamp: Mapping[str, str]) -> bytes:
    """A create body with ``stamp`` merged into its labels (Go merges a repeated map key)."""
    return append_field(body if body.strip() else b"{}", "Labels", dict(stamp))
