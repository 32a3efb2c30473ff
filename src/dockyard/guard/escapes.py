"""What in a request would let a container reach the host or another tenant.

Each check reads a body (or a build's query) as dockerd will use it and records *findings*
(an escape class and why) and *needs* (objects the client must own for the request to be
safe, such as the container whose namespaces it joins). Checks are allow-lists wherever the
value space is open (security options, drivers, mount types): an unknown value is a finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from dockyard import labels
from dockyard.guard.gojson import GoJSONError, GoObject, GoValue, decode
from dockyard.guard.request import CanonicalRequest, clean_path

HOST_PATH = "host-path"
"""The kind of need that is not about ownership: a bind source the I/O layer must resolve
(symlinks) on the host and find still inside the allowed prefixes."""


@dataclass(frozen=True, slots=True)
class Need:
    """The client must own ``kind`` ``ref``; ``missing_ok`` when dockerd would create it.

    ``escape`` names the escape class the need stands in for (joining a container's
    namespaces): a profile without ownership cannot settle it and denies instead.
    ``unclaimed_ok`` (images): an unlabelled image whose tag no other owner created through
    the guard counts as the client's too, so a pull may refresh a shared base image but not
    replace a tag another owner built or tagged.
    """

    kind: str
    ref: str
    missing_ok: bool = False
    escape: str | None = None
    unclaimed_ok: bool = False
    create: tuple[tuple[str, str], ...] | None = None
    """(Volumes) when missing, the guard creates it owned, with these driver options, before
    forwarding: dockerd would otherwise create it unlabelled, owned by nobody."""


@dataclass(frozen=True, slots=True)
class Rules:
    """The knobs of the escape checks that profiles set."""

    allow_bind: tuple[str, ...] = ()
    """Host path prefixes that may be bind-mounted."""
    capabilities: frozenset[str] = frozenset()
    """Capabilities that may be added (upper case, without ``CAP_``); never ``ALL``."""
    buildkit: bool = False
    """Whether BuildKit builds (sessions, ``version=2``, outputs) are allowed."""
    grpc: bool = False
    """Whether BuildKit's gRPC Control API (``POST /grpc``, buildx) is allowed: the guard
    reads its frames and judges each Solve (:mod:`.h2grpc`, :mod:`.solve`)."""


@dataclass(slots=True)
class Review:
    """What the checks found in one request."""

    rules: Rules
    findings: list[tuple[str, str]] = field(default_factory=list)
    needs: list[Need] = field(default_factory=list)
    creates_volumes: bool = False
    """Whether the request makes the named volumes it mounts (a container create)."""

    def deny(self, rule: str, reason: str) -> None:
        self.findings.append((rule, reason))

    def need(
        self, kind: str, ref: str, *, missing_ok: bool = False, escape: str | None = None
    ) -> None:
        self.needs.append(Need(kind, ref, missing_ok, escape))


def _present(value: GoValue) -> bool:
    """Whether a field is set to something dockerd acts on (not null, empty or false)."""
    return value not in (None, False, "", 0, ()) and value != GoObject(())


def under_prefix(path: str, prefixes: Iterable[str]) -> bool:
    """Whether absolute host ``path``, once cleaned, lies in one of ``prefixes``."""
    cleaned = clean_path(path).rstrip("/") or "/"
    for prefix in prefixes:
        root = clean_path(prefix).rstrip("/")
        if root and (cleaned == root or cleaned.startswith(root + "/")):
            return True
    return False


def _host_path(review: Review, source: str, where: str) -> None:
    if not source.startswith("/"):
        review.deny("mounts", f"{where}: bind source {source!r} is not an absolute path")
    elif not under_prefix(source, review.rules.allow_bind):
        review.deny("mounts", f"{where}: host path {source!r} is outside the allowed prefixes")
    else:
        # A symlink under the prefix could point anywhere: dockerd follows it at start.
        review.need(HOST_PATH, clean_path(source).rstrip("/"), missing_ok=True)


_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def _volume(
    review: Review, name: str, where: str, options: tuple[tuple[str, str], ...] = ()
) -> None:
    """A named volume: dockerd creates it if missing, so only someone else's is a problem;
    on a container create the guard makes a missing one first, owned by the client."""
    if _VOLUME_NAME.fullmatch(name):
        create = options if review.creates_volumes else None
        review.needs.append(Need("volume", name, missing_ok=True, create=create))
    else:
        review.deny("mounts", f"{where}: {name!r} is neither a volume name nor a host path")


def _container_ref(review: Review, value: str, where: str) -> bool:
    """``container:<ref>`` modes join another container: it must be the client's own."""
    kind, _, ref = value.partition(":")
    if kind.strip().lower() != "container":
        return False
    if not ref:
        review.deny("namespaces", f"{where}: {value!r} names no container")
    else:
        review.need("container", ref, escape="namespaces")
    return True


