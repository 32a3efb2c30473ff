from __future__ import annotations

import ipaddress
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

from dockyard.errors import DockyardError
from dockyard.pki import (
    KeyPair,
    PkiStore,
    check_certificate,
    check_key_matches,
    issue_client,
    issue_server,
    new_ca,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_ca(now=NOW)


@pytest.fixture(scope="module")
def other_ca() -> KeyPair:
    return new_ca(now=NOW)


@pytest.fixture(scope="module")
def server(ca: KeyPair) -> KeyPair:
    return issue_server(ca, "engine-1", dns_names=["docker", "localhost"], now=NOW)


@pytest.fixture(scope="module")
def client(ca: KeyPair) -> KeyPair:
    return issue_client(ca, "jenkins", now=NOW)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PkiStore:
    monkeypatch.setenv("DOCKYARD_STATE_DIR", str(tmp_path / "state"))
    return PkiStore(tmp_path / "state" / "pki")


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- pure -----------------------------------------------------------------------------------


def test_ca_is_a_leaf_only_ca(ca: KeyPair) -> None:
    cert = ca.certificate
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert constraints.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert cert.not_valid_after_utc - NOW == timedelta(days=3650)
    assert check_key_matches(ca.cert_pem, ca.key_pem)


def test_server_chain_verifies_for_every_san(ca: KeyPair, server: KeyPair) -> None:
    store = Store([ca.certificate])
    for name in ("docker", "localhost"):
        verifier = PolicyBuilder().store(store).time(NOW).build_server_verifier(x509.DNSName(name))
        chain = verifier.verify(server.certificate, [])
        assert chain[-1] == ca.certificate
    ip = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    PolicyBuilder().store(store).time(NOW).build_server_verifier(ip).verify(server.certificate, [])


def test_server_has_sans_eku_and_skew_margin(ca: KeyPair, server: KeyPair) -> None:
    cert = server.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["docker", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=825)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert check_certificate(ca.cert_pem, server.cert_pem, now=NOW, purpose="server") == []


def test_client_chain_verifies(ca: KeyPair, client: KeyPair) -> None:
    # dockerd (Go) and OpenSSL accept client certs without SANs; webpki's profile wants one.
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store([ca.certificate]))
        .time(NOW)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    verified = verifier.verify(client.certificate, [])
    assert verified.chain[-1] == ca.certificate
    assert _eku(client.certificate) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert check_certificate(ca.cert_pem, client.cert_pem, now=NOW, purpose="client") == []


def test_long_common_names_are_cut_to_the_x509_limit(ca: KeyPair) -> None:
    engine = "é" * 40  # 80 bytes of UTF-8
    cert = issue_server(ca, engine, dns_names=["docker"], now=NOW).certificate
    [cn] = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == "é" * 32


def test_serials_are_random(ca: KeyPair) -> None:
    serials = {issue_client(ca, "x", now=NOW).certificate.serial_number for _ in range(5)}
    assert len(serials) == 5


def test_cert_from_another_ca_is_flagged(other_ca: KeyPair, client: KeyPair) -> None:
    problems = check_certificate(other_ca.cert_pem, client.cert_pem, now=NOW, purpose="client")
    assert len(problems) == 1
    assert "signature does not verify" in problems[0]


def test_cert_from_differently_named_ca_is_flagged(client: KeyPair) -> None:
    stranger = new_ca("someone else's CA", now=NOW)
    problems = check_certificate(stranger.cert_pem, client.cert_pem, now=NOW, purpose="client")
    assert len(problems) == 1
    assert "not by this CA" in problems[0]
    assert "someone else's CA" in problems[0]


def test_expiry_and_not_yet_valid_are_flagged_with_dates(ca: KeyPair, client: KeyPair) -> None:
    later = NOW + timedelta(days=826)
    [expired] = check_certificate(ca.cert_pem, client.cert_pem, now=later, purpose="client")
    assert expired.startswith("certificate expired on 2028-06-03 12:00 UTC;")
    earlier = NOW - timedelta(hours=1)
    [early] = check_certificate(ca.cert_pem, client.cert_pem, now=earlier, purpose="client")
    assert early.startswith("certificate is not valid until 2026-03-01 11:55 UTC;")
    assert "clock" in early
    # Inside the skew margin is fine, and naive datetimes are read as UTC.
    naive = (NOW - timedelta(minutes=4)).replace(tzinfo=None)
    assert check_certificate(ca.cert_pem, client.cert_pem, now=naive, purpose="client") == []


