"""Facts about a stack -> findings with a cause and a fix: pure, so every failure is unit-tested.

Each check is a small function of :class:`Facts` returning one :class:`Finding`, or ``None``
when it does not apply (TLS checks in socket mode, CI-side checks while the CI container is
down). Causes are phrased the way users meet them: the error the docker CLI printed, then why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from dockyard import labels, pki
from dockyard.engine.disk import DiskUse, disk_verdict
from dockyard.engine.service import DEFAULT_MTU
from dockyard.engine.spec import PLAIN_PORT, SERVER_TLS_DIR, TLS_PORT
from dockyard.images import recipes
from dockyard.stack.plan import (
    CERT_PATH,
    ENGINE_ALIAS,
    HOST_SOCKET,
    REGISTRY_ALIAS,
    REGISTRY_PORT,
    Names,
)

Status = Literal["ok", "warn", "fail"]
BASE_IMAGE = recipes.recipe(recipes.BASE).ref

REGISTRY = f"{REGISTRY_ALIAS}:{REGISTRY_PORT}"
CERT_FILES = (pki.CA_CERT, pki.CERT, pki.KEY)
TLS_ENV = ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
NOT_RUNNABLE = (126, 127)  # the shell's "cannot execute" and "command not found"
REBUILD = "dockyard down, then dockyard up (volumes are kept)"
_TRUE = ("1", "t", "true")  # Go's strconv.ParseBool, lower-cased
_FALSE = ("0", "f", "false")


@dataclass(frozen=True)
class Finding:
    """One conclusion: what was checked, how it went, why, and what to do about it."""

    check: str
    status: Status
    cause: str
    fix: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Container:
    """A container as the host engine reports it; ``status`` is ``missing`` when absent."""

    name: str
    status: str = "missing"  # or Docker's: created, running, paused, restarting, exited, dead
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""  # State.Error: why Docker could not start it
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # the command line after the entrypoint
    networks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # network -> aliases
    log_tail: str = ""

    @property
    def exists(self) -> bool:
        return self.status != "missing"

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class Network:
    name: str
    exists: bool = False
    mtu: int | None = None  # its com.docker.network.driver.mtu option; None means the default


@dataclass(frozen=True)
class Run:
    """A command run in the CI container with the CI's own environment and user."""

    code: int  # -1 when it could not be run at all
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def last_line(self) -> str:
        """The CLI's error is its last line; earlier ones are usage noise."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else f"no output (exit code {self.code})"


@dataclass(frozen=True)
class CertFile:
    """A file of ``DOCKER_CERT_PATH`` as the CI user reads it: its bytes, or the error."""

    path: str
    content: bytes | None = None
    error: str = ""


@dataclass(frozen=True)
class SocketStat:
    """The Docker socket as the CI container sees it, and who the CI user is."""

    path: str
    error: str = ""  # why stat failed: the socket is not mounted
    kind: str = "socket"  # stat's %F; "directory" when Docker created a missing bind source
    mode: int = 0o660
    uid: int = 0
    gid: int = 0
    user: int = 0  # the CI user's uid
    groups: tuple[int, ...] = ()

    @property
    def usable(self) -> bool:
        """Whether the CI user may connect: that needs write permission on the socket."""
        if self.user == 0:
            return True
        if self.user == self.uid:
            return bool(self.mode & 0o200)
        if self.gid in self.groups:
            return bool(self.mode & 0o020)
        return bool(self.mode & 0o002)


@dataclass(frozen=True)
class EngineTLS:
    """The engine's own TLS files, read from its container: the issuer whose clients it
    accepts (``--tlscacert``) and the certificate it presents (``--tlscert``)."""

    client_ca: bytes | None = None
    server_cert: bytes | None = None


@dataclass(frozen=True)
class DaemonInfo:
    """What ``docker info`` through the CI's environment says about the engine it reaches."""

    driver: str
    insecure_registries: tuple[str, ...] = ()  # index names trusted over plain HTTP


