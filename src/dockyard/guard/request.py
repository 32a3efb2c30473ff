"""A request as dockerd routes it: method, API version, clean path, endpoint, query.

dockerd serves the Engine API with gorilla/mux, every route registered twice (with and
without ``/v{version:[0-9.]+}``), matched in registration order against the
percent-*decoded* path. Before matching, mux compares the decoded path with its cleaned form
(``path.Clean``, trailing slash kept) and answers 301 to anything unclean instead of serving
it, so a guard that cleaned paths itself would let through requests dockerd never serves as
the route the guard thought it saw. Here an unclean path is rejected.

The query is parsed as Go's ``url.ParseQuery`` does, but where Go drops a pair (a semicolon,
a bad escape) or an older Go splits differently (``;`` was a separator before Go 1.17), the
request is rejected instead: the policy must see every parameter dockerd sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote_to_bytes

from dockyard.guard import memo

UNKNOWN = "unknown"
"""The endpoint of anything dockerd does not serve as a known route; policies deny it."""


class RequestError(ValueError):
    """The target cannot be read exactly as dockerd would; the guard denies the request."""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    endpoint: str
    kind: str | None = None
    """The kind of object named in the path (``container``, ``image``, ...), if any."""
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", _compile(self.template))


_VARIABLE = re.compile(r"\{(\w+)(?::([^}]*))?\}")


def _compile(template: str) -> re.Pattern[str]:
    """gorilla/mux's template syntax: ``{name}`` is ``[^/]+``, ``{name:re}`` is ``re``."""
    parts, last = [], 0
    for match in _VARIABLE.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append(f"(?P<{match.group(1)}>{match.group(2) or '[^/]+'})")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


