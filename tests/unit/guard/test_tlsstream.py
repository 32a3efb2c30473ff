"""TLS run by the guard over a plain connection: mutual TLS, and half-close both ways."""

import asyncio
import ssl
from datetime import UTC, datetime

import pytest

from dockyard import pki
from dockyard.guard import tlsstream
from dockyard.guard.ownership import cert_owner

NOW = datetime.now(UTC)


def contexts(tmp_path, *, trusted=True):
    ca = pki.new_ca(now=NOW)
    clients = pki.new_ca("clients", now=NOW)
    accepted = clients if trusted else pki.new_ca("other", now=NOW)
    server = pki.issue_server(ca, "guard", dns_names=["localhost"], now=NOW)
    client = pki.issue_client(clients, "runner 7", now=NOW)
    for name, pair in (("server", server), ("client", client)):
        (tmp_path / f"{name}.pem").write_bytes(pair.cert_pem)
        (tmp_path / f"{name}-key.pem").write_bytes(pair.key_pem)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "clients.pem").write_bytes(accepted.cert_pem)
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(tmp_path / "server.pem", tmp_path / "server-key.pem")
    serving.load_verify_locations(tmp_path / "clients.pem")
    serving.verify_mode = ssl.CERT_REQUIRED
    connecting = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    connecting.load_cert_chain(tmp_path / "client.pem", tmp_path / "client-key.pem")
    return serving, connecting


async def exchange(serving, connecting, request: bytes, answer_size: int):
    """A client sends ``request`` and half-closes; the server reads to EOF, then answers."""
    seen: dict[str, object] = {}
    done = asyncio.Event()

    async def serve(raw_reader, raw_writer):
        reader = asyncio.StreamReader(limit=1024)
        try:
            writer = await tlsstream.accept(raw_reader, raw_writer, serving, reader)
        except (OSError, TimeoutError) as exc:
            seen["error"] = exc
            done.set()
            return
        seen["owner"] = cert_owner(writer.get_extra_info("ssl_object").getpeercert())
        seen["request"] = await reader.read()  # ends at the client's close_notify
        writer.write(b"x" * answer_size)  # still writable after it
        await writer.drain()
        writer.write_eof()
        await writer.drain()
        writer.close()
        done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        raw_reader, raw_writer = await asyncio.open_connection("127.0.0.1", port)
        reader = asyncio.StreamReader()
        try:
            writer = await tlsstream.connect(
                raw_reader, raw_writer, connecting, reader, server_hostname="localhost"
            )
            writer.write(request)
            writer.write_eof()
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            raw_writer.close()
        await asyncio.wait_for(done.wait(), 10)
        return seen, answer
    finally:
        server.close()
        await server.wait_closed()


def test_data_flows_after_the_clients_close_notify(tmp_path):
    serving, connecting = contexts(tmp_path)
    request = b"r" * 300_000  # more than the reader's limit: the socket reads are paused
    seen, answer = asyncio.run(exchange(serving, connecting, request, 1_000_000))
    assert seen["request"] == request
    assert answer == b"x" * 1_000_000
    assert seen["owner"] == "runner_7"


def test_a_client_certificate_from_another_issuer_fails_the_handshake(tmp_path):
    serving, connecting = contexts(tmp_path, trusted=False)
    with pytest.raises((ssl.SSLError, OSError)):
        asyncio.run(exchange(serving, connecting, b"hello", 10))