@dataclass(frozen=True)
class MirrorState:
    """A pull-through cache on this host, and the cause of trouble its own log names."""

    name: str
    upstream: str
    status: str = "missing"
    networks: tuple[str, ...] = ()
    problem: tuple[str, str, str] | None = None  # (what, evidence, fix)
    log_tail: str = ""


@dataclass(frozen=True)
class Facts:
    """Everything the checks need, as plain data; ``None`` means not observed."""

    stack: str
    now: datetime
    host_error: str = ""  # the host's engine did not answer: nothing else was gathered
    network: Network | None = None
    engine: Container | None = None
    registry: Container | None = None
    ci: Container | None = None
    host_ca: bytes | None = None  # this host's dockyard CA certificate
    engine_tls: EngineTLS | None = None
    resolve: Run | None = None  # getent hosts docker
    api: Run | None = None  # docker version
    info: DaemonInfo | None = None
    registry_http: Run | None = None  # curl http://registry:5000/v2/
    socket: SocketStat | None = None
    certs: tuple[CertFile, ...] = ()
    mirrors: tuple[MirrorState, ...] = ()  # every cache on the host (stacks' and pools')
    parts: frozenset[str] = frozenset()  # components of the stack's volumes that exist
    base_image: Run | None = None  # docker image inspect BASE, from the CI container
    data_root: DiskUse | None = None  # the engine's /var/lib/docker

    @property
    def names(self) -> Names:
        return Names(self.stack)

    @property
    def dind(self) -> bool:
        """Engine mode: an engine exists, or the CI container is pointed at one over TCP."""
        if self.engine is not None and self.engine.exists:
            return True
        # a half-made stack: only a dind stack has these volumes
        return self.docker_host.startswith("tcp://") or bool(self.parts & {"engine-cache", "certs"})

    @property
    def docker_host(self) -> str:
        return self.ci.env.get("DOCKER_HOST", "") if self.ci is not None else ""

    @property
    def engine_up(self) -> bool:
        return self.engine is not None and self.engine.running


# --- the engine's command line ---------------------------------------------------------------


@dataclass(frozen=True)
class DaemonFlags:
    """What an engine's dockerd command line says about how it serves."""

    tcp_hosts: tuple[str, ...] = ()  # HOST:PORT of each -H tcp://...
    tls: bool | None = None  # --tls, None when not given
    tlsverify: bool | None = None  # --tlsverify, None when not given
    mtu: int | None = None
    storage_driver: str | None = None
    insecure_registries: tuple[str, ...] = ()
    tlscacert: str = f"{SERVER_TLS_DIR}/{pki.CA_CERT}"
    tlscert: str = f"{SERVER_TLS_DIR}/{pki.CERT}"

    @property
    def serves_tls(self) -> bool:
        return bool(self.tlsverify or self.tls)

    @property
    def tcp_ports(self) -> tuple[int, ...]:
        return tuple(p for p in (urlsplit(f"tcp://{h}").port for h in self.tcp_hosts) if p)

    @property
    def startup_delay(self) -> bool:
        """dockerd 20.10+ sleeps 15 s before serving a non-loopback TCP listener without
        --tlsverify unless --tls says what is meant (``checkTLSAuthOK`` in cmd/dockerd)."""
        public = any(not _loopback(urlsplit(f"tcp://{h}").hostname or "") for h in self.tcp_hosts)
        return public and self.tlsverify is not True and self.tls is None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_VALUED = {"-H": "host", "--host": "host", "--mtu": "mtu", "-s": "storage-driver"} | {
    f"--{name}": name for name in ("storage-driver", "insecure-registry", "tlscacert", "tlscert")
}
_BOOLEAN = {"--tls": "tls", "--tlsverify": "tlsverify"}


