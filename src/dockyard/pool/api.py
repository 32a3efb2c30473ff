"""``dockyard serve``'s HTTP JSON API: a unix socket, or TCP with mutual TLS.

Standard library only: the handler parses, calls :class:`~dockyard.pool.service.PoolService`
and renders JSON; the service serialises state changes itself, so handler threads need no
locking of their own. Errors are JSON ``{"error", "fix"}`` with the status that says why.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import ssl
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dockyard import pki, state
from dockyard.errors import DockyardError
from dockyard.pool import service
from dockyard.pool.service import PoolError, PoolService

log = logging.getLogger("dockyard.pool.api")
MAX_BODY = 64 * 1024
REQUEST_FIELDS = {"pool": str, "cache_key": str, "ttl_seconds": int}


def default_socket() -> str:
    """Where serve listens and the CLI looks by default: next to the certificates it issues."""
    from dockyard import state

    return f"unix://{state.state_dir() / 'serve.sock'}"


class Handler(BaseHTTPRequestHandler):
    server_version = "dockyard"
    protocol_version = "HTTP/1.1"
    pools: PoolService  # set on the subclass made by make_server

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self._peer(), format % args)

    def _route(self, method: str) -> None:
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        try:
            status, document = self._dispatch(method, parts)
        except PoolError as exc:
            status, document = exc.status, _error(exc.message, exc.fix)
        except DockyardError as exc:
            status, document = 500, _error(exc.message, exc.fix)
        except Exception as exc:
            log.exception("request failed")
            status, document = 500, _error(f"internal error: {exc}", "see the serve log")
        self._send(status, document)

    def _dispatch(self, method: str, parts: list[str]) -> tuple[int, Any]:
        svc = self.pools
        match method, parts:
            case "GET", ["healthz"]:
                return 200, {"ok": True}
            case "GET", ["openapi.json"]:
                return 200, OPENAPI
            case "GET", ["pools"]:
                return 200, svc.pools()
            case "GET", ["leases"]:
                found = svc.list_leases()
                return 200, [service.lease_dict(lease, svc.held(lease.engine)) for lease in found]
            case "POST", ["leases"]:
                body = self._body()
                grant = svc.lease(
                    str(body.get("pool", "default")),
                    cache_key=body.get("cache_key"),
                    ttl=body.get("ttl_seconds"),
                    owner=self._peer(),
                )
                return 201, grant.as_dict()
            case "GET", ["leases", lease_id]:
                return 200, service.lease_dict(svc.get(lease_id))
            case "POST", ["leases", lease_id, "renew"]:
                ttl = self._body().get("ttl_seconds")
                return 200, service.lease_dict(svc.renew(lease_id, ttl, caller=self._peer()))
            case "DELETE", ["leases", lease_id]:
                return 200, service.lease_dict(svc.release(lease_id, caller=self._peer()))
            case "POST", ["gc"]:
                dry = bool(self._body().get("dry_run", False))
                return 200, [r.as_dict() for r in svc.gc(dry_run=dry)]
        raise PoolError(404, f"no route {method} /{'/'.join(parts)}", "see GET /openapi.json")

    def _body(self) -> dict[str, Any]:
        """The JSON object sent, its known fields type-checked; errors name the field."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise PoolError(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise PoolError(400, f"body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise PoolError(400, "body must be a JSON object")
        for name, value in body.items():
            kind = REQUEST_FIELDS.get(name, bool if name == "dry_run" else None)
            if kind is None:
                raise PoolError(400, f"{name}: unknown field", "see GET /openapi.json")
            if value is not None and (type(value) is not kind):
                raise PoolError(400, f"{name}: must be a {kind.__name__}, not {value!r}")
        return body

    def _send(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _peer(self) -> str:
        """Who asked: the client certificate's CN over TLS, the uid over a unix socket."""
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket):
            cert = conn.getpeercert() or {}
            names = [
                str(pair[1])
                for rdn in cert.get("subject", ())
                for pair in rdn
                if pair[0] == "commonName"
            ]
            if names:
                return f"cn:{names[0]}"
            return "tls"
        if conn.family == socket.AF_UNIX:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _ = struct.unpack("3i", creds)
            return f"uid:{uid} pid:{pid}"
        return str(self.client_address[0])


def _error(message: str, fix: str | None) -> dict[str, str]:
    return {"error": message, "fix": fix or ""}


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)  # BaseHTTPRequestHandler formats client_address[0]


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True