# Namespace fields and the plain values that keep the container in its own namespace.
_NAMESPACES: dict[str, frozenset[str]] = {
    "PidMode": frozenset({""}),
    "IpcMode": frozenset({"", "none", "private", "shareable"}),
    "UTSMode": frozenset({""}),
    "UsernsMode": frozenset({""}),
    "CgroupnsMode": frozenset({"", "private"}),
    "Cgroup": frozenset({""}),
}
_JOINABLE = frozenset({"PidMode", "IpcMode", "Cgroup", "NetworkMode"})
_DEFAULT_NETWORKS = frozenset({"", "default", "bridge", "none"})
_SAFE_SECURITY_OPTS = frozenset({"seccomp=builtin", "apparmor=docker-default"})
_LOG_DRIVERS = frozenset({"", "json-file", "local", "none"})
_TMPFS_OPTIONS = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"})


def _namespaces(review: Review, config: GoObject, where: str) -> None:
    for name, plain in _NAMESPACES.items():
        value = config.string(name) or ""
        if value.strip().lower() in plain:
            continue
        if name in _JOINABLE and _container_ref(review, value, f"{where}.{name}"):
            continue
        review.deny("namespaces", f"{where}.{name}={value!r}")
    network = config.string("NetworkMode") or ""
    if network.strip().lower() == "host":
        review.deny("namespaces", f"{where}.NetworkMode={network!r}")
    elif network not in _DEFAULT_NETWORKS and not _container_ref(
        review, network, f"{where}.NetworkMode"
    ):
        review.need("network", network)


def capability(name: str) -> str:
    """A capability as dockerd normalizes it: upper case, without the ``CAP_`` prefix."""
    upper = name.strip().upper()
    return upper.removeprefix("CAP_")


def _security_opt(review: Review, option: str, where: str) -> None:
    key = re.split("[=:]", option, maxsplit=1)[0]
    if key.strip().lower() == "no-new-privileges":
        return
    if option.strip() in _SAFE_SECURITY_OPTS:
        return
    review.deny("security-options", f"{where}.SecurityOpt {option[:80]!r}")


def volume_options(
    review: Review, driver: str | None, options: GoObject | None, where: str
) -> None:
    """A volume's driver and options: only the local driver, and only tmpfs or a size."""
    if (driver or "local").strip() != "local":
        review.deny("volume-driver", f"{where}: volume driver {driver!r}")
    opts = options.entries() if options else {}
    if not opts:
        return
    if any(not isinstance(value, str) for value in opts.values()):
        review.deny("volume-driver", f"{where}: non-string driver option")
        return
    kind, device, mount = opts.get("type", ""), opts.get("device", ""), opts.get("o", "")
    unknown = set(opts) - {"type", "device", "o", "size"}
    tokens = {str(token).partition("=")[0].strip() for token in str(mount).split(",") if token}
    tmpfs = kind == "tmpfs" and device == "tmpfs" and tokens <= _TMPFS_OPTIONS
    plain = not kind and not device and not mount
    if unknown or not (tmpfs or plain):
        review.deny("mounts", f"{where}: driver options {sorted(opts)} mount a host path or device")


def _mount(review: Review, mount: GoValue, where: str) -> None:
    if not isinstance(mount, GoObject):
        review.deny("mounts", f"{where}: mount is not an object")
        return
    kind = (mount.string("Type") or "").strip().lower()
    source = mount.string("Source") or ""
    if kind == "bind":
        _host_path(review, source, where)
    elif kind == "volume":
        options = mount.obj("VolumeOptions")
        driver = options.obj("DriverConfig") if options else None
        opts: GoObject | None = None
        if driver:
            opts = driver.obj("Options")
            volume_options(review, driver.string("Name"), opts, where)
        if options:
            _labels(review, options.get("Labels"), f"{where}.VolumeOptions.Labels")
        if source:
            pairs = tuple((k, v) for k, v in (opts.entries() if opts else {}).items())
            _volume(review, source, where, tuple((k, v) for k, v in pairs if isinstance(v, str)))
    elif kind != "tmpfs":
        review.deny("mounts", f"{where}: mount type {kind!r}")