def daemon_flags(args: Sequence[str]) -> DaemonFlags:
    """Parse the dockerd flags doctor cares about, in both ``--f=v`` and ``--f v`` forms."""
    values: dict[str, list[str]] = {}
    items = iter(args)
    for arg in items:
        flag, sep, value = arg.partition("=")
        if flag in _VALUED:
            values.setdefault(_VALUED[flag], []).append(value if sep else next(items, ""))
        elif flag in _BOOLEAN:
            values.setdefault(_BOOLEAN[flag], []).append(value if sep else "true")
    hosts = tuple(
        h.removeprefix("tcp://") for h in values.get("host", []) if h.startswith("tcp://")
    )
    mtu = values.get("mtu", [""])[-1]
    return DaemonFlags(
        tcp_hosts=hosts,
        tls=_flag_bool(values.get("tls")),
        tlsverify=_flag_bool(values.get("tlsverify")),
        mtu=int(mtu) if mtu.isdigit() else None,
        storage_driver=values.get("storage-driver", [None])[-1],
        insecure_registries=tuple(values.get("insecure-registry", [])),
        **{key: values[key][-1] for key in ("tlscacert", "tlscert") if key in values},
    )


def _flag_bool(given: list[str] | None) -> bool | None:
    if not given:
        return None
    value = given[-1].lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _engine_serves(engine: Container) -> tuple[tuple[int, ...], bool] | None:
    """The TCP ports the engine listens on and whether with TLS; from its command line, else
    from its endpoint label (an image whose entrypoint builds the flags itself)."""
    flags = daemon_flags(engine.args)
    if flags.tcp_ports:
        return flags.tcp_ports, flags.serves_tls
    port = urlsplit(engine.labels.get(labels.ENDPOINT, "")).port
    return ((port,), port != PLAIN_PORT) if port else None


# --- helpers shared by checks ----------------------------------------------------------------


def _state(check: str, what: str, container: Container | None, fix: str) -> Finding | None:
    """Whether a container runs; if not, how it stopped (the log tail says why)."""
    if container is None:
        return None
    name = container.name
    if not container.exists:
        return Finding(check, "fail", f"{what} container {name} does not exist", fix)
    if container.running:
        return Finding(check, "ok", f"{what} container {name} is running")
    if container.status == "restarting":
        cause = f"{what} container {name} keeps crashing (last exit code {container.exit_code})"
    elif container.status == "paused":
        return Finding(
            check, "fail", f"{what} container {name} is paused", f"docker unpause {name}"
        )
    elif container.status == "created":
        cause = f"{what} container {name} was created but never started"
    else:
        cause = f"{what} container {name} is not running (it exited with code "
        cause += f"{container.exit_code})"
    if container.oom_killed:
        cause += ": it ran out of memory"
        fix = "give it more memory, then: " + fix
    if container.error:
        cause += f": {container.error}"
    return Finding(check, "fail", cause, f"{fix}; its log: docker logs {name}", container.log_tail)


_TLS_ERRORS = ("x509", "certificate", "tls:", "remote error")


def _tls_error(output: str) -> bool:
    lowered = output.lower()
    return any(needle in lowered for needle in _TLS_ERRORS)


# --- the checks ------------------------------------------------------------------------------


def check_host(facts: Facts) -> Finding | None:
    """Nothing else can be seen when the host's engine does not answer."""
    if not facts.host_error:
        return None
    return Finding(
        "host-engine",
        "fail",
        f"the host's Docker engine does not answer: {facts.host_error}",
        "start dockerd, or point DOCKER_HOST at the engine the stack runs on",
    )


def check_network(facts: Facts) -> Finding | None:
    """Containers find each other by name only on the stack's user-defined network."""
    net = facts.network
    if net is None:
        return None
    if not net.exists:
        return Finding(
            "network",
            "fail",
            f"network {net.name} does not exist: the stack's containers cannot find each other",
            "dockyard up",
        )
    return Finding("network", "ok", f"network {net.name} exists (MTU {net.mtu or DEFAULT_MTU})")


UNFINISHED = "the last dockyard up stopped before it"
RERUN = "run dockyard up again and read its error: that is the cause"