_N = "{name:.*}"
# dockerd's routes in its registration order (moby daemon/server/router/*, the order of
# buildRouters; routes dropped since 20.10 are kept because the guard may front a 20.10).
ROUTES: tuple[Route, ...] = (
    # checkpoint (registered before container so that its DELETE is not masked)
    Route("GET", f"/containers/{_N}/checkpoints", "checkpoint.list", "container"),
    Route("POST", f"/containers/{_N}/checkpoints", "checkpoint.create", "container"),
    Route(
        "DELETE", "/containers/{name}/checkpoints/{checkpoint}", "checkpoint.delete", "container"
    ),
    # container
    Route("HEAD", f"/containers/{_N}/archive", "container.archive.head", "container"),
    Route("GET", "/containers/json", "container.list"),
    Route("GET", f"/containers/{_N}/export", "container.export", "container"),
    Route("GET", f"/containers/{_N}/changes", "container.changes", "container"),
    Route("GET", f"/containers/{_N}/json", "container.inspect", "container"),
    Route("GET", f"/containers/{_N}/top", "container.top", "container"),
    Route("GET", f"/containers/{_N}/logs", "container.logs", "container"),
    Route("GET", f"/containers/{_N}/stats", "container.stats", "container"),
    Route("GET", f"/containers/{_N}/attach/ws", "container.attach.ws", "container"),
    Route("GET", "/exec/{id:.*}/json", "exec.inspect", "exec"),
    Route("GET", f"/containers/{_N}/archive", "container.archive.get", "container"),
    Route("POST", "/containers/create", "container.create"),
    Route("POST", f"/containers/{_N}/kill", "container.kill", "container"),
    Route("POST", f"/containers/{_N}/pause", "container.pause", "container"),
    Route("POST", f"/containers/{_N}/unpause", "container.unpause", "container"),
    Route("POST", f"/containers/{_N}/restart", "container.restart", "container"),
    Route("POST", f"/containers/{_N}/start", "container.start", "container"),
    Route("POST", f"/containers/{_N}/stop", "container.stop", "container"),
    Route("POST", f"/containers/{_N}/wait", "container.wait", "container"),
    Route("POST", f"/containers/{_N}/resize", "container.resize", "container"),
    Route("POST", f"/containers/{_N}/attach", "container.attach", "container"),
    Route("POST", f"/containers/{_N}/copy", "container.copy", "container"),
    Route("POST", f"/containers/{_N}/exec", "container.exec", "container"),
    Route("POST", f"/exec/{_N}/start", "exec.start", "exec"),
    Route("POST", f"/exec/{_N}/resize", "exec.resize", "exec"),
    Route("POST", f"/containers/{_N}/rename", "container.rename", "container"),
    Route("POST", f"/containers/{_N}/update", "container.update", "container"),
    Route("POST", "/containers/prune", "container.prune"),
    Route("POST", "/commit", "commit"),
    Route("PUT", f"/containers/{_N}/archive", "container.archive.put", "container"),
    Route("DELETE", f"/containers/{_N}", "container.delete", "container"),
    # image
    Route("GET", "/images/json", "image.list"),
    Route("GET", "/images/search", "image.search"),
    Route("GET", "/images/get", "image.save"),
    Route("GET", f"/images/{_N}/get", "image.save", "image"),
    Route("GET", f"/images/{_N}/history", "image.history", "image"),
    Route("GET", f"/images/{_N}/json", "image.inspect", "image"),
    Route("GET", f"/images/{_N}/attestations", "image.attestations", "image"),
    Route("POST", "/images/load", "image.load"),
    Route("POST", "/images/create", "image.create"),
    Route("POST", f"/images/{_N}/push", "image.push", "image"),
    Route("POST", f"/images/{_N}/tag", "image.tag", "image"),
    Route("POST", "/images/prune", "image.prune"),
    Route("DELETE", f"/images/{_N}", "image.delete", "image"),
    # system
    Route("OPTIONS", "/{anyroute:.*}", "system.options"),
    Route("GET", "/_ping", "system.ping"),
    Route("HEAD", "/_ping", "system.ping"),
    Route("GET", "/events", "system.events"),
    Route("GET", "/info", "system.info"),
    Route("GET", "/version", "system.version"),
    Route("GET", "/system/df", "system.df"),
    Route("POST", "/auth", "system.auth"),
    # volume
    Route("GET", "/volumes", "volume.list"),
    Route("GET", f"/volumes/{_N}", "volume.inspect", "volume"),
    Route("POST", "/volumes/create", "volume.create"),
    Route("POST", "/volumes/prune", "volume.prune"),
    Route("PUT", f"/volumes/{_N}", "volume.update", "volume"),
    Route("DELETE", f"/volumes/{_N}", "volume.delete", "volume"),
    # build
    Route("POST", "/build", "build"),
    Route("POST", "/build/prune", "build.prune"),
    Route("POST", "/build/cancel", "build.cancel"),
    # session (BuildKit)
    Route("POST", "/session", "session"),
    # swarm
    Route("POST", "/swarm/init", "swarm.init"),
    Route("POST", "/swarm/join", "swarm.join"),
    Route("POST", "/swarm/leave", "swarm.leave"),
    Route("GET", "/swarm", "swarm.inspect"),
    Route("GET", "/swarm/unlockkey", "swarm.unlockkey"),
    Route("POST", "/swarm/update", "swarm.update"),
    Route("POST", "/swarm/unlock", "swarm.unlock"),
    Route("GET", "/services", "service.list"),
    Route("GET", "/services/{id}", "service.inspect", "service"),
    Route("POST", "/services/create", "service.create"),
    Route("POST", "/services/{id}/update", "service.update", "service"),
    Route("DELETE", "/services/{id}", "service.delete", "service"),
    Route("GET", "/services/{id}/logs", "service.logs", "service"),
    Route("GET", "/nodes", "node.list"),
    Route("GET", "/nodes/{id}", "node.inspect", "node"),
    Route("DELETE", "/nodes/{id}", "node.delete", "node"),
    Route("POST", "/nodes/{id}/update", "node.update", "node"),
    Route("GET", "/tasks", "task.list"),
    Route("GET", "/tasks/{id}", "task.inspect", "task"),
    Route("GET", "/tasks/{id}/logs", "task.logs", "task"),
    Route("GET", "/secrets", "secret.list"),
    Route("POST", "/secrets/create", "secret.create"),
    Route("DELETE", "/secrets/{id}", "secret.delete", "secret"),
    Route("GET", "/secrets/{id}", "secret.inspect", "secret"),
    Route("POST", "/secrets/{id}/update", "secret.update", "secret"),
    Route("GET", "/configs", "config.list"),
    Route("POST", "/configs/create", "config.create"),
    Route("DELETE", "/configs/{id}", "config.delete", "config"),
    Route("GET", "/configs/{id}", "config.inspect", "config"),
    Route("POST", "/configs/{id}/update", "config.update", "config"),
    # plugin
    Route("GET", "/plugins", "plugin.list"),
    Route("GET", f"/plugins/{_N}/json", "plugin.inspect", "plugin"),
    Route("GET", "/plugins/privileges", "plugin.privileges"),
    Route("DELETE", f"/plugins/{_N}", "plugin.delete", "plugin"),
    Route("POST", f"/plugins/{_N}/enable", "plugin.enable", "plugin"),
    Route("POST", f"/plugins/{_N}/disable", "plugin.disable", "plugin"),
    Route("POST", "/plugins/pull", "plugin.pull"),
    Route("POST", f"/plugins/{_N}/push", "plugin.push", "plugin"),
    Route("POST", f"/plugins/{_N}/upgrade", "plugin.upgrade", "plugin"),
    Route("POST", f"/plugins/{_N}/set", "plugin.set", "plugin"),
    Route("POST", "/plugins/create", "plugin.create"),
    # distribution
    Route("GET", f"/distribution/{_N}/json", "distribution.inspect", "image"),
    # network
    Route("GET", "/networks", "network.list"),
    Route("GET", "/networks/", "network.list"),
    Route("GET", "/networks/{id:.+}", "network.inspect", "network"),
    Route("POST", "/networks/create", "network.create"),
    Route("POST", "/networks/{id:.*}/connect", "network.connect", "network"),
    Route("POST", "/networks/{id:.*}/disconnect", "network.disconnect", "network"),
    Route("POST", "/networks/prune", "network.prune"),
    Route("DELETE", "/networks/{id:.*}", "network.delete", "network"),
    # debug (20.10 served these without the /debug prefix as well)
    Route("GET", "/debug/{rest:.*}", "debug"),
    Route("GET", "/pprof/{rest:.*}", "debug"),
    Route("GET", "/vars", "debug"),
    # grpc (BuildKit over h2c upgrade)
    Route("POST", "/grpc", "grpc"),
)

