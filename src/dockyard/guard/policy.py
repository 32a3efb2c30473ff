"""Profiles and verdicts: the guard's one decision, as a pure function of plain data.

``evaluate`` never looks anything up. What needs the engine's state (does this client own
container X?) comes back as data in the :class:`Verdict` for the I/O layer to settle with one
lookup, failing closed: a missing object is a denial unless the need says dockerd would
create it. Likewise the labels to stamp on created objects and the owner filter to add to
lists, events and prunes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import MappingProxyType

from dockyard import labels
from dockyard.guard import escapes, memo
from dockyard.guard.escapes import HOST_PATH, Need, Review, Rules
from dockyard.guard.gojson import GoJSONError, GoObject
from dockyard.guard.request import UNKNOWN, CanonicalRequest


@dataclass(frozen=True, slots=True)
class Profile:
    """What a client may do: endpoint patterns (``fnmatch``), escape rules and ownership."""

    name: str
    allow: frozenset[str]
    deny: frozenset[str] = frozenset()
    escapes: bool = True
    """Check bodies and build queries for every escape class (off only for ``allow-all``)."""
    ownership: bool = True
    """Confine the client to the objects it created, and stamp those."""
    rules: Rules = field(default_factory=Rules)

    def permits(self, endpoint: str) -> bool:
        return not _matches(self.deny, endpoint) and _matches(self.allow, endpoint)


@memo.cached(lambda patterns, endpoint: len(endpoint))
def _matches(patterns: frozenset[str], endpoint: str) -> bool:
    """(Cached: endpoints are the route table's few names, and this runs per request.)"""
    return any(fnmatchcase(endpoint, pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class Verdict:
    allow: bool
    rule: str
    reason: str
    needs: tuple[Need, ...] = ()
    """Objects the client must own, and host paths to resolve (kind ``host-path``); the I/O
    layer denies if a lookup fails or disagrees."""
    stamp_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Labels to add to the object this request creates."""
    owner_filter: str | None = None
    """A ``label=`` filter to add to a list, events or prune request."""

    @property
    def message(self) -> str:
        """The 403 message the docker CLI prints."""
        return f"dockyard guard: {self.rule}: {self.reason}"


def deny(rule: str, reason: str) -> Verdict:
    return Verdict(allow=False, rule=rule, reason=reason)


BodyCheck = Callable[[Review, GoObject], None]

BODY_CHECKS: Mapping[str, BodyCheck] = MappingProxyType(
    {
        "container.create": escapes.container_create,
        "container.update": lambda review, body: escapes.host_config(review, body, "update"),
        "container.start": escapes.container_start,
        "container.exec": escapes.container_exec,
        "volume.create": escapes.volume_create,
        "network.create": escapes.network_create,
        "network.connect": escapes.network_attach,
        "network.disconnect": escapes.network_attach,
        "service.create": escapes.service_spec,
        "service.update": escapes.service_spec,
    }
)

PLUGIN_INSTALLS = frozenset(
    {"plugin.pull", "plugin.upgrade", "plugin.enable", "plugin.set", "plugin.create"}
)
"""Plugins run as root with the privileges they ask for: never allowed while escapes count."""

BUILDKIT_ENDPOINTS = frozenset({"session", "grpc"})

# Ownership: per-object endpoints whose object anyone may read (shared base images).
SHARED_READS = frozenset(
    {
        "image.inspect",
        "image.history",
        "image.save",
        "image.attestations",
        "image.push",
        "distribution.inspect",
    }
)
OWNED_KINDS = frozenset({"container", "exec", "volume", "network", "image"})
FILTERED = frozenset(
    {
        "container.list",
        "container.prune",
        "image.list",
        "image.prune",
        "volume.list",
        "volume.prune",
        "network.list",
        "network.prune",
        "system.events",
    }
)
STAMPED = frozenset({"container.create", "volume.create", "network.create", "build"})
CREATES: Mapping[str, str] = MappingProxyType(
    {"container.create": "container", "network.create": "network", "container.exec": "exec"}
)
"""Endpoints whose answer's ``Id`` names an object the client now owns: stamped with its
owner, or (an exec) made on a container it was checked to own."""


def _image_ref(repo: str, tag: str | None) -> str:
    return f"{repo}:{tag}" if tag else repo


ALL_TAGS = "*"
"""What :func:`pulled_tag` answers for a pull of a repository's every tag."""


def pulled_tag(request: CanonicalRequest) -> str | None:
    """The tag an ``image.create`` pull writes (``fromImage`` with ``tag``, read as dockerd
    does), ``None`` for a pull by digest alone (content-addressed: it moves no tag) or an
    import, and :data:`ALL_TAGS` for a repository without tag or digest (``pull -a``)."""
    image = (request.param("fromImage") or "").removesuffix(":")
    if request.endpoint != "image.create" or not image:
        return None
    tag = request.param("tag") or ""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    repo, in_name = (name[:colon], name[colon + 1 :]) if colon > slash else (name, "")
    if tag and ":" not in tag:  # dockerd's WithTag: the tag parameter replaces the name's
        return f"{repo}:{tag}"
    if in_name:
        return f"{repo}:{in_name}"
    if digest or tag:
        return None
    return ALL_TAGS


def confine(request: CanonicalRequest, owner: str) -> Verdict:
    """The needs, stamps and filters that keep a client to its own objects (alone, they are
    what warn and audit modes still apply to a request the profile would deny)."""
    needs: list[Need] = []
    ref = request.ref
    if request.kind in OWNED_KINDS and ref is not None and request.endpoint not in SHARED_READS:
        if request.endpoint == "image.tag":
            repo = request.param("repo")
            if repo:
                needs.append(Need("image", _image_ref(repo, request.param("tag")), True))
        else:
            needs.append(Need(request.kind or "", ref))
    if request.endpoint == "commit":
        needs.append(Need("container", request.param("container") or ""))
    pulled = pulled_tag(request)
    if pulled is not None and pulled != ALL_TAGS:
        # A pull moves its tag: absent, an unclaimed base image, or the client's own.
        needs.append(Need("image", pulled, missing_ok=True, unclaimed_ok=True))
    owned = f"{labels.OWNER}={owner}"
    return Verdict(
        allow=True,
        rule="allow",
        reason="",
        needs=tuple(needs),
        stamp_labels=MappingProxyType({labels.OWNER: owner} if request.endpoint in STAMPED else {}),
        owner_filter=owned if request.endpoint in FILTERED else None,
    )


def _escapes(request: CanonicalRequest, body: GoObject | None, rules: Rules) -> Review:
    review = Review(rules)
    endpoint = request.endpoint
    if endpoint in PLUGIN_INSTALLS:
        review.deny("plugin", f"{endpoint} installs or grants privileges to a plugin")
    if endpoint in BUILDKIT_ENDPOINTS and not rules.buildkit:
        review.deny("buildkit", "BuildKit sessions are not allowed by this profile")
    elif endpoint == "grpc" and not rules.grpc:
        review.deny("buildkit", "BuildKit's gRPC API (buildx) is not allowed by this profile")
    if endpoint == "build":
        escapes.build_query(review, request)
    if endpoint == "build.cancel":
        escapes.build_cancel(review, request)
    if endpoint == "image.create" and (
        any(request.params("fromSrc")) or not request.param("fromImage")
    ):
        # dockerd imports whenever fromImage is empty, whatever fromSrc says.
        review.deny("image", "image import can overwrite any tag")
    check = BODY_CHECKS.get(endpoint)
    if check is not None:
        check(review, body or GoObject(()))
    return review


def evaluate(
    request: CanonicalRequest, body: GoObject | None, profile: Profile, owner: str
) -> Verdict:
    """The verdict on a routed request whose JSON body (if any) is already decoded.

    ``body`` is ``None`` for an empty body; dockerd then decodes nothing, which the checks
    read as an empty object.
    """
    if body is None:
        return _bodiless(request, profile, owner)
    return _evaluate(request, body, profile, owner)


@memo.cached(lambda request, profile, owner: len(request.path) + _query_size(request))
def _bodiless(request: CanonicalRequest, profile: Profile, owner: str) -> Verdict:
    """(Cached: most requests have no body, clients repeat them, and verdicts are immutable.)"""
    return _evaluate(request, None, profile, owner)


def _query_size(request: CanonicalRequest) -> int:
    return sum(len(name) + len(value) for name, value in request.query)


def _evaluate(
    request: CanonicalRequest, body: GoObject | None, profile: Profile, owner: str
) -> Verdict:
    if request.endpoint == UNKNOWN:
        return deny("route", f"{request.method} {request.path[:120]} is not an Engine API route")
    if not profile.permits(request.endpoint):
        return deny("endpoint", f"{request.endpoint} is not allowed by profile {profile.name}")
    needs: list[Need] = []
    if profile.escapes:
        try:
            review = _escapes(request, body, profile.rules)
        except GoJSONError as exc:
            return deny("body", str(exc))
        if review.findings:
            rule, reason = review.findings[0]
            return deny(rule, reason)
        needs.extend(review.needs)
    if not profile.ownership:
        for need in needs:
            if need.escape:
                return deny(need.escape, f"joining {need.kind} {need.ref!r} needs ownership")
        paths = tuple(need for need in needs if need.kind == HOST_PATH)
        return Verdict(allow=True, rule="allow", reason=f"profile {profile.name}", needs=paths)
    if pulled_tag(request) == ALL_TAGS:
        return deny(
            "image",
            f"pulling every tag of {request.param('fromImage')!r} could overwrite tags of "
            "other owners; pull one tag",
        )
    owned = confine(request, owner)
    return Verdict(
        allow=True,
        rule="allow",
        reason=f"profile {profile.name}",
        needs=owned.needs + tuple(dict.fromkeys(needs)),
        stamp_labels=owned.stamp_labels,
        owner_filter=owned.owner_filter,
    )