def check_engine(facts: Facts) -> Finding | None:
    """A stopped engine explains most other failures; its log says why it stopped. A missing
    one in a stack whose other parts exist is an up that did not finish."""
    engine = facts.engine
    if not facts.dind:
        return None
    if engine is not None and not engine.exists:
        return Finding(
            "engine",
            "fail",
            f"engine container {engine.name} does not exist: {UNFINISHED} was ready",
            f"{RERUN} (dockyard engine create NAME --keep-on-failure keeps a failing engine "
            "for its log)",
        )
    return _state("engine", "engine", engine, "dockyard up recreates it")


def check_ci(facts: Facts) -> Finding | None:
    """Every other check looks from the CI container: it must run."""
    ci, engine = facts.ci, facts.engine
    if ci is not None and not ci.exists and facts.dind and engine is not None:
        if not engine.exists:
            return Finding(
                "ci",
                "fail",
                f"CI container {ci.name} does not exist: it is made after the engine",
                "see the engine finding",
            )
        return Finding(
            "ci", "fail", f"CI container {ci.name} does not exist: {UNFINISHED} made it", RERUN
        )
    return _state("ci", "CI", ci, "dockyard up recreates it")


def check_base_image(facts: Facts) -> Finding | None:
    """A build in the CI starts FROM the base image, which the engine cannot pull: it must
    be there (a killed up may have left an engine that never got it)."""
    found, api = facts.base_image, facts.api
    if found is None or api is None or not api.ok:
        return None
    if found.ok:
        return Finding("base-image", "ok", f"the engine holds {BASE_IMAGE}")
    return Finding(
        "base-image",
        "fail",
        f"the engine lacks {BASE_IMAGE}, which the CI's builds start FROM and no registry "
        "can give it",
        "dockyard up (it seeds the engine)",
    )


def check_data_root(facts: Facts) -> Finding | None:
    """A full data root fails builds with bare I/O errors (``head: standard output``)."""
    disk, engine = facts.data_root, facts.engine
    if disk is None or engine is None:
        return None
    status, words = disk_verdict(disk)
    fix = (
        f"free space: docker exec {engine.name} docker system prune -af; or give the engine a "
        f"larger volume for {disk.path}"
    )
    cause = f"the engine's data root {disk.path} {words}"
    return Finding("data-root", status, cause, fix if status != "ok" else "")


def check_ci_network(facts: Facts) -> Finding | None:
    """The CI container reaches the engine by its alias on the stack's network."""
    ci, engine, resolved = facts.ci, facts.engine, facts.resolve
    if not facts.dind or ci is None or resolved is None:
        return None
    if resolved.ok:
        address = resolved.output.split()[0] if resolved.output.split() else "?"
        return Finding("ci-network", "ok", f"'{ENGINE_ALIAS}' resolves to {address} from {ci.name}")
    network = (engine.labels.get(labels.PREFIX + "network") if engine else None) or (
        facts.names.network
    )
    cause = f"the name '{ENGINE_ALIAS}' does not resolve from {ci.name}"
    if network not in ci.networks:
        on = ", ".join(ci.networks) or "no network"
        return Finding(
            "ci-network",
            "fail",
            f"{cause}: it is not on the engine's network {network} (it is on {on})",
            f"docker network connect --alias ci {network} {ci.name} (dockyard up does)",
        )
    if engine is None or not engine.running:
        return Finding(
            "ci-network",
            "fail",
            f"{cause}: Docker's DNS answers only for running containers, and the engine is not",
            "start the engine (see the engine finding)",
        )
    if ENGINE_ALIAS not in engine.networks.get(network, ()):
        return Finding(
            "ci-network",
            "fail",
            f"{cause}: the engine {engine.name} is on {network} without the alias '{ENGINE_ALIAS}'",
            f"{REBUILD}: the engine gets the alias again",
        )
    return Finding("ci-network", "fail", f"{cause}: {resolved.last_line}", REBUILD)