def _bind(review: Review, bind: str, where: str) -> None:
    """A ``Binds`` entry: ``src:dst[:opts]``; an absolute ``src`` is a host path."""
    source, sep, _ = bind.partition(":")
    if not sep:
        return  # a lone container path: an anonymous volume
    if source.startswith("/"):
        _host_path(review, source, where)
    else:
        _volume(review, source, where)


def host_config(review: Review, config: GoObject, where: str) -> None:
    """Every escape class a HostConfig (or its Resources, for update) can carry."""
    if config.boolean("Privileged"):
        review.deny("privileged", f"{where}.Privileged")
    for name in config.strings("CapAdd"):
        if capability(name) == "ALL" or capability(name) not in review.rules.capabilities:
            review.deny("capabilities", f"{where}.CapAdd {name!r}")
    if config.strings("Capabilities"):
        review.deny("capabilities", f"{where}.Capabilities")
    for name in ("Devices", "DeviceCgroupRules", "DeviceRequests"):
        if _present(config.get(name)):
            review.deny("devices", f"{where}.{name}")
    _namespaces(review, config, where)
    for bind in config.strings("Binds"):
        _bind(review, bind, f"{where}.Binds")
    for mount in config.array("Mounts") or ():
        _mount(review, mount, f"{where}.Mounts")
    if config.strings("VolumesFrom"):
        review.deny("volumes-from", f"{where}.VolumesFrom")
    for link in config.strings("Links"):
        review.need("container", link.partition(":")[0])
    volume_driver = config.string("VolumeDriver")
    if volume_driver:
        volume_options(review, volume_driver, None, f"{where}.VolumeDriver")
    for option in config.strings("SecurityOpt"):
        _security_opt(review, option, where)
    for name in ("MaskedPaths", "ReadonlyPaths"):
        if config.get(name) is not None:
            review.deny("security-options", f"{where}.{name} overrides the masked paths")
    if (config.string("Runtime") or "runc") != "runc":
        review.deny("runtime", f"{where}.Runtime={config.string('Runtime')!r}")
    if config.string("CgroupParent"):
        review.deny("cgroup-parent", f"{where}.CgroupParent")
    if _present(config.get("Sysctls")):
        review.deny("sysctls", f"{where}.Sysctls")
    log_config = config.obj("LogConfig")
    log_driver = (log_config.string("Type") if log_config else None) or ""
    if log_driver not in _LOG_DRIVERS:
        review.deny("log-driver", f"{where}.LogConfig.Type={log_driver!r}")


def _labels(review: Review, value: GoValue, where: str) -> None:
    """Clients may not set dockyard's own labels: ownership is derived from them."""
    if value is None:
        return
    if not isinstance(value, GoObject):
        review.deny("labels", f"{where}: labels are not an object")
        return
    for key in value.entries():
        if key.strip().lower().startswith(labels.PREFIX):
            review.deny("labels", f"{where}: label {key!r} is reserved for dockyard")


def _endpoints(review: Review, endpoints: GoObject | None, where: str) -> None:
    for network, settings in (endpoints.entries() if endpoints else {}).items():
        if network.strip().lower() == "host":
            review.deny("namespaces", f"{where}: endpoint on the host network")
        elif network not in _DEFAULT_NETWORKS:
            review.need("network", network)
        _endpoint_settings(review, settings, f"{where}[{network}]")


def _endpoint_settings(review: Review, settings: GoValue, where: str) -> None:
    if settings is None:
        return
    if not isinstance(settings, GoObject):
        review.deny("network", f"{where}: endpoint settings are not an object")
        return
    if _present(settings.get("DriverOpts")):
        review.deny("network", f"{where}.DriverOpts")
    for link in settings.strings("Links"):
        review.need("container", link.partition(":")[0])


def container_create(review: Review, body: GoObject) -> None:
    """The create body, including HostConfig fields at its top level.

    dockerd up to 26.x embeds HostConfig in the create wrapper, so without a ``HostConfig``
    key it takes host settings from the top level, for every API version (a few, such as
    ``VolumeDriver``, even when the key is present). 27.0 dropped this; checking both is right
    for every daemon.
    """
    _labels(review, body.get("Labels"), "Labels")
    review.creates_volumes = True
    host_config(review, body, "(top level)")
    nested = body.obj("HostConfig")
    if nested is not None:
        host_config(review, nested, "HostConfig")
    networking = body.obj("NetworkingConfig")
    if networking is not None:
        _endpoints(review, networking.obj("EndpointsConfig"), "NetworkingConfig")


