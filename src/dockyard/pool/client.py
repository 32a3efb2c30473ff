"""The CLI's side of ``serve``: JSON over a unix socket, or over TCP with mutual TLS.

``--server`` / ``DOCKYARD_SERVER``: ``unix:///PATH`` (default: the state directory's
``serve.sock``) or ``https://HOST:PORT`` with the client bundle in
``DOCKYARD_SERVER_CERT_PATH`` (ca.pem, cert.pem, key.pem from dockyard's CA).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from dockyard.errors import DockyardError
from dockyard.pool import api

SERVER_ENV = "DOCKYARD_SERVER"
CERT_ENV = "DOCKYARD_SERVER_CERT_PATH"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Client:
    def __init__(self, server: str | None = None, timeout: float = 120.0) -> None:
        self.server = server or os.environ.get(SERVER_ENV) or api.default_socket()
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; a JSON error becomes a DockyardError with the server's fix."""
        conn = self._connection()
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            document = json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException) as exc:
            raise DockyardError(
                f"dockyard serve does not answer at {self.server}: {exc}",
                fix=f"start it (dockyard serve), or set --server / {SERVER_ENV}",
            ) from exc
        finally:
            conn.close()
        if response.status >= 400:
            error = document if isinstance(document, dict) else {}
            raise DockyardError(
                f"{error.get('error', response.reason)} (HTTP {response.status})",
                fix=error.get("fix") or None,
            )
        return document

    def _connection(self) -> http.client.HTTPConnection:
        where = urlsplit(self.server)
        if where.scheme == "unix":
            return _UnixConnection(where.path, self.timeout)
        if where.scheme == "https" and where.hostname:
            bundle = os.environ.get(CERT_ENV)
            if not bundle:
                raise DockyardError(
                    f"{self.server} needs a client certificate",
                    fix=f"set {CERT_ENV} to a directory with ca.pem, cert.pem, key.pem",
                )
            context = ssl.create_default_context(cafile=f"{bundle}/ca.pem")
            context.load_cert_chain(f"{bundle}/cert.pem", f"{bundle}/key.pem")
            return http.client.HTTPSConnection(
                where.hostname, where.port or 443, timeout=self.timeout, context=context
            )
        raise DockyardError(
            f"cannot reach server {self.server!r}", fix="use unix:///PATH or https://HOST:PORT"
        )