def check_docker_host(facts: Facts) -> Finding | None:
    """DOCKER_HOST names the engine, on the port and with the protocol it serves."""
    ci, engine = facts.ci, facts.engine
    if not facts.dind or ci is None or not ci.exists or engine is None or not engine.exists:
        return None
    fix_env = f"DOCKER_HOST=tcp://{ENGINE_ALIAS}:{TLS_PORT} (dockyard up sets it)"
    value = facts.docker_host
    if not value:
        return Finding(
            "docker-host",
            "fail",
            f"DOCKER_HOST is not set in {ci.name}, so the docker CLI looks for "
            f"{HOST_SOCKET}, which does not exist there",
            f"set {fix_env}",
        )
    where = urlsplit(value)
    if where.scheme != "tcp" or not where.port:
        return Finding(
            "docker-host",
            "fail",
            f"DOCKER_HOST={value} does not point at the engine",
            f"set {fix_env}",
        )
    served = _engine_serves(engine)
    if served is None:
        return None
    ports, tls = served
    if where.port not in ports:
        listens = ", ".join(str(p) for p in ports)
        protocol = "TLS" if tls else "plaintext"
        if tls:
            fix = f"set {fix_env}, with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH={CERT_PATH}"
        else:
            fix = (
                f"set DOCKER_HOST=tcp://{ENGINE_ALIAS}:{PLAIN_PORT} without DOCKER_TLS_VERIFY, "
                f"or better serve TLS: {REBUILD}"
            )
        return Finding(
            "docker-host",
            "fail",
            f"DOCKER_HOST={value} uses port {where.port}, but the engine serves {protocol} on "
            f"{listens}",
            fix,
        )
    known = {engine.name, *(a for aliases in engine.networks.values() for a in aliases)}
    if where.hostname not in known:
        return Finding(
            "docker-host",
            "fail",
            f"DOCKER_HOST={value} names {where.hostname}, which is not the engine (it answers "
            f"to {', '.join(sorted(known))})",
            f"set {fix_env}",
        )
    return Finding("docker-host", "ok", f"DOCKER_HOST={value} matches the engine's listener")


def check_tls_env(facts: Facts) -> Finding | None:
    """The CLI speaks TLS exactly when the engine does, with certificates it can find."""
    ci, engine = facts.ci, facts.engine
    if not facts.dind or ci is None or not ci.exists or engine is None:
        return None
    served = _engine_serves(engine)
    if served is None:
        return None
    verify = ci.env.get("DOCKER_TLS_VERIFY", "")
    if not served[1]:
        if verify:
            return Finding(
                "tls-env",
                "fail",
                f"DOCKER_TLS_VERIFY={verify} makes the CLI speak TLS, but the engine serves "
                "plaintext ('server gave HTTP response to HTTPS client')",
                f"unset DOCKER_TLS_VERIFY, or better serve TLS: {REBUILD}",
            )
        return None
    missing = [name for name in TLS_ENV if not ci.env.get(name)]
    if not missing:
        return Finding("tls-env", "ok", "DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are set")
    why = []
    if "DOCKER_TLS_VERIFY" in missing:
        why.append("the CLI speaks plain HTTP to a TLS engine")
    if "DOCKER_CERT_PATH" in missing:
        why.append("the CLI looks for its certificates in ~/.docker")
    return Finding(
        "tls-env",
        "fail",
        f"{' and '.join(missing)} not set in {ci.name}: {'; '.join(why)}",
        f"set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH={CERT_PATH} (dockyard up does)",
    )