def container_start(review: Review, body: GoObject) -> None:
    """dockerd before 24.0 applies a HostConfig sent to start (API < 1.24): none is allowed."""
    if body.pairs:
        review.deny("legacy", "a body on start sets a HostConfig on older daemons")


def container_exec(review: Review, body: GoObject) -> None:
    if body.boolean("Privileged"):
        review.deny("privileged", "privileged exec")


def volume_create(review: Review, body: GoObject) -> None:
    _labels(review, body.get("Labels"), "Labels")
    volume_options(review, body.string("Driver"), body.obj("DriverOpts"), "volume")
    if body.get("ClusterVolumeSpec") is not None:
        review.deny("volume-driver", "cluster volumes")


_NETWORK_OPTIONS = frozenset(
    {
        "com.docker.network.bridge.enable_icc",
        "com.docker.network.bridge.enable_ip_masquerade",
        "com.docker.network.driver.mtu",
    }
)


def network_create(review: Review, body: GoObject) -> None:
    _labels(review, body.get("Labels"), "Labels")
    driver = body.string("Driver") or "bridge"
    if driver != "bridge":
        review.deny("network-driver", f"network driver {driver!r}")
    options = body.obj("Options")
    for key in options.entries() if options else {}:
        if key not in _NETWORK_OPTIONS:
            review.deny("network", f"network option {key!r}")
    for name in ("ConfigFrom", "ConfigOnly", "Ingress"):
        if _present(body.get(name)):
            review.deny("network", f"network {name}")
    if (body.string("Scope") or "local") != "local":
        review.deny("network", f"network scope {body.string('Scope')!r}")
    ipam = body.obj("IPAM")
    if ipam is not None and (ipam.string("Driver") or "default") != "default":
        review.deny("network-driver", f"IPAM driver {ipam.string('Driver')!r}")


def network_attach(review: Review, body: GoObject) -> None:
    container = body.string("Container")
    if container:
        review.need("container", container)
    _endpoint_settings(review, body.get("EndpointConfig"), "EndpointConfig")


def _service_network(review: Review, network: GoValue, where: str) -> None:
    """A swarm attachment (``{"Target": name-or-id}``): the host network is the host's."""
    target = network.string("Target") if isinstance(network, GoObject) else None
    if target is None:
        review.deny("network", f"service {where}: attachment without a target")
    elif target.strip().lower() == "host":
        review.deny("namespaces", f"service {where}: the host network")
    elif target not in _DEFAULT_NETWORKS:
        review.need("network", target)
    else:
        review.deny("network", f"service {where}: network {target!r} is not a swarm network")


def service_spec(review: Review, body: GoObject) -> None:
    """A swarm service: its container spec must be as harmless as a container."""
    _labels(review, body.get("Labels"), "Labels")
    task = body.obj("TaskTemplate") or GoObject(())
    if task.get("PluginSpec") is not None or task.obj("Runtime") is not None:
        review.deny("plugin", "service runs a plugin")
    spec = task.obj("ContainerSpec") or GoObject(())
    privileges = spec.obj("Privileges") or GoObject(())
    for name in ("Seccomp", "AppArmor"):
        mode = (privileges.obj(name) or GoObject(())).string("Mode") or "default"
        if mode != "default":
            review.deny("security-options", f"service {name} mode {mode!r}")
    if privileges.get("SELinuxContext") is not None or privileges.get("CredentialSpec"):
        review.deny("security-options", "service SELinux context or credential spec")
    for name in spec.strings("CapabilityAdd"):
        if capability(name) == "ALL" or capability(name) not in review.rules.capabilities:
            review.deny("capabilities", f"service CapabilityAdd {name!r}")
    for mount in spec.array("Mounts") or ():
        _mount(review, mount, "ContainerSpec.Mounts")
    if _present(spec.get("Sysctls")):
        review.deny("sysctls", "service Sysctls")
    for where, networks in (("TaskTemplate.Networks", task), ("Networks", body)):
        for network in networks.array("Networks") or ():
            _service_network(review, network, where)
    resources = task.obj("Resources") or GoObject(())
    if _present((resources.obj("Reservations") or GoObject(())).get("GenericResources")):
        review.deny("devices", "service generic resources")