_VERSIONED = re.compile(r"/v([0-9.]+)(/.*)", re.DOTALL)
_UNSERVED_TARGET = re.compile(r"[^\x21-\x7e]|#")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GO_INT_MAX = 2**63 - 1


def parse_version(text: str) -> tuple[int, ...]:
    """An API version as dockerd compares it (``versions.compare``).

    Components are split on dots and read with ``strconv.Atoi`` whose error is ignored:
    an empty component is 0 and an out-of-range one saturates, so ``1.041``, ``1.41.0`` and
    ``01.41`` all mean 1.41. Trailing zeros are dropped so equal versions compare equal.
    """
    parts = [min(int(part), _GO_INT_MAX) if part else 0 for part in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def clean_path(path: str) -> str:
    """gorilla/mux's ``cleanPath``: Go's ``path.Clean``, keeping one trailing slash."""
    if not path:
        return "/"
    rooted = path if path.startswith("/") else "/" + path
    parts: list[str] = []
    for segment in rooted.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    cleaned = "/" + "/".join(parts)
    if rooted.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def _unescape(text: str, *, plus_is_space: bool) -> str:
    """Go's ``url.PathUnescape``/``QueryUnescape``, refusing what Go would refuse or mangle."""
    if "%" not in text and not (plus_is_space and "+" in text):
        return text  # (the target is printable ASCII: nothing to decode)
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise RequestError(f"invalid percent-escape in {text[:80]!r}")
    if plus_is_space:
        text = text.replace("+", " ")
    try:
        decoded = unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("percent-escapes decode to invalid UTF-8") from None
    return decoded


@dataclass(frozen=True, slots=True)
class CanonicalRequest:
    """What dockerd will act on: routing never depends on the raw text or the query."""

    method: str
    version: tuple[int, ...] | None
    """The API version from the path, or ``None`` (dockerd then uses its newest)."""
    path: str
    """The decoded, clean path without the version prefix."""
    endpoint: str
    path_params: Mapping[str, str] = field(hash=False)
    """(Derived from the path, so left out of the hash that caches decisions.)"""
    query: tuple[tuple[str, str], ...]
    kind: str | None = None
    """The kind of object the path names; ``path_params`` holds its reference."""

    @property
    def ref(self) -> str | None:
        """The object named in the path (a name, an ID or an image reference)."""
        if self.kind is None:
            return None
        return self.path_params.get("name") or self.path_params.get("id")

    def param(self, name: str) -> str | None:
        """The first value of a query parameter, as ``r.FormValue`` reads it."""
        return next((value for key, value in self.query if key == name), None)

    def params(self, name: str) -> tuple[str, ...]:
        return tuple(value for key, value in self.query if key == name)


def parse_query(raw: str) -> tuple[tuple[str, str], ...]:
    """Go's ``url.ParseQuery``, failing where Go would silently skip a pair."""
    if ";" in raw:
        raise RequestError("semicolon in query (older Go splits on it, newer Go drops the pair)")
    pairs = []
    for piece in raw.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        pairs.append((_unescape(key, plus_is_space=True), _unescape(value, plus_is_space=True)))
    return tuple(pairs)


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""


def _route_first(candidate: Route) -> str:
    """The literal first segment of a route's template; ``""`` when it is a variable."""
    segment = _first_segment(candidate.template)
    return "" if "{" in segment else segment


def _index(routes: tuple[Route, ...]) -> dict[tuple[str, str], tuple[Route, ...]]:
    """The routes that can match a (method, first path segment), in registration order: a
    literal first segment matches only itself, a variable one every path."""
    firsts = {_route_first(r) for r in routes}
    return {
        (method, first): tuple(
            r for r in routes if r.method == method and _route_first(r) in (first, "")
        )
        for method in {r.method for r in routes}
        for first in firsts | {""}
    }


_ROUTE_INDEX = _index(ROUTES)


def route(method: str, path: str) -> tuple[Route | None, Mapping[str, str]]:
    """The first route dockerd's mux would pick for an already clean, unversioned path."""
    candidates = _ROUTE_INDEX.get((method, _first_segment(path))) or _ROUTE_INDEX.get(
        (method, ""), ()
    )
    for candidate in candidates:
        match = candidate.pattern.fullmatch(path)
        if match:
            return candidate, MappingProxyType(match.groupdict())
    return None, MappingProxyType({})


@memo.cached(lambda method, target: len(target))
def canonicalize(method: str, target: str | bytes) -> CanonicalRequest:
    """Route an origin-form request target as dockerd would, or raise :class:`RequestError`.

    Cached: it is pure, its answer immutable, and clients repeat the same requests.
    """
    if isinstance(target, bytes):
        try:
            target = target.decode("ascii")
        except UnicodeDecodeError:
            raise RequestError("non-ASCII byte in request target") from None
    if not target.startswith("/"):
        raise RequestError("request target is not an absolute path")
    if _UNSERVED_TARGET.search(target):
        raise RequestError("request target holds a control character, space or '#'")
    raw_path, _, raw_query = target.partition("?")
    path = _unescape(raw_path, plus_is_space=False)
    if _CONTROL.search(path):
        raise RequestError("path decodes to a control character")
    if clean_path(path) != path:
        raise RequestError(f"path {path[:80]!r} is not clean (dockerd redirects, never serves it)")
    version: tuple[int, ...] | None = None
    versioned = _VERSIONED.fullmatch(path)
    if versioned:
        version = parse_version(versioned.group(1))
        path = versioned.group(2)
    found, params = route(method, path)
    return CanonicalRequest(
        method=method,
        version=version,
        path=path,
        endpoint=found.endpoint if found else UNKNOWN,
        path_params=params,
        query=parse_query(raw_query),
        kind=found.kind if found else None,
    )