def check_certificates(facts: Facts) -> Finding | None:
    """Both halves of mutual TLS, as the two peers will judge them: the engine accepts the CI's
    cert.pem only if its own issuer signed it (and key.pem is its key); the CLI trusts the
    engine only if the CI's ca.pem signed the engine's certificate for the DOCKER_HOST name."""
    engine = facts.engine
    served = _engine_serves(engine) if engine is not None else None
    if not facts.certs or (served is not None and not served[1]):
        return None
    problems = [f"{cert.path}: {cert.error}" for cert in facts.certs if cert.content is None]
    files = {cert.path.rsplit("/", 1)[-1]: cert.content for cert in facts.certs if cert.content}
    ca, cert, key = (files.get(name) for name in CERT_FILES)
    tls = facts.engine_tls or EngineTLS()
    if cert is not None and tls.client_ca is not None:
        found = pki.check_certificate(tls.client_ca, cert, now=facts.now, purpose="client")
        problems += [f"{pki.CERT} (as the engine judges it): {problem}" for problem in found]
    if cert is not None and key is not None and not pki.check_key_matches(cert, key):
        problems.append(f"{pki.KEY} is not the key of {pki.CERT}")
    if ca is not None and tls.server_cert is not None:
        host = urlsplit(facts.docker_host).hostname
        found = pki.check_certificate(
            ca, tls.server_cert, now=facts.now, purpose="server", hostname=host
        )
        problems += [f"the engine's certificate, checked with {pki.CA_CERT}: {p}" for p in found]
    elif ca is not None and facts.host_ca is not None and ca.strip() != facts.host_ca.strip():
        problems.append(f"{pki.CA_CERT} is not this host's dockyard CA, which signs engines")
    where = facts.certs[0].path.rsplit("/", 1)[0]
    if problems:
        return Finding(
            "certificates",
            "fail",
            f"the client certificates in {where} are unusable: " + "; ".join(problems),
            f"{REBUILD}: the certificates are issued again",
        )
    return Finding("certificates", "ok", f"the certificates in {where} fit the engine")


def check_socket(facts: Facts) -> Finding | None:
    """Socket mode: the host's socket is mounted, is a socket, and the CI user may use it."""
    sock, ci = facts.socket, facts.ci
    if facts.dind or sock is None or ci is None:
        return None
    mount = f"mount it: -v {HOST_SOCKET}:{sock.path} (dockyard up --docker socket does)"
    if sock.error:
        return Finding(
            "socket", "fail", f"the host socket {sock.path} is missing in {ci.name}: {sock.error}",
            mount,
        )  # fmt: skip
    if sock.kind != "socket":
        return Finding(
            "socket",
            "fail",
            f"{sock.path} in {ci.name} is a {sock.kind}, not a socket: Docker creates a "
            "directory when a bind mount's source does not exist on the host",
            f"recreate {ci.name} once the host's engine runs; {mount}",
        )
    if not sock.usable:
        return Finding(
            "socket",
            "fail",
            f"permission denied: the CI user (uid {sock.user}, groups "
            f"{' '.join(map(str, sock.groups)) or 'none'}) may not write to {sock.path} (owner "
            f"{sock.uid}:{sock.gid}, mode {sock.mode:o})",
            f"give the CI container the socket's group: --group-add {sock.gid}",
        )
    return Finding("socket", "ok", f"{sock.path} is a socket the CI user may use")


_PREREQUISITES: tuple[Callable[[Facts], Finding | None], ...] = (
    check_ci_network,
    check_docker_host,
    check_tls_env,
    check_certificates,
    check_socket,
)


def check_api(facts: Facts) -> Finding | None:
    """`docker version` from the CI container is the proof. When it fails, blame the check
    that explains why; if none does and the engine runs, it is not ready yet."""
    run, ci, engine = facts.api, facts.ci, facts.engine
    if run is None or ci is None:
        return None
    if run.ok:
        return Finding("engine-api", "ok", f"the engine answers {ci.name} ({run.output.strip()})")
    failed = f"docker version in {ci.name} fails: {run.last_line}"
    if run.code in NOT_RUNNABLE:
        return Finding(
            "engine-api", "fail", failed, "install the docker CLI in the CI image (see the presets)"
        )
    if facts.dind and not facts.engine_up:
        return Finding("engine-api", "fail", failed, "start the engine (see the engine finding)")
    blamed = [
        found.check
        for check in _PREREQUISITES
        if (found := check(facts)) is not None and found.status == "fail"
    ]
    if blamed:
        return Finding("engine-api", "fail", failed, f"see the {', '.join(blamed)} finding")
    if _tls_error(run.output):
        return Finding(
            "engine-api",
            "fail",
            f"the TLS handshake with the engine fails: {run.last_line}",
            f"{REBUILD}: the engine gets a certificate from this host's CA",
        )
    if facts.dind and engine is not None:
        return Finding(
            "engine-api",
            "fail",
            f"the engine runs but does not answer yet: docker version printed: {run.last_line}",
            f"wait a few seconds and run doctor again; if it persists: docker logs {engine.name}",
            engine.log_tail,
        )
    return Finding(
        "engine-api", "fail", failed, "check that the host's engine answers: docker version"
    )