_BUILD_NETWORKS = frozenset({"", "default", "bridge", "none"})
CLIENT_SESSION = "client-session"
"""The ``remote`` of a build whose context comes from the client's session (BuildKit)."""
SESSION = "session"
"""The kind of need for a BuildKit session: one the client opened itself and holds open."""
BUILD_ID = "build-id"
"""The kind of need for a running build of the client's own (its ``buildid``)."""
UPLOAD_REQUEST = "upload-request"
"""The ``remote`` of a BuildKit build whose context tar is sent apart (tagged by build ID)."""
_UPLOAD_PREFIX = UPLOAD_REQUEST + ":"
_CLIENT_EXPORTERS = frozenset({"local", "tar", "cacheonly"})
"""Exporters that send the result back through the client's own session (or nowhere)."""
_IMAGE_EXPORTER = "moby"
"""dockerd's image exporter: its ``name`` attribute tags images."""


def build_outputs(review: Review, request: CanonicalRequest) -> list[str]:
    """A BuildKit build's ``outputs`` (``[{"Type": ..., "Attrs": {...}}]``, decoded as Go
    does); the tags its image exporter names. dockerd 20.10 knows the exporters ``moby``,
    ``local`` and ``tar``: any other type is refused, as a newer daemon's could push."""
    tags: list[str] = []
    for text in request.params("outputs"):
        if not text.strip():
            continue
        try:
            outputs = decode(text)
        except GoJSONError as exc:
            review.deny("build", f"build outputs: {exc}")
            continue
        if not isinstance(outputs, tuple):
            review.deny("build", "build outputs are not a JSON array")
            continue
        for output in outputs:
            kind = output.string("Type") if isinstance(output, GoObject) else None
            attrs = output.obj("Attrs") if isinstance(output, GoObject) else None
            if kind in _CLIENT_EXPORTERS:
                continue
            if kind != _IMAGE_EXPORTER:
                review.deny("build", f"build output type {str(kind)[:40]!r}")
                continue
            names = (attrs.string("name") or "") if attrs else ""
            tags.extend(name.strip() for name in names.split(",") if name.strip())
    return tags


def build_tags(request: CanonicalRequest) -> list[str]:
    """Every tag a build writes: its ``t`` parameters and its image exporter's names."""
    return [*request.params("t"), *build_outputs(Review(Rules(buildkit=True)), request)]


def build_cancel(review: Review, request: CanonicalRequest) -> None:
    """``/build/cancel?id=ID`` stops a build: only one of the client's own."""
    for build_id in request.params("id"):
        review.need(BUILD_ID, build_id)


def build_query(review: Review, request: CanonicalRequest) -> None:
    """``POST /build`` reads everything from the query (every value counts, not just the
    first, so a repeated parameter cannot hide behind an innocent one). A BuildKit build
    (``version=2``) is judged on the same parameters as a legacy one; its context comes
    from the client's session (``remote=client-session``), which must be the client's own."""
    for mode in request.params("networkmode"):
        if mode.strip().lower() not in _BUILD_NETWORKS:
            review.deny("build", f"build networkmode={mode!r}")
    sessions = [value for value in request.params("session") if value]
    for remote in request.params("remote"):
        if remote in (CLIENT_SESSION, UPLOAD_REQUEST) and review.rules.buildkit and sessions:
            continue
        if remote:
            review.deny("build", "remote build context")
    build_ids = set(request.params("buildid"))
    if len(build_ids) > 1:
        review.deny("build", "a build with more than one buildid")
    for build_id in build_ids:
        if build_id.startswith(_UPLOAD_PREFIX):
            review.need(BUILD_ID, build_id.removeprefix(_UPLOAD_PREFIX))
    if any(request.params("cgroupparent")):
        review.deny("cgroup-parent", "build cgroupparent")
    if request.params("securityopt"):
        review.deny("security-options", "build securityopt")
    for isolation in request.params("isolation"):
        if isolation.strip().lower() not in ("", "default"):
            review.deny("build", f"build isolation={isolation[:40]!r}")
    if not review.rules.buildkit:
        if any(value.strip() not in ("", "1") for value in request.params("version")):
            review.deny("buildkit", "BuildKit builds are not allowed by this profile")
        if any(request.params("outputs")) or sessions:
            review.deny("buildkit", "build outputs and sessions need BuildKit")
    for session in sessions:
        review.need(SESSION, session)
    for text in request.params("labels"):
        try:
            _labels(review, decode(text), "build labels")
        except GoJSONError as exc:
            review.deny("build", f"build labels: {exc}")
    for tag in [*request.params("t"), *build_outputs(review, request)]:
        review.need("image", tag, missing_ok=True)
