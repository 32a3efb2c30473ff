"""CA, server and client certificates for mutual-TLS engines, and where they live on disk.

The top half is pure (every function takes ``now``), so tests and ``doctor`` control time.
The bottom half, :class:`PkiStore`, is the only part that touches files.

Keys are ECDSA P-256: generating one takes well under a millisecond, where the RSA-4096 keys of
``docker:dind``'s entrypoint take seconds, and engine start is on the critical path of every job.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.errors import DockyardError
from dockyard.state import locked, state_dir, write_private

Purpose = Literal["server", "client"]

# Tolerates a host whose clock is slightly behind the one that issued the certificate.
CLOCK_SKEW = timedelta(minutes=5)
# A client certificate this close to expiry is replaced rather than handed out.
RENEW_BEFORE = timedelta(days=7)

_EKU = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM: the form every consumer (dockerd, CLI) reads."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise DockyardError(
                "the CA key is not an ECDSA key, so dockyard did not create it",
                fix="remove the pki directory of the dockyard state directory to start a new CA",
            )
        return key


def _utc(now: datetime) -> datetime:
    """Naive datetimes are read as UTC, as ``cryptography`` does, so comparisons cannot raise."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    """X.509 caps the CN at 64 bytes; cut it, since peers match SANs and the CN is a label."""
    cn = common_name.encode()[:64].decode(errors="ignore")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dockyard"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def new_ca(common_name: str = "dockyard CA", *, now: datetime, days: int = 3650) -> KeyPair:
    """A CA that can sign leaves only (path length 0): nothing it signs can mint more certs."""
    key = _new_key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _issue(
    ca: KeyPair,
    common_name: str,
    purpose: Purpose,
    *,
    now: datetime,
    days: int,
    san: x509.SubjectAlternativeName | None = None,
) -> KeyPair:
    ca_cert = ca.certificate
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    key = _new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([_EKU[purpose]]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca.private_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server(
    ca: KeyPair,
    common_name: str,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    now: datetime,
    days: int = 825,
) -> KeyPair:
    """A dockerd certificate. Clients match only the SANs (never the CN), so list every name."""
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    return _issue(
        ca, common_name, "server", now=now, days=days, san=x509.SubjectAlternativeName(names)
    )


def issue_client(ca: KeyPair, common_name: str, *, now: datetime, days: int = 825) -> KeyPair:
    """A certificate that dockerd's ``--tlsverify`` accepts from a CLI or SDK."""
    return _issue(ca, common_name, "client", now=now, days=days)


def _load_cert(pem: bytes) -> x509.Certificate | str:
    """The certificate, or why it cannot be read."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        return str(exc) or type(exc).__name__


def _issuer_problem(ca_cert: x509.Certificate, cert: x509.Certificate) -> str | None:
    if cert.issuer != ca_cert.subject:
        return (
            f"certificate was issued by '{cert.issuer.rfc4514_string()}', not by this CA "
            f"'{ca_cert.subject.rfc4514_string()}'; re-issue it from this CA"
        )
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return (
            "certificate names this CA as its issuer but its signature does not verify with "
            "this CA's key (another CA with the same name signed it); re-issue it from this CA"
        )
    return None


def _validity_problem(cert: x509.Certificate, now: datetime) -> str | None:
    if now > cert.not_valid_after_utc:
        return f"certificate expired on {_when(cert.not_valid_after_utc)}; re-issue it"
    if now < cert.not_valid_before_utc:
        return (
            f"certificate is not valid until {_when(cert.not_valid_before_utc)}; "
            "check this host's clock"
        )
    return None


def _purpose_problem(cert: x509.Certificate, purpose: Purpose) -> str | None:
    """Checked as Go and OpenSSL check it: no extendedKeyUsage at all allows any purpose."""
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None
    if _EKU[purpose] in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages:
        return None
    listed = ", ".join(_EKU_NAMES.get(oid, oid.dotted_string) for oid in usages) or "none"
    return (
        f"certificate is not allowed for TLS {purpose} authentication (extended key usage: "
        f"{listed}); use a {purpose} certificate"
    )


def _hostname_problem(cert: x509.Certificate, hostname: str) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (
            f"certificate has no subject alternative names, so clients reject it for "
            f"'{hostname}'; re-issue it with '{hostname}' among its names"
        )
    dns = [name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName)]
    ips = san.get_values_for_type(x509.IPAddress)
    try:
        matched = ipaddress.ip_address(hostname) in ips
    except ValueError:
        matched = hostname.lower().rstrip(".") in dns
    if matched:
        return None
    listed = ", ".join([*dns, *(str(ip) for ip in ips)]) or "none"
    return (
        f"certificate is not valid for '{hostname}' (it names: {listed}); "
        f"re-issue it with '{hostname}' among its names"
    )


def check_certificate(
    ca_cert_pem: bytes,
    cert_pem: bytes,
    *,
    now: datetime,
    purpose: Purpose,
    hostname: str | None = None,
) -> list[str]:
    """Every reason a TLS peer would reject ``cert_pem``, phrased for ``doctor``; [] if none."""
    cert = _load_cert(cert_pem)
    if isinstance(cert, str):
        return [f"certificate cannot be read as PEM ({cert}); re-issue it"]
    problems: list[str | None] = []
    ca_cert = _load_cert(ca_cert_pem)
    if isinstance(ca_cert, str):
        problems.append(f"CA certificate cannot be read as PEM ({ca_cert}); restore it")
    else:
        problems.append(_issuer_problem(ca_cert, cert))
    problems.append(_validity_problem(cert, _utc(now)))
    problems.append(_purpose_problem(cert, purpose))
    if hostname is not None:
        problems.append(_hostname_problem(cert, hostname))
    return [problem for problem in problems if problem is not None]


def check_key_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the key belongs to the certificate; a torn or mixed-up cert dir fails here."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


# --- on disk -------------------------------------------------------------------------------

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CERT = "cert.pem"
KEY = "key.pem"

# At most 64 characters: the name is the certificate's CN, which X.509 caps at 64.
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _private_dir(path: Path) -> None:
    """mkdir's mode is filtered by the umask and ignored for existing dirs, so chmod too."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