def test_wrong_purpose_is_flagged(ca: KeyPair, server: KeyPair, client: KeyPair) -> None:
    [problem] = check_certificate(ca.cert_pem, client.cert_pem, now=NOW, purpose="server")
    assert "not allowed for TLS server authentication" in problem
    assert "clientAuth" in problem
    [problem] = check_certificate(ca.cert_pem, server.cert_pem, now=NOW, purpose="client")
    assert "serverAuth" in problem


def test_hostname_matching(ca: KeyPair, server: KeyPair) -> None:
    def check(hostname: str) -> list[str]:
        return check_certificate(
            ca.cert_pem, server.cert_pem, now=NOW, purpose="server", hostname=hostname
        )

    assert check("docker") == []
    assert check("DOCKER.") == []
    assert check("127.0.0.1") == []
    [problem] = check("dind")
    assert "not valid for 'dind'" in problem
    assert "docker, localhost, 127.0.0.1" in problem
    [problem] = check("10.0.0.1")
    assert "'10.0.0.1'" in problem
    client = issue_client(ca, "c", now=NOW)
    [problem] = check_certificate(
        ca.cert_pem, client.cert_pem, now=NOW, purpose="client", hostname="docker"
    )
    assert "no subject alternative names" in problem


def test_several_problems_are_all_reported(other_ca: KeyPair, client: KeyPair) -> None:
    problems = check_certificate(
        other_ca.cert_pem,
        client.cert_pem,
        now=NOW + timedelta(days=900),
        purpose="server",
        hostname="docker",
    )
    assert len(problems) == 4


def test_unparsable_pem_is_flagged(ca: KeyPair, client: KeyPair) -> None:
    [problem] = check_certificate(ca.cert_pem, b"garbage", now=NOW, purpose="client")
    assert problem.startswith("certificate cannot be read as PEM")
    problems = check_certificate(b"garbage", client.cert_pem, now=NOW, purpose="client")
    assert problems == [problems[0]]
    assert problems[0].startswith("CA certificate cannot be read as PEM")


def test_check_key_matches(ca: KeyPair, server: KeyPair, client: KeyPair) -> None:
    assert check_key_matches(server.cert_pem, server.key_pem)
    assert not check_key_matches(server.cert_pem, client.key_pem)
    assert not check_key_matches(server.cert_pem, b"garbage")
    assert not check_key_matches(b"garbage", server.key_pem)


# --- TLS handshake ----------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, pair: KeyPair) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    return str(cert), str(key)