def make_server(pools: PoolService, listen: str) -> socketserver.BaseServer:
    """A server for ``unix:///path`` (mode 0660) or ``tcp://host:port`` (mutual TLS: the
    server's certificate and the clients' come from dockyard's CA)."""
    handler = type("BoundHandler", (Handler,), {"pools": pools})
    where = urlsplit(listen)
    if where.scheme == "unix":
        path = Path(where.path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        state.clear_stale_socket(path)
        with state.created_with_mode(0o660):
            server: socketserver.BaseServer = _UnixServer(str(path), handler)
        return server
    if where.scheme == "tcp" and where.hostname and where.port:
        tls = _TlsServer((where.hostname, where.port), handler)
        tls.socket = pki.server_context("serve", where.hostname).wrap_socket(
            tls.socket, server_side=True
        )
        return tls
    raise DockyardError(
        f"cannot listen on {listen!r}",
        fix="use unix:///PATH or tcp://HOST:PORT (mutual TLS)",
    )


# --- the OpenAPI document ---------------------------------------------------------------------

_LEASE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "pool": {"type": "string"},
        "engine": {"type": "string", "description": "the engine's name on the pool's network"},
        "cache_key": {"type": "string", "nullable": True},
        "expires_at": {"type": "integer", "description": "unix time"},
        "owner": {"type": "string", "description": "uid (unix socket) or certificate CN"},
        "images": {
            "type": "array",
            "items": {"type": "string"},
            "description": "seed images the engine pulled before it was leased",
        },
    },
    "required": ["id", "pool", "engine", "expires_at"],
}
_GRANT = {
    "allOf": [
        {"$ref": "#/components/schemas/Lease"},
        {
            "type": "object",
            "properties": {
                "network": {"type": "string", "description": "the network CI containers join"},
                "environment": {
                    "type": "object",
                    "description": "DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH (on the "
                    "serve host; elsewhere write `certificates` and point DOCKER_CERT_PATH there)",
                    "additionalProperties": {"type": "string"},
                },
                "certificates": {
                    "type": "object",
                    "description": "ca.pem, cert.pem, key.pem as PEM: a client of this engine "
                    "only, useless once the lease ends",
                    "additionalProperties": {"type": "string"},
                },
            },
        },
    ]
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "fix": {"type": "string"}},
    "required": ["error"],
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ERRORS = {
    "400": _json(_ref("Error"), "a field is missing or wrong (the message names it)"),
    "403": _json(_ref("Error"), "the lease belongs to another uid or certificate"),
    "404": _json(_ref("Error"), "no such pool or lease"),
    "503": _json(_ref("Error"), "the pool is at max and nothing is idle: retry or release"),
}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_TTL_BODY = {"type": "object", "properties": {"ttl_seconds": {"type": "integer", "minimum": 1}}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "dockyard serve",
        "version": "1",
        "description": "Per-job Docker engines: lease one from a warm pool, release it when done.",
    },
    "paths": {
        "/leases": {
            "post": {
                "summary": "Lease an engine (warm: milliseconds; cold or keyed: about a second)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "pool": {"type": "string", "default": "default"},
                                    "cache_key": {
                                        "type": "string",
                                        "description": "keyed pools: e.g. the repository",
                                    },
                                    "ttl_seconds": {"type": "integer", "minimum": 1},
                                },
                            }
                        }
                    }
                },
                "responses": {"201": _json(_ref("Grant"), "the lease"), **_ERRORS},
            },
            "get": {
                "summary": "Live leases",
                "responses": {"200": _json({"type": "array", "items": _ref("Lease")}, "leases")},
            },
        },
        "/leases/{id}": {
            "parameters": _ID,
            "get": {"responses": {"200": _json(_ref("Lease"), "the lease"), **_ERRORS}},
            "delete": {
                "summary": "Release: the engine and its certificate issuer are destroyed",
                "responses": {"200": _json(_ref("Lease"), "the ended lease"), **_ERRORS},
            },
        },
        "/leases/{id}/renew": {
            "parameters": _ID,
            "post": {
                "summary": "Extend the lease to now + ttl_seconds (default: the pool's ttl)",
                "requestBody": {"content": {"application/json": {"schema": _TTL_BODY}}},
                "responses": {"200": _json(_ref("Lease"), "the renewed lease"), **_ERRORS},
            },
        },
        "/pools": {
            "get": {
                "summary": "Pools with their idle, leased and starting engines, the images "
                "each engine holds and the pool's pull-through cache (hits, misses, size)",
                "responses": {"200": _json({"type": "array", "items": {"type": "object"}}, "")},
            }
        },
        "/gc": {
            "post": {
                "summary": "Remove what no lease, served pool or stack owns",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"dry_run": {"type": "boolean"}},
                            }
                        }
                    }
                },
                "responses": {"200": _json({"type": "array", "items": {"type": "object"}}, "")},
            }
        },
        "/healthz": {"get": {"responses": {"200": _json({"type": "object"}, "serving")}}},
        "/openapi.json": {"get": {"responses": {"200": _json({"type": "object"}, "this")}}},
    },
    "components": {"schemas": {"Lease": _LEASE, "Grant": _GRANT, "Error": _ERROR}},
}