def check_storage_driver(facts: Facts) -> Finding | None:
    """vfs copies every layer in full: builds crawl and the disk fills."""
    engine = facts.engine
    driver = facts.info.driver if facts.info is not None else None
    if driver is None and engine is not None and engine.exists:
        driver = daemon_flags(engine.args).storage_driver or engine.labels.get(
            labels.PREFIX + "storage-driver"
        )
    if not driver:
        return None
    if driver == "vfs":
        return Finding(
            "storage-driver",
            "warn",
            "the engine uses the vfs storage driver: every layer is a full copy, so builds are "
            "slow and the disk fills",
            "keep its data root on a volume so overlay2 works (dockyard up does)",
        )
    return Finding("storage-driver", "ok", f"storage driver {driver}")


def check_mtu(facts: Facts) -> Finding | None:
    """Packets the inner engine sends larger than the outer network carries are dropped:
    pulls and pushes hang."""
    engine, net = facts.engine, facts.network
    if not facts.dind or engine is None or not engine.exists or net is None or not net.exists:
        return None
    label = engine.labels.get(labels.PREFIX + "mtu", "")
    inner = daemon_flags(engine.args).mtu or (int(label) if label.isdigit() else DEFAULT_MTU)
    outer = net.mtu or DEFAULT_MTU
    if inner > outer:
        return Finding(
            "mtu",
            "fail",
            f"the engine's MTU {inner} is larger than network {net.name}'s {outer}: large "
            "packets are dropped, so pulls and pushes hang",
            f"recreate the engine with --mtu {outer} (engine.mtu: {outer} in dockyard.yaml)",
        )
    return Finding("mtu", "ok", f"engine MTU {inner} fits network {net.name}'s {outer}")


def check_plaintext_delay(facts: Facts) -> Finding | None:
    """The 'daemon not ready' reports of plaintext DinD: dockerd 20.10+ sleeps about 15 s
    before serving TCP without TLS unless told --tls=false."""
    engine = facts.engine
    if engine is None or not engine.exists or not daemon_flags(engine.args).startup_delay:
        return None
    return Finding(
        "plaintext-delay",
        "warn",
        f"engine {engine.name} listens on plaintext TCP without --tls=false: dockerd waits "
        "about 15 s before it serves, and anyone on the network controls it",
        "serve TLS on 2376 (dockyard's default), or at least add --tls=false",
    )


def check_registry(facts: Facts) -> Finding | None:
    """The registry exists when the stack has one, and answers the CI container."""
    registry, engine = facts.registry, facts.engine
    trusted = engine is not None and REGISTRY in daemon_flags(engine.args).insecure_registries
    if registry is None or not (registry.exists or trusted):
        return None
    down = _state("registry", "registry", registry, "dockyard up recreates it")
    if down is None or down.status != "ok" or facts.registry_http is None:
        return down
    http, network = facts.registry_http, facts.names.network
    if not http.ok or http.output.strip() not in ("200", "401"):
        cause = f"the registry is unreachable from the CI container at http://{REGISTRY}/v2/"
        if facts.ci is not None and network not in facts.ci.networks:
            fix = "connect the CI container to the stack's network (see the ci-network finding)"
        elif REGISTRY_ALIAS not in registry.networks.get(network, ()):
            cause += f": {registry.name} is not on network {network} as '{REGISTRY_ALIAS}'"
            fix = f"docker network connect --alias {REGISTRY_ALIAS} {network} {registry.name}"
        else:
            fix = f"read its log: docker logs {registry.name}"
        return Finding("registry", "fail", f"{cause}: {http.last_line}", fix, registry.log_tail)
    return Finding("registry", "ok", f"the registry answers at http://{REGISTRY}/v2/")