def _handshake(
    tmp_path: Path, ca: KeyPair, server: KeyPair, client: KeyPair | None
) -> tuple[bool, bytes]:
    """(server accepted the client, what the client read) for one mutual-TLS connection."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*_write(tmp_path, "server", server))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    if client is not None:
        client_ctx.load_cert_chain(*_write(tmp_path, "client", client))

    accepted: list[bool] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                accepted.append(True)
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            accepted.append(False)

    thread = threading.Thread(target=serve)
    thread.start()
    received = b""
    try:
        raw = socket.create_connection(listener.getsockname(), timeout=10)
        with client_ctx.wrap_socket(raw, server_hostname="docker") as tls:
            received = tls.recv(2)
    except (ssl.SSLError, OSError):
        pass
    finally:
        thread.join(10)
        listener.close()
    return accepted == [True], received


def test_tls_handshake_with_our_certs(
    tmp_path: Path, ca: KeyPair, server: KeyPair, client: KeyPair
) -> None:
    assert _handshake(tmp_path, ca, server, client) == (True, b"ok")


def test_tls_refuses_client_from_another_ca(
    tmp_path: Path, ca: KeyPair, other_ca: KeyPair, server: KeyPair
) -> None:
    stranger = issue_client(other_ca, "stranger", now=datetime.now(UTC))
    assert _handshake(tmp_path, ca, server, stranger) == (False, b"")


def test_tls_refuses_client_without_cert(tmp_path: Path, ca: KeyPair, server: KeyPair) -> None:
    assert _handshake(tmp_path, ca, server, None) == (False, b"")


# --- store ------------------------------------------------------------------------------------


def test_ca_is_created_once_with_private_modes(store: PkiStore) -> None:
    first = store.ca()
    assert store.ca() == first
    assert PkiStore(store.root).ca() == first
    assert _mode(store.root) == 0o700
    assert _mode(store.root / "ca-key.pem") == 0o600
    assert (store.root / "ca.pem").read_bytes() == first.cert_pem


def test_default_root_is_in_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_STATE_DIR", str(tmp_path))
    assert PkiStore().root == tmp_path / "pki"


def test_mismatched_ca_files_are_refused(store: PkiStore) -> None:
    store.ca()
    (store.root / "ca-key.pem").write_bytes(new_ca(now=NOW).key_pem)
    with pytest.raises(DockyardError, match="is not the key of"):
        store.ca()
    (store.root / "ca-key.pem").unlink()
    with pytest.raises(DockyardError, match="without its key"):
        store.ca()


def _ca_fingerprint(
    root: str,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.queues.Queue[bytes],
) -> None:
    barrier.wait()
    results.put(PkiStore(Path(root)).ca().certificate.fingerprint(hashes.SHA256()))


def test_concurrent_processes_agree_on_one_ca(store: PkiStore) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    results: multiprocessing.queues.Queue[bytes] = ctx.Queue()
    procs = [
        ctx.Process(target=_ca_fingerprint, args=(str(store.root), barrier, results))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    fingerprints = {results.get(timeout=30) for _ in procs}
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert fingerprints == {store.ca().certificate.fingerprint(hashes.SHA256())}


def test_server_bundle_is_fresh_and_never_holds_the_ca_key(store: PkiStore) -> None:
    ca = store.ca()
    bundle = store.server_bundle("engine-1", ["docker"], ["127.0.0.1", "::1"])
    assert set(bundle) == {"ca.pem", "cert.pem", "key.pem"}
    # dockerd's --tlscacert: the engine's own client issuer, not the host CA
    assert bundle["ca.pem"] == store.issuer("engine-1").cert_pem
    assert bundle["ca.pem"] != ca.cert_pem
    assert ca.key_pem not in bundle.values()
    assert store.issuer("engine-1").key_pem not in bundle.values()
    assert check_key_matches(bundle["cert.pem"], bundle["key.pem"])
    now = datetime.now(UTC)
    for hostname in ("docker", "::1"):
        assert (
            check_certificate(
                ca.cert_pem, bundle["cert.pem"], now=now, purpose="server", hostname=hostname
            )
            == []
        )
    assert store.server_bundle("engine-1", ["docker"])["cert.pem"] != bundle["cert.pem"]
    assert sorted(p.name for p in store.root.iterdir()) == ["ca-key.pem", "ca.pem", "issuers"]


def test_engine_clients_are_signed_by_that_engine_issuer_only(store: PkiStore) -> None:
    now = datetime.now(UTC)
    a = store.client_bundle("engine-a", engine="a")
    assert a["ca.pem"] == store.ca().cert_pem  # to verify servers
    assert (
        check_certificate(store.issuer("a").cert_pem, a["cert.pem"], now=now, purpose="client")
        == []
    )
    problems = check_certificate(
        store.issuer("b").cert_pem, a["cert.pem"], now=now, purpose="client"
    )
    assert problems  # engine b's issuer did not sign it
    key = (store.root / "issuers" / "a" / "ca-key.pem").stat().st_mode & 0o777
    assert key == 0o600
    store.remove_issuer("a")
    again = store.client_bundle("engine-a", engine="a")  # a new issuer: re-issued
    assert again["cert.pem"] != a["cert.pem"]


def test_client_dir_layout_and_modes(store: PkiStore) -> None:
    path = store.client_dir("jenkins")
    assert path == store.root / "clients" / "jenkins"
    assert sorted(p.name for p in path.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert _mode(path) == 0o700
    assert _mode(path.parent) == 0o700
    assert _mode(path / "key.pem") == 0o600
    ca = store.ca()
    assert (path / "ca.pem").read_bytes() == ca.cert_pem
    cert = (path / "cert.pem").read_bytes()
    assert check_certificate(ca.cert_pem, cert, now=datetime.now(UTC), purpose="client") == []
    assert store.client_bundle("jenkins") == {
        name: (path / name).read_bytes() for name in ("ca.pem", "cert.pem", "key.pem")
    }


def test_client_dir_is_reused_while_valid(store: PkiStore) -> None:
    path = store.client_dir("jenkins")
    before = (path / "cert.pem").read_bytes()
    assert store.client_dir("jenkins") == path
    assert (path / "cert.pem").read_bytes() == before


@pytest.mark.parametrize(
    "issued_days_ago",
    [pytest.param(820, id="expires-within-7-days"), pytest.param(900, id="expired")],
)
def test_client_dir_is_reissued_near_expiry(store: PkiStore, issued_days_ago: int) -> None:
    ca = store.ca()
    path = store.client_dir("jenkins")
    old = issue_client(ca, "jenkins", now=datetime.now(UTC) - timedelta(days=issued_days_ago))
    (path / "cert.pem").write_bytes(old.cert_pem)
    (path / "key.pem").write_bytes(old.key_pem)
    bundle = store.client_bundle("jenkins")
    assert bundle["cert.pem"] != old.cert_pem
    expires = x509.load_pem_x509_certificate(bundle["cert.pem"]).not_valid_after_utc
    assert expires - datetime.now(UTC) > timedelta(days=800)


def test_client_dir_is_reissued_for_another_ca(store: PkiStore) -> None:
    ca = store.ca()
    path = store.client_dir("jenkins")
    stranger_ca = new_ca(now=datetime.now(UTC))
    stranger = issue_client(stranger_ca, "jenkins", now=datetime.now(UTC))
    (path / "ca.pem").write_bytes(stranger_ca.cert_pem)
    (path / "cert.pem").write_bytes(stranger.cert_pem)
    (path / "key.pem").write_bytes(stranger.key_pem)
    bundle = store.client_bundle("jenkins")
    assert bundle["ca.pem"] == ca.cert_pem
    now = datetime.now(UTC)
    assert check_certificate(ca.cert_pem, bundle["cert.pem"], now=now, purpose="client") == []


def test_client_dir_with_mismatched_or_missing_files_is_reissued(store: PkiStore) -> None:
    path = store.client_dir("jenkins")
    (path / "key.pem").write_bytes(issue_client(store.ca(), "x", now=NOW).key_pem)
    bundle = store.client_bundle("jenkins")
    assert check_key_matches(bundle["cert.pem"], bundle["key.pem"])
    (path / "key.pem").unlink()
    assert check_key_matches(*(store.client_bundle("jenkins")[f] for f in ("cert.pem", "key.pem")))
    assert _mode(path / "key.pem") == 0o600


def test_remove_client(store: PkiStore) -> None:
    path = store.client_dir("jenkins")
    store.remove_client("jenkins")
    assert not path.exists()
    store.remove_client("jenkins")  # already gone is fine
    assert (store.root / "ca-key.pem").exists()


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "-flag", "a b", "é", "x" * 65]
)
def test_bad_client_names_are_rejected(store: PkiStore, name: str) -> None:
    with pytest.raises(DockyardError, match="invalid client name"):
        store.client_dir(name)
    with pytest.raises(DockyardError):
        store.client_bundle(name)
    with pytest.raises(DockyardError):
        store.remove_client(name)
    assert not (store.root / "clients").exists()


def test_good_client_names_are_accepted(store: PkiStore) -> None:
    for name in ("jenkins", "ci_runner-1.example", "x" * 64):
        assert store.client_dir(name).name == name
    assert os.listdir(store.root / "clients")