SERVICE_ISSUERS = {"guard": "service.guard", "serve": "service.serve"}
"""Issuers of the clients of dockyard's own TCP services; the dot keeps them apart from any
engine's issuer (engine names are DNS labels)."""


class PkiStore:
    """One CA per host, and the client cert dirs handed to CI containers as DOCKER_CERT_PATH.

    The host CA signs servers; clients are signed by a per-engine *issuer* CA that only its
    engine trusts (dockerd's ``--tlscacert``), so a client certificate opens one engine, and
    removing the issuer when the engine goes means no certificate it signed opens anything.
    Clients verify servers with the host CA (their ``ca.pem``).

    Writes happen under the host-wide ``pki`` lock, so parallel dockyard processes agree on
    one CA. Server certificates are never stored: each engine gets a fresh one at creation.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else state_dir() / "pki"

    def ca(self) -> KeyPair:
        """The host's CA, created on first use; its key never leaves ``root``."""
        return self._ca_at(self.root, "dockyard CA")

    def issuer(self, engine: str) -> KeyPair:
        """The CA that signs ``engine``'s clients, and that only ``engine`` trusts."""
        return self._ca_at(self._issuer_path(engine), f"dockyard clients of {engine}"[:64])

    def remove_issuer(self, engine: str) -> None:
        """Retire every client certificate of ``engine`` at once."""
        path = self._issuer_path(engine)
        with locked("pki"):
            shutil.rmtree(path, ignore_errors=True)

    def _issuer_path(self, engine: str) -> Path:
        return self._client_path(engine).parent.parent / "issuers" / engine

    def _ca_at(self, root: Path, common_name: str) -> KeyPair:
        loaded = self._load_ca(root)
        if loaded is not None:
            return loaded
        with locked("pki"):
            loaded = self._load_ca(root)
            if loaded is not None:
                return loaded
            ca = new_ca(common_name, now=datetime.now(UTC))
            _private_dir(root.parent)
            _private_dir(root)
            # The key lands first: a present ca.pem means a complete CA to every reader.
            write_private(root / CA_KEY, ca.key_pem, 0o600)
            write_private(root / CA_CERT, ca.cert_pem, 0o644)
            return ca

    def _load_ca(self, root: Path) -> KeyPair | None:
        cert_path, key_path = root / CA_CERT, root / CA_KEY
        if not cert_path.exists():
            return None
        if not key_path.exists():
            raise DockyardError(
                f"{cert_path} exists without its key {key_path}",
                fix=f"remove {root} to start a new CA (engines and clients are re-issued)",
            )
        ca = KeyPair(cert_path.read_bytes(), key_path.read_bytes())
        if not check_key_matches(ca.cert_pem, ca.key_pem):
            raise DockyardError(
                f"{key_path} is not the key of {cert_path}",
                fix=f"remove {root} to start a new CA (engines and clients are re-issued)",
            )
        return ca

    def server_bundle(
        self, engine: str, dns_names: Sequence[str], ip_addresses: Sequence[str] = ("127.0.0.1",)
    ) -> dict[str, bytes]:
        """The files dockerd's ``--tlscacert/--tlscert/--tlskey`` read, named as dind names them.

        ``ca.pem`` here is the engine's issuer: dockerd uses it to verify clients only.
        """
        ca = self.ca()
        server = issue_server(
            ca, engine, dns_names=dns_names, ip_addresses=ip_addresses, now=datetime.now(UTC)
        )
        return {CA_CERT: self.issuer(engine).cert_pem, CERT: server.cert_pem, KEY: server.key_pem}

    def client_dir(
        self, name: str, engine: str | None = None, common_name: str | None = None
    ) -> Path:
        """A DOCKER_CERT_PATH for ``name`` (a client of ``engine`` when given; its certificate
        names ``common_name``, default ``name``), re-issued only when it would soon stop
        working."""
        self._ensure_client(name, engine, common_name)
        return self._client_path(name)

    def client_bundle(self, name: str, engine: str | None = None) -> dict[str, bytes]:
        """The contents of :meth:`client_dir`, read under the lock so never half-rewritten."""
        return self._ensure_client(name, engine)

    def remove_client(self, name: str) -> None:
        path = self._client_path(name)
        with locked("pki"):
            shutil.rmtree(path, ignore_errors=True)

    def _client_path(self, name: str) -> Path:
        if not _CLIENT_NAME.fullmatch(name):
            raise DockyardError(
                f"invalid client name {name!r}",
                fix="use letters, digits, '_', '.' and '-', starting with a letter or digit "
                "(at most 64 characters)",
            )
        return self.root / "clients" / name

    def _ensure_client(
        self, name: str, engine: str | None, common_name: str | None = None
    ) -> dict[str, bytes]:
        path = self._client_path(name)
        # Outside the lock: flock is per open file, so nesting would deadlock.
        ca = self.ca()
        signer = self.issuer(engine) if engine else ca
        now = datetime.now(UTC)
        with locked("pki"):
            files = {
                f: (path / f).read_bytes() for f in (CA_CERT, CERT, KEY) if (path / f).exists()
            }
            if len(files) == 3 and self._client_usable(ca, signer, files, now):
                return files
            client = issue_client(signer, common_name or name, now=now)
            files = {CA_CERT: ca.cert_pem, CERT: client.cert_pem, KEY: client.key_pem}
            _private_dir(path.parent)
            _private_dir(path)
            write_private(path / KEY, client.key_pem, 0o600)
            write_private(path / CERT, client.cert_pem, 0o644)
            write_private(path / CA_CERT, ca.cert_pem, 0o644)
            return files

    @staticmethod
    def _client_usable(
        ca: KeyPair, signer: KeyPair, files: dict[str, bytes], now: datetime
    ) -> bool:
        if files[CA_CERT] != ca.cert_pem or not check_key_matches(files[CERT], files[KEY]):
            return False
        if check_certificate(signer.cert_pem, files[CERT], now=now, purpose="client"):
            return False
        expires = x509.load_pem_x509_certificate(files[CERT]).not_valid_after_utc
        return expires - now > RENEW_BEFORE