def check_registry_trust(facts: Facts) -> Finding | None:
    """The stack's registry speaks plain HTTP; an engine that does not trust it refuses
    to push there ('server gave HTTP response to HTTPS client')."""
    registry = facts.registry
    if not facts.dind or facts.info is None or registry is None or not registry.exists:
        return None
    if REGISTRY in facts.info.insecure_registries:
        return Finding("registry-trust", "ok", f"the engine trusts {REGISTRY} over plain HTTP")
    return Finding(
        "registry-trust",
        "fail",
        f"the engine does not trust {REGISTRY} over plain HTTP, so docker push fails with "
        "'server gave HTTP response to HTTPS client'",
        f"recreate the engine with --insecure-registry {REGISTRY} (dockyard up does)",
    )


def check_mirror(facts: Facts) -> Finding | None:
    """The caches this stack uses work, and the engine's mirror is one of them, on its
    network: a broken mirror makes Hub pulls fall back to docker.io (unreachable offline).
    Caches of pools or other stacks are theirs to explain (``dockyard mirror ls``)."""
    engine = facts.engine
    wanted = [
        urlsplit(arg.partition("=")[2]).hostname or ""
        for arg in (engine.args if engine is not None and engine.exists else ())
        if arg.startswith("--registry-mirror=")
    ]
    ours = tuple(m for m in facts.mirrors if m.name in wanted or facts.names.network in m.networks)
    known = {m.name: m for m in ours}
    if not ours and not any(name.startswith("dockyard-mirror-") for name in wanted):
        return None
    causes: list[str] = []
    fixes: list[str] = []
    detail = ""
    for name in (n for n in wanted if n.startswith("dockyard-mirror-")):
        found = known.get(name)
        if found is None or found.status != "running":
            state = "missing" if found is None else found.status
            causes.append(f"the engine's mirror {name} is {state}")
            fixes.append("dockyard up recreates it")
        elif facts.names.network not in found.networks:
            causes.append(f"mirror {name} is not on network {facts.names.network}")
            fixes.append(f"docker network connect {facts.names.network} {name}")
    for found in ours:
        if found.problem is not None:
            what, evidence, fix = found.problem
            causes.append(f"mirror {found.name} ({found.upstream}) {what}: {evidence}")
            fixes.append(fix)
            detail = detail or found.log_tail
    if causes:
        return Finding("mirror", "fail", "; ".join(causes), "; ".join(dict.fromkeys(fixes)), detail)
    names = ", ".join(f"{m.name} ({m.upstream})" for m in ours)
    return Finding("mirror", "ok", f"pull-through caches answer: {names}")


CHECKS: tuple[Callable[[Facts], Finding | None], ...] = (
    check_network,
    check_engine,
    check_ci,
    check_ci_network,
    check_docker_host,
    check_tls_env,
    check_certificates,
    check_socket,
    check_api,
    check_storage_driver,
    check_mtu,
    check_plaintext_delay,
    check_base_image,
    check_data_root,
    check_registry,
    check_registry_trust,
    check_mirror,
)


def diagnose(facts: Facts) -> list[Finding]:
    """Every finding that applies, in the order a user fixes them."""
    down = check_host(facts)
    if down is not None:
        return [down]
    return [found for check in CHECKS if (found := check(facts)) is not None]


def healthy(findings: Sequence[Finding]) -> bool:
    return all(finding.status != "fail" for finding in findings)