def server_context(service: str, host: str) -> ssl.SSLContext:
    """Mutual TLS for one of dockyard's own TCP services (``guard``, ``serve``): a server
    certificate from the host CA for ``host``, clients only from that service's issuer. The key
    is written to a private temporary directory only as long as ``ssl`` needs to load it."""
    store = PkiStore()
    names, addresses = [socket.gethostname(), "localhost"], ["127.0.0.1"]
    try:
        ipaddress.ip_address(host)
        addresses.append(host)
    except ValueError:
        names.append(host)
    issued = issue_server(
        store.ca(), f"dockyard {service}", dns_names=names, ip_addresses=addresses,
        now=datetime.now(UTC),
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=store.issuer(SERVICE_ISSUERS[service]).cert_pem.decode())
    context.set_alpn_protocols(["http/1.1"])
    context.options |= ssl.OP_NO_RENEGOTIATION  # the guard's TLS writes never wait on a read
    with tempfile.TemporaryDirectory(prefix=f"dockyard-{service}-") as tmp:
        write_private(Path(tmp) / CERT, issued.cert_pem + store.ca().cert_pem, 0o644)
        write_private(Path(tmp) / KEY, issued.key_pem)
        context.load_cert_chain(Path(tmp) / CERT, Path(tmp) / KEY)
    return context
